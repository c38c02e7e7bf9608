"""Line charts as inline SVG for the run report: one series (or a few) against the step, with
ticks at round numbers, labelled axes, the raw values beside an exponential moving average, and
an optional marked point (the best evaluation). Plain strings, no plotting library, nothing
fetched: the report opens offline."""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

WIDTH, HEIGHT = 400, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 44  # room for tick labels and axis titles
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")

Points = Sequence[tuple[float, float]]


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (1, 2 or 5 x 10^k apart) covering [low, high]."""
    if not high > low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    found, value = [], first
    while value <= high + step * 1e-9:
        found.append(round(value, 12))
        value += step
    if found[-1] < high:
        found.append(round(value, 12))
    return found


def smooth(values: Sequence[float], weight: float | None = None) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing, so the start is not pulled
    towards zero; the weight grows with the number of points (0 for a handful)."""
    if weight is None:
        weight = 0.0 if len(values) < 8 else min(0.9, 1 - 6 / len(values))
    found, average = [], 0.0
    for i, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        found.append(average / (1 - weight ** (i + 1)) if weight else value)
    return found


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.6g}"


def line_chart(title: str, series: dict[str, Points], *, y_label: str, x_label: str = "step",
               smoothed: bool = True, mark: tuple[float, float, str] | None = None) -> str:
    """An SVG chart of each named series of (step, value) points; with `smoothed`, each is
    drawn faint as logged and solid as its moving average. `mark` = (step, value, caption)
    circles one point (e.g. the best evaluation)."""
    series = {k: [(x, y) for x, y in v if math.isfinite(y)] for k, v in series.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    xs = [x for v in series.values() for x, _ in v]
    ys = [y for v in series.values() for _, y in v]
    # The steps span the width exactly; values get round limits, so the ends carry ticks.
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    x_ticks = [x for x in ticks(x0, x1) if x0 <= x <= x1]
    y_ticks = ticks(min(ys), max(ys))
    y0, y1 = y_ticks[0], y_ticks[-1]
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1) * inner_w

    def py(y: float) -> float:
        return TOP + inner_h - (y - y0) / ((y1 - y0) or 1) * inner_h

    parts = [f'<text class="title" x="{LEFT}" y="18">{html.escape(title)}</text>']
    for x in x_ticks:
        parts.append(f'<line class="grid" x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" '
                     f'y2="{TOP + inner_h}"/><text class="tick" x="{px(x):.1f}" '
                     f'y="{TOP + inner_h + 16}" text-anchor="middle">{_label(x)}</text>')
    for y in y_ticks:
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{py(y):.1f}" x2="{LEFT + inner_w}" '
                     f'y2="{py(y):.1f}"/><text class="tick" x="{LEFT - 6}" y="{py(y) + 4:.1f}" '
                     f'text-anchor="end">{_label(y)}</text>')
    parts.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{inner_w}" '
                 f'height="{inner_h}"/>')
    parts.append(f'<text class="axis" x="{LEFT + inner_w / 2}" y="{HEIGHT - 6}" '
                 f'text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text class="axis" transform="translate(14 {TOP + inner_h / 2}) rotate(-90)" '
                 f'text-anchor="middle">{html.escape(y_label)}</text>')
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        raw = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        if smoothed and len(points) > 1:
            parts.append(f'<polyline class="raw" stroke="{colour}" points="{raw}"/>')
            average = smooth([y for _, y in points])
            line = " ".join(f"{px(x):.1f},{py(y):.1f}" for (x, _), y in zip(points, average))
            parts.append(f'<polyline class="line" stroke="{colour}" points="{line}">'
                         f"<title>{html.escape(name)} (smoothed)</title></polyline>")
        else:
            parts.append(f'<polyline class="line" stroke="{colour}" points="{raw}">'
                         f"<title>{html.escape(name)}</title></polyline>")
        if len(points) == 1:
            x, y = points[0]
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
    if len(series) > 1:  # a legend in the title row, right-aligned: which colour is which
        keys = "".join(f'<tspan fill="{COLOURS[i % len(COLOURS)]}" dx="{10 if i else 0}">'
                       f'\u25cf</tspan><tspan dx="3">{html.escape(name)}</tspan>'
                       for i, name in enumerate(series))
        parts.append(f'<text class="legend" x="{WIDTH - RIGHT}" y="{TOP - 10}" '
                     f'text-anchor="end">{keys}</text>')
    if mark is not None:
        x, y, caption = mark
        anchor = "end" if px(x) > LEFT + inner_w * 0.6 else "start"
        shift = -8 if anchor == "end" else 8
        parts.append(f'<circle class="best" cx="{px(x):.1f}" cy="{py(y):.1f}" r="5"/>'
                     f'<text class="best-label" x="{px(x) + shift:.1f}" y="{py(y) - 8:.1f}" '
                     f'text-anchor="{anchor}">{html.escape(caption)}</text>')
    label = html.escape(f"{title}: {y_label} against {x_label}")
    return (f'<svg class="chart" role="img" aria-label="{label}" width="{WIDTH}" '
            f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">{"".join(parts)}</svg>')


STYLE = """svg.chart{background:#fff;border:1px solid #e3e3e3;border-radius:4px}
svg.chart .title{font-size:13px;font-weight:600;fill:#222}
svg.chart .tick{font-size:10px;fill:#555}svg.chart .axis{font-size:11px;fill:#333}
svg.chart .grid{stroke:#eee}svg.chart .frame{fill:none;stroke:#bbb}
svg.chart .raw{fill:none;stroke-width:1;opacity:.3}
svg.chart .line{fill:none;stroke-width:2}
svg.chart .best{fill:none;stroke:#000;stroke-width:2}
svg.chart .best-label{font-size:11px;font-weight:600;fill:#000}
svg.chart .legend{font-size:11px;fill:#333}"""
