"""The run report: `index.html` in every run folder, readable offline in any browser. It shows
the latest and past sample grids, loss curves (inline SVG, no scripts or downloads), the latest
evaluation metrics and every setting. Rewritten (atomically) whenever the trainer saves samples
or a checkpoint, so it is never more than one interval behind."""
from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import runs

REPORT = "index.html"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf")
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:.9em}
img{max-width:100%;image-rendering:pixelated}.thumbs img{width:160px;margin:4px}
.legend span{margin-right:1em;font-size:.85em}"""


def _curve(records: Sequence[Mapping[str, Any]], keys: Sequence[str], title: str) -> str:
    """One SVG chart of `keys` against step."""
    points = {k: [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float))
                  and math.isfinite(r[k])] for k in keys}
    points = {k: v for k, v in points.items() if v}
    if not points:
        return ""
    xs = [x for v in points.values() for x, _ in v]
    ys = [y for v in points.values() for _, y in v]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(max(ys), min(ys) + 1e-9)
    width, height, pad = 560, 220, 40

    def xy(x: float, y: float) -> str:
        px = pad + (x - x0) / (x1 - x0) * (width - 2 * pad)
        py = height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)
        return f"{px:.1f},{py:.1f}"

    lines = [f'<polyline fill="none" stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="1.5" '
             f'points="{" ".join(xy(x, y) for x, y in v)}"/>'
             for i, v in enumerate(points.values())]
    legend = "".join(f'<span style="color:{COLOURS[i % len(COLOURS)]}">&#9632; {html.escape(k)}'
                     f"</span>" for i, k in enumerate(points))
    axes = (f'<text x="{pad}" y="{height - 8}" font-size="11">step {x0}</text>'
            f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">{x1}</text>'
            f'<text x="4" y="{pad - 6}" font-size="11">{y1:.4g}</text>'
            f'<text x="4" y="{height - pad + 4}" font-size="11">{y0:.4g}</text>')
    return (f"<h3>{html.escape(title)}</h3><svg width='{width}' height='{height}' "
            f"style='border:1px solid #eee'>{axes}{''.join(lines)}</svg>"
            f"<div class='legend'>{legend}</div>")


def _table(rows: Mapping[str, Any]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                    for k, v in rows.items())
    return f"<table>{cells}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    flat = {"model": config.get("model"), "img2img": config.get("img2img_version")}
    plugin = config.get("plugin") or {}
    if plugin:
        flat["plugin"] = f"{plugin.get('distribution', '?')} {plugin.get('version', '')}".strip()
    for network, source in (config.get("imported") or {}).get("networks", {}).items():
        flat[f"imported {network}"] = source  # a run `img2img import` made from reference files
    for section in ("options", "spec", "training"):
        for key, value in (config.get(section) or {}).items():
            flat[f"{section}.{key}"] = value
    return flat


def render(run_dir: Path) -> str:
    config = runs.read_config(run_dir)
    records = runs.read_metrics(run_dir)
    samples = sorted((run_dir / runs.SAMPLES).glob("*.png"))
    losses = sorted({k for r in records for k in r if k.startswith(("g/", "d/"))})
    evals = sorted({k for r in records for k in r if k.startswith("eval/")})
    parts = [f"<h1>{html.escape(run_dir.name)} &mdash; {html.escape(str(config.get('model')))}"
             "</h1>"]
    if records:
        last = records[-1]
        parts.append(f"<p>step {last.get('step')}, epoch {last.get('epoch')}</p>")
    if samples:
        latest = samples[-1]
        parts.append(f"<h2>Latest samples ({html.escape(latest.stem)})</h2>"
                     f"<img src='{runs.SAMPLES}/{html.escape(latest.name)}'>")
    parts.append("<h2>Losses</h2>")
    parts.append(_curve(records, [k for k in losses if k.startswith("g/")], "generator")
                 or "<p>No losses logged yet.</p>")
    parts.append(_curve(records, [k for k in losses if k.startswith("d/")], "discriminator"))
    if evals:
        parts.append("<h2>Evaluation during training</h2>")
        parts.extend(_curve(records, [k], k) for k in evals)
    if (run_dir / runs.EVAL).exists():
        parts.append("<h2>Metrics</h2>" + _table(json.loads((run_dir / runs.EVAL).read_text())))
    if len(samples) > 1:
        thumbs = "".join(f"<a href='{runs.SAMPLES}/{html.escape(p.name)}' title='{p.stem}'>"
                         f"<img src='{runs.SAMPLES}/{html.escape(p.name)}'></a>"
                         for p in reversed(samples[:-1]))
        parts.append(f"<h2>Past samples</h2><div class='thumbs'>{thumbs}</div>")
    parts.append("<h2>Settings</h2>" + _table(_flatten(config)))
    body = "\n".join(p for p in parts if p)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run_dir.name)}"
            f"</title><style>{STYLE}</style></head><body>{body}</body></html>\n")


def write_report(run_dir: Path) -> Path:
    path = run_dir / REPORT
    runs.write_text(path, render(run_dir))
    return path
