"""`img2img health RUN` as a pipeline sees it: the verdict on stdout, exit code 0 for a healthy
run, 1 when problems were found, 2 (with the folder named) when RUN is not a run to judge."""
from __future__ import annotations

import json

from click.testing import CliRunner

from img2img.cli.health import health

from health_runs import EVERY


def invoke(*args):
    return CliRunner().invoke(health, [str(a) for a in args])


def collapse(index, record):
    if "health/diversity" in record and index >= 19:
        record["health/diversity"] = 0.0


def test_a_healthy_run_exits_zero(write_run):
    run = write_run()
    result = invoke(run)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{run}: healthy: no problem found in 40 log record(s)")


def test_problems_exit_one_with_the_step_and_what_to_try(write_run):
    result = invoke(write_run(collapse))
    assert result.exit_code == 1, result.output
    assert f"outputs collapsed, from step {20 * EVERY}" in result.output
    assert "try: --diff-augment" in result.output


def test_json_output_for_scripts(write_run):
    result = invoke(write_run(collapse), "--json")
    assert result.exit_code == 1
    verdict = json.loads(result.output)
    assert verdict["healthy"] is False
    assert [(f["problem"], f["step"], f["signal"]) for f in verdict["findings"]] == [
        ("outputs collapsed", 20 * EVERY, "health/diversity")]


def test_what_is_not_a_run_is_a_usage_error_naming_the_folder(tmp_path, write_run):
    result = invoke(tmp_path)
    assert result.exit_code == 2
    assert f"{tmp_path} is not a run folder (no config.json)" in result.output
    run = write_run()
    (run / "metrics.jsonl").unlink()
    result = invoke(run)
    assert result.exit_code == 2 and f"{run} has no metrics.jsonl" in result.output
    assert invoke().exit_code == 2  # RUN missing


def test_a_real_run_is_judged_by_the_installed_command_and_its_report(tmp_path):
    """What training writes is what the verdict reads: a tiny pix2pix run through `img2img
    train`, then `img2img health` from the same command line, and the report's section."""
    from img2img.cli import build_cli
    from img2img.testing import write_sample_images

    data = write_sample_images("paired", tmp_path / "data", n=2, size=40)["data"]
    cli = build_cli()
    trained = CliRunner().invoke(cli, [
        "train", "pix2pix", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--name",
        "tiny", "--max-steps", "3", "--log-every", "1", "--batch-size", "2", "--workers", "0",
        "--device", "cpu", "--load-size", "32", "--crop-size", "32", "--generator", "unet-32",
        "--ngf", "8", "--ndf", "8"])
    assert trained.exit_code == 0, trained.output
    run = tmp_path / "runs" / "tiny"
    judged = CliRunner().invoke(cli, ["health", str(run), "--json"])
    assert judged.exit_code == 0, judged.output
    assert json.loads(judged.output)["healthy"] is True
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["grad/g.a_to_b"] > 0 and r["grad/d.b"] > 0 for r in records)
    assert '<section id="health"' in (run / "index.html").read_text()
