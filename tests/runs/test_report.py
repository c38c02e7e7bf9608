"""The run report links every sample grid and carries the metrics and settings."""
from __future__ import annotations

import json
import re

from img2img.runs import folders as runs
from img2img.runs.report import write_report


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


def test_each_loss_has_its_own_labelled_chart_and_the_best_evaluation_is_marked(tmp_path):
    run_dir = runs.create_run(tmp_path, "dash")
    runs.write_config(run_dir, {"model": "pix2pix"})
    for step in range(1, 21):
        runs.append_metrics(run_dir, {"step": step, "epoch": 1, "lr": 2e-4 / step,
                                      "g/l1": 100.0 - step, "g/gan": 0.01 * step,
                                      "d/real": 0.5})
    for step, l1, psnr in ((5, 0.3, 18.0), (10, 0.2, 21.5), (15, 0.25, 20.0)):
        runs.append_metrics(run_dir, {"step": step, "epoch": 1, "eval/l1": l1,
                                      "eval/psnr": psnr})
    page = write_report(run_dir).read_text()
    charts = re.findall(r'<svg class="chart" role="img" aria-label="([^"]+)"', page)
    assert charts == ["generator gan: g/gan against step", "generator l1: g/l1 against step",
                      "discriminator real: d/real against step", "learning rate: lr against step",
                      "eval/l1 (lower is better): eval/l1 against step",
                      "eval/psnr (higher is better): eval/psnr against step"]
    gan = page[page.index("generator gan"):page.index("generator l1")]
    # Its own axis: ticks at round values of 0.01 .. 0.2, not 0 .. 100 shared with g/l1.
    assert ">0.2</text>" in gan and ">100</text>" not in gan
    assert "best 21.5 at step 10" in page and "best 0.2 at step 10" in page
    assert page.count('class="raw"') == 3  # each loss raw and smoothed; lr and evals raw only


def test_sample_grid_columns_are_labelled_by_role(tmp_path):
    from img2img.runs.report import column_label

    run_dir = runs.create_run(tmp_path, "labels")
    runs.write_config(run_dir, {"model": "cyclegan"})
    (run_dir / "samples" / "step_00000010.png").write_bytes(b"\x89PNG")
    names = ["a", "fake_b", "rec_a", "b", "fake_a", "rec_b"]
    (run_dir / "samples.json").write_text(json.dumps({"columns": names}))
    page = write_report(run_dir).read_text()
    assert "<span>reconstruction<small>rec_a</small></span>" in page
    assert [column_label(n, names)[0] for n in names] == [
        "input", "output", "reconstruction", "input", "output", "reconstruction"]
    assert [column_label(n, ["a", "fake_b", "b"])[0] for n in ("a", "fake_b", "b")] == [
        "input", "output", "target"]
