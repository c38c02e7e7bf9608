"""The run report in a real browser (headless Chromium from the system's packages): every image
loads, every chart is drawn, the grid's columns are labelled. The screenshot is kept in
tmp_path, and also in $IMG2IMG_SCREENSHOTS when set (how docs/report.png is made:
`IMG2IMG_SCREENSHOTS=docs pytest tests/runs/test_report_browser.py`)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from img2img import TrainConfig, Trainer
from img2img.runs.report import REPORT
from img2img.testing import write_sample_images
from img2img_pix2pix import Pix2Pix


def _tiny_run(root: Path) -> Path:
    """12 steps of a narrow Pix2Pix at 32 px (about 5 s): losses every step, a grid and an
    evaluation every 4, the learning rate decaying over the last half."""
    data = write_sample_images("paired", root / "data", n=4, size=40)
    held_out = write_sample_images("paired", root / "held_out", n=2, size=40, seed=3)
    config = TrainConfig(**data, epochs=3, decay_epochs=3, max_steps=12, batch_size=2,
                         load_size=32, crop_size=32, workers=0, log_every=1, sample_every=4,
                         checkpoint_every=0, eval_every=4, eval_data=held_out["data"],
                         runs_dir=root / "runs", device="cpu", name="report")
    return Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options), config,
                   progress=False).fit()


def test_the_report_loads_its_images_and_charts_in_a_browser(chromium, tmp_path):
    run = _tiny_run(tmp_path)
    chromium.get((run / REPORT).as_uri())
    images = chromium.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete,"
        " i.naturalWidth, i.getBoundingClientRect().width]);")
    assert len(images) >= 2  # the latest grid and past ones
    for src, complete, natural_width, _ in images:
        assert complete and natural_width > 0, f"{src} did not load"
    latest_width = images[0][3]
    assert latest_width >= 4 * 96  # shown large: the 96 px wide grid scaled up
    charts = chromium.execute_script(
        "return Array.from(document.querySelectorAll('svg.chart')).map(s =>"
        " [s.getAttribute('aria-label'), s.getBoundingClientRect().width,"
        "  s.querySelectorAll('polyline').length, s.querySelectorAll('text.tick').length]);")
    labels = [label for label, *_ in charts]
    assert any(label.startswith("generator l1") for label in labels)
    assert any(label.startswith("discriminator ") for label in labels)
    assert any(label.startswith("learning rate") for label in labels)
    assert any(label.startswith("eval/psnr") for label in labels)
    for label, width, lines, tick_labels in charts:
        assert width > 300 and lines >= 1 and tick_labels >= 4, label
    assert chromium.execute_script("return document.querySelectorAll('circle.best').length") >= 1
    columns = chromium.execute_script(
        "return Array.from(document.querySelectorAll('.labels span')).map(s => s.innerText);")
    assert [c.split("\n")[0] for c in columns] == ["input", "output", "target"]
    height = chromium.execute_script("return document.documentElement.scrollHeight")
    chromium.set_window_size(1280, min(max(height, 800), 4000))
    shot = tmp_path / "report.png"
    assert chromium.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("IMG2IMG_SCREENSHOTS"):
        target = Path(os.environ["IMG2IMG_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target / "report.png")
