"""The training-health section of the run report in a real browser (headless Chromium from the
system's packages): a run whose generator ignores its input shows the collapse finding with
what to try, and the charts of the signals the trainer logged are drawn. The screenshot is kept
in tmp_path, and also in $IMG2IMG_SCREENSHOTS when set (how docs/health-report.png is made:
`IMG2IMG_SCREENSHOTS=docs pytest tests/health/test_health_report_browser.py`)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from img2img import TrainConfig, Trainer
from img2img.runs.report import REPORT
from img2img.testing import write_sample_images
from img2img_pix2pix import Pix2Pix

from collapsed import Collapsed


def test_the_health_section_shows_the_collapse_and_its_charts(chromium, tmp_path):
    data = write_sample_images("paired", tmp_path / "data", n=6, size=40)
    config = TrainConfig(**data, max_steps=24, batch_size=2, load_size=32, crop_size=32,
                         workers=0, log_every=2, sample_every=4, checkpoint_every=0,
                         runs_dir=tmp_path / "runs", device="cpu", name="collapsed")
    run = Trainer(Collapsed, Pix2Pix.Options(**Pix2Pix.smoke_options), config,
                  progress=False).fit()
    chromium.get((run / REPORT).as_uri())
    section = chromium.find_element("id", "health")
    assert "problems" in section.get_attribute("class")
    rows = chromium.execute_script(
        "return Array.from(document.querySelectorAll('#health tbody tr')).map("
        "r => Array.from(r.cells).map(c => c.innerText));")
    problems = {row[0]: row for row in rows}
    assert "outputs collapsed" in problems
    assert problems["outputs collapsed"][1] == "4"  # the first sample
    assert "health/diversity" in problems["outputs collapsed"][2]
    charts = chromium.execute_script(
        "return Array.from(document.querySelectorAll('#health svg.chart')).map(s =>"
        " [s.getAttribute('aria-label'), s.getBoundingClientRect().width,"
        "  s.querySelectorAll('polyline').length]);")
    labels = " ".join(label for label, *_ in charts)
    assert "diversity" in labels and "accuracy" in labels.lower()
    for label, width, lines in charts:
        assert width > 300 and lines >= 1, label
    height = chromium.execute_script("return document.documentElement.scrollHeight")
    chromium.set_window_size(1280, int(min(max(height, 800), 4000)))
    shot = tmp_path / "health-report.png"
    assert section.screenshot(str(shot)) and shot.stat().st_size > 10_000  # the section alone
    if os.environ.get("IMG2IMG_SCREENSHOTS"):
        target = Path(os.environ["IMG2IMG_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target / "health-report.png")
