"""The run report links every sample grid and carries the metrics and settings."""
from __future__ import annotations

import json
import re

from img2img import runs
from img2img.report import write_report


def test_index_html_links_every_sample_and_contains_the_metrics(tmp_path):
    run_dir = runs.create_run(tmp_path, "demo")
    runs.write_config(run_dir, {"model": "pix2pix", "options": {"ngf": 8},
                                "training": {"lr": 0.0002}})
    for step in (10, 20, 30):
        (run_dir / "samples" / f"step_{step:08d}.png").write_bytes(b"\x89PNG")
        runs.append_metrics(run_dir, {"step": step, "epoch": 1, "g/l1": 30.0 / step,
                                      "d/real": 0.5})
    runs.append_metrics(run_dir, {"step": 30, "epoch": 1, "eval/psnr": 21.5})
    (run_dir / "eval.json").write_text(json.dumps({"psnr": 23.25, "ssim": 0.71}))
    page = write_report(run_dir).read_text()
    linked = set(re.findall(r"src='samples/([^']+)'", page))
    assert linked == {f"step_{s:08d}.png" for s in (10, 20, 30)}
    assert "23.25" in page and "0.71" in page and "eval/psnr" in page
    assert "g/l1" in page and "<svg" in page and "options.ngf" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_report_of_a_fresh_run_says_nothing_is_logged_yet(tmp_path):
    run_dir = runs.create_run(tmp_path, "fresh")
    runs.write_config(run_dir, {"model": "cyclegan"})
    page = write_report(run_dir).read_text()
    assert "No losses logged yet" in page and "Past samples" not in page
