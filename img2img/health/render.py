"""The health verdict as a user reads it: plain text for `img2img health`, and an HTML
<section> for the run report, with a chart of each logged health signal when the caller passes
a chart function (the report's `line_chart`)."""
from __future__ import annotations

import html
from typing import Callable, Mapping

from .keys import ADA_P, D_ACC_FAKE, D_ACC_REAL, DIVERSITY, R_T, ROLLBACKS, SKIPPED
from .verdict import Verdict

# chart(title, {name: [(step, value), ...]}, y_label=...) -> SVG text ("" when nothing to draw)
Chart = Callable[..., str]

# What each chart shows: title, y label and {legend name: metrics key}. Diversity keys are
# added per direction when logged.
CHARTS = (
    ("Discriminator accuracy", "accuracy", {"real": D_ACC_REAL, "fake": D_ACC_FAKE}),
    ("Overfitting sign r_t", "value", {"r_t": R_T, "ada p": ADA_P}),
    ("Skips and rollbacks", "count (cumulative)",
     {"skipped": SKIPPED, "rollbacks": ROLLBACKS}),
)


def _span(verdict: Verdict) -> str:
    first, last = verdict.steps
    return f"{verdict.records} log record(s), steps {first}-{last}"


def headline(verdict: Verdict) -> str:
    """One line: healthy, or how many problems, over what span."""
    if verdict.healthy:
        return f"healthy: no problem found in {_span(verdict)}"
    count = len(verdict.findings)
    return f"{count} problem{'s' if count > 1 else ''} found in {_span(verdict)}"


def _latest(verdict: Verdict) -> str:
    shown = []
    for key, points in sorted(verdict.series.items()):
        shown.append(f"{key.split('/', 1)[1]} {points[-1][1]:.3g}")
    return ", ".join(shown)


def render_text(verdict: Verdict) -> str:
    """The verdict for a terminal: headline, each finding with its step and suggestions, notes."""
    lines = [f"{verdict.run}: {headline(verdict)}"]
    for finding in verdict.findings:
        lines += ["", f"{finding.problem}, from step {finding.step}", f"  {finding.detail}"]
        lines += [f"  try: {tip}" for tip in finding.suggestions]
    latest = _latest(verdict)
    if latest:
        lines += ["", f"last logged: {latest}"]
    if verdict.notes:
        lines += [""] + [f"note: {note}" for note in verdict.notes]
    return "\n".join(lines) + "\n"


def _table(verdict: Verdict) -> str:
    rows = []
    for f in verdict.findings:
        tips = "".join(f"<li>{html.escape(t)}</li>" for t in f.suggestions)
        rows.append(f"<tr><td>{html.escape(f.problem)}</td><td>{f.step}</td>"
                    f"<td>{html.escape(f.detail)}<br><code>{html.escape(f.signal)}</code></td>"
                    f"<td><ul>{tips}</ul></td></tr>")
    return ("<table><thead><tr><th>Problem</th><th>From step</th><th>What was seen</th>"
            "<th>What to try</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _charts(verdict: Verdict, chart: Chart) -> list[str]:
    diversity = {key.split(".", 1)[1] if "." in key else "diversity": key
                 for key in verdict.series if key.startswith(DIVERSITY)}
    made = []
    specs = (*CHARTS, ("Output diversity", "diversity", diversity))
    for title, y_label, keys in specs:
        series = {name: verdict.series[key] for name, key in keys.items()
                  if key in verdict.series}
        svg = chart(title, series, y_label=y_label) if series else ""
        if svg:
            made.append(f'<figure class="chart">{svg}</figure>')
    return made


def render_html(verdict: Verdict, chart: Chart | None = None) -> str:
    """A <section id="health"> fragment: the headline, a table of findings with what to try,
    notes, and (with `chart`) one chart per group of logged health signals."""
    status = "healthy" if verdict.healthy else "problems"
    parts = [f'<section id="health" class="health {status}">', "<h2>Training health</h2>",
             f"<p>{html.escape(headline(verdict).capitalize())}.</p>"]
    if verdict.findings:
        parts.append(_table(verdict))
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in verdict.notes]
    if chart is not None:
        parts += ["<div class='charts'>", *_charts(verdict, chart), "</div>"]
    parts.append("</section>")
    return "\n".join(parts) + "\n"


def summary(verdict: Verdict) -> Mapping[str, object]:
    """The verdict as JSON-ready data (for a pipeline or the report's scripts)."""
    return {"run": str(verdict.run), "healthy": verdict.healthy, "records": verdict.records,
            "steps": list(verdict.steps), "notes": list(verdict.notes),
            "findings": [{"problem": f.problem, "step": f.step, "detail": f.detail,
                          "signal": f.signal, "suggestions": list(f.suggestions)}
                         for f in verdict.findings]}
