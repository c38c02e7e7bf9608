"""The run report: `index.html` in every run folder, a dashboard readable offline in any browser
(no scripts, nothing fetched). It shows the latest sample grid large with its columns labelled,
one chart per loss (raw and smoothed, each on its own axis), the learning rate, the evaluation
curves with the best step marked, the latest evaluation record, past grids and every setting.
Rewritten (atomically) whenever the trainer saves samples or a checkpoint."""
from __future__ import annotations

import html
import json
import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.atomic import write_text
from . import folders as runs
from .charts import STYLE as CHART_STYLE, line_chart
from ..errors import CheckpointError
from ..health import judge_run, render_html

REPORT = "index.html"
HIGHER_IS_BETTER = ("psnr", "ssim")  # every other evaluation metric (l1, swd, fid, kid) falls
GRID_BOX = (960, 640)  # the size a sample grid is scaled up towards (never down)
STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;
color:#222;background:#fafafa}h1{font-size:1.4em;margin-bottom:.2em}.sub{color:#666;margin-top:0}
h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;font-size:.85em;vertical-align:top}
.charts{display:flex;flex-wrap:wrap;gap:12px}
figure.samples{margin:0;max-width:100%}
figure.samples img{width:100%;height:auto;image-rendering:pixelated;display:block;
border:1px solid #ddd}
.labels{display:grid;text-align:center;font-weight:600;font-size:.9em;margin-bottom:4px}
.labels span small{display:block;font-weight:400;color:#666}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}.thumbs figure{margin:0;text-align:center;
font-size:.8em;color:#555}.thumbs img{width:200px;image-rendering:pixelated;border:1px solid #ddd}
.metrics td{font-variant-numeric:tabular-nums}"""


def column_label(name: str, names: Sequence[str]) -> tuple[str, str]:
    """(role, name) for a sample-grid column: what a reader wants to know is whether it is the
    input, the model's output, the target, a reconstruction or an identity mapping."""
    if name.startswith("fake_"):
        return "output", name
    if name.startswith("rec_"):
        return "reconstruction", name
    if name.startswith("idt_"):
        return "identity", name
    real = name.removeprefix("real_")
    if real in ("a", "b"):
        other = "b" if real == "a" else "a"
        # A real domain the model translates from is an input; one it only produces is a target.
        if f"fake_{other}" in names or f"fake_{real}" not in names:
            return "input", name
        return "target", name
    return name, ""


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, or None when the file is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def _samples(run_dir: Path, samples: list[Path]) -> str:
    latest = samples[-1]
    columns = runs.sample_columns(run_dir)
    size = _png_size(latest)
    # Small grids are scaled up by a whole factor (crisp pixels) to fill about GRID_BOX.
    scale = max(1, math.floor(min(GRID_BOX[0] / size[0], GRID_BOX[1] / size[1]))) \
        if size else 1
    width = f"{size[0] * scale}px" if size else f"{GRID_BOX[0]}px"
    labels = ""
    if columns:
        cells = "".join(f"<span>{html.escape(role)}<small>{html.escape(name)}</small></span>"
                        for role, name in (column_label(c, columns) for c in columns))
        labels = (f"<div class='labels' style='grid-template-columns:repeat({len(columns)},1fr)'>"
                  f"{cells}</div>")
    return (f"<h2>Samples at {html.escape(_step_name(latest))}</h2>"
            f"<figure class='samples' style='width:{width}'>{labels}"
            f"<img src='{runs.SAMPLES}/{html.escape(latest.name)}' alt='latest sample grid'>"
            "</figure>")


def _step_name(path: Path) -> str:
    digits = path.stem.rsplit("_", 1)[-1]
    return f"step {int(digits)}" if digits.isdigit() else path.stem


def _series(records: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r[key])) for r in records
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
            and isinstance(r.get("step"), (int, float)) and math.isfinite(r[key])]


def _loss_charts(records: Sequence[Mapping[str, Any]]) -> str:
    keys = sorted({k for r in records for k in r if k.startswith(("g/", "d/"))},
                  key=lambda k: (not k.startswith("g/"), k))
    charts = [line_chart(("generator " if k.startswith("g/") else "discriminator ") + k[2:],
                         {k: _series(records, k)}, y_label=k) for k in keys]
    charts = [c for c in charts if c]
    if not charts:
        return "<h2>Losses</h2><p>No losses logged yet.</p>"
    lr = line_chart("learning rate", {"lr": _series(records, "lr")}, y_label="lr",
                    smoothed=False)
    parts = ["<h2>Losses</h2><div class='charts'>", *charts, "</div>"]
    if lr:
        parts += ["<h2>Learning rate</h2><div class='charts'>", lr, "</div>"]
    return "".join(parts)


def _eval_charts(records: Sequence[Mapping[str, Any]]) -> str:
    keys = sorted({k for r in records for k in r if k.startswith("eval/")})
    charts = []
    for key in keys:
        points = _series(records, key)
        if not points:
            continue
        higher = key.removeprefix("eval/").split("_")[0] in HIGHER_IS_BETTER
        best = (max if higher else min)(points, key=lambda p: p[1])
        caption = f"best {best[1]:.4g} at step {int(best[0])}"
        charts.append(line_chart(f"{key} ({'higher' if higher else 'lower'} is better)",
                                 {key: points}, y_label=key, smoothed=False,
                                 mark=(*best, caption)))
    if not charts:
        return ""
    return "<h2>Evaluation during training</h2><div class='charts'>" + "".join(charts) + "</div>"


def _table(rows: Mapping[str, Any], css: str = "") -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>"
                    for k, v in rows.items())
    return f"<table class='{css}'>{cells}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, Mapping):
        return _table(value)
    return html.escape(_fmt(value))


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


def _evaluation_record(run_dir: Path) -> str:
    path = run_dir / runs.EVAL
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(record, dict):
        return ""
    return f"<h2>Evaluation ({html.escape(runs.EVAL)})</h2>" + _table(record, "metrics")


def _health(run_dir: Path) -> str:
    """The training-health verdict (as `img2img health` gives it), once something is logged."""
    try:
        verdict = judge_run(run_dir)
    except CheckpointError:  # nothing logged yet
        return ""
    return render_html(verdict, chart=line_chart)


def render(run_dir: Path) -> str:
    config = runs.read_config(run_dir)
    records = runs.read_metrics(run_dir)
    samples = sorted((run_dir / runs.SAMPLES).glob("*.png"))
    parts = [f"<h1>{html.escape(run_dir.name)}</h1>"]
    where = [f"model {config.get('model')}"]
    if config.get("preset"):
        where.append(f"preset {config['preset']}")
    if records:
        where.append(f"step {records[-1].get('step')}, epoch {records[-1].get('epoch')}")
    parts.append(f"<p class='sub'>{html.escape(' | '.join(where))}</p>")
    if samples:
        parts.append(_samples(run_dir, samples))
    parts.append(_health(run_dir))
    parts.append(_loss_charts(records))
    parts.append(_eval_charts(records))
    parts.append(_evaluation_record(run_dir))
    if len(samples) > 1:
        thumbs = "".join(f"<figure><a href='{runs.SAMPLES}/{html.escape(p.name)}'>"
                         f"<img src='{runs.SAMPLES}/{html.escape(p.name)}' "
                         f"alt='{html.escape(_step_name(p))}'></a>"
                         f"<figcaption>{html.escape(_step_name(p))}</figcaption></figure>"
                         for p in reversed(samples[:-1]))
        parts.append(f"<h2>Past samples</h2><div class='thumbs'>{thumbs}</div>")
    parts.append("<h2>Settings</h2>" + _table(_flatten(config)))
    body = "\n".join(p for p in parts if p)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run_dir.name)}"
            f"</title><style>{STYLE}\n{CHART_STYLE}</style></head><body>{body}</body></html>\n")


def write_report(run_dir: Path) -> Path:
    path = run_dir / REPORT
    write_text(path, render(run_dir))
    return path
