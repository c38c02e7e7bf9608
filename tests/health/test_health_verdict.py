"""The verdict on synthetic run logs: a healthy run raises no alarm; an overpowering
discriminator, collapsed outputs, skipped steps, rollbacks and NaN are each reported from the
step they started, with suggestions tied to the signal; the log is read as the trainer leaves
it (a cut-short last line) and a broken one is refused clearly. Also the text and HTML forms."""
from __future__ import annotations

import json
import math
import random

import pytest

from img2img.runs import folders as runs
from img2img.errors import CheckpointError
from img2img.health import render_html, render_text
from img2img.health.verdict import (COLLAPSED, METRICS, CONFIG, NON_FINITE, OVERPOWERED,
                                    ROLLED_BACK, SKIPPED_STEPS, judge, judge_run)

from health_runs import EVERY, RECORDS, healthy_record


def problems(verdict):
    return {f.problem: f for f in verdict.findings}


def test_a_healthy_run_raises_no_alarm(write_run):
    verdict = judge_run(write_run())
    assert verdict.healthy, render_text(verdict)
    assert verdict.records == RECORDS and verdict.steps == (EVERY, RECORDS * EVERY)
    assert "healthy" in render_text(verdict)


def test_an_overpowering_discriminator_is_reported_from_the_step_it_started(write_run):
    def winning_d(index, record):
        if index >= 25:
            record.update({"health/d_acc_real": 0.99, "health/d_acc_fake": 0.98,
                           "d/real": 0.004, "d/fake": 0.003, "g/gan": 4.5})
    found = problems(judge_run(write_run(winning_d)))
    assert set(found) == {OVERPOWERED}
    finding = found[OVERPOWERED]
    assert finding.step == 26 * EVERY
    assert finding.signal == "health/d_acc_real"
    assert "to the last record" in finding.detail
    assert any("--lr-d 0.0001" in tip for tip in finding.suggestions)
    assert any("--diff-augment" in tip for tip in finding.suggestions)


def test_a_few_confident_records_are_not_an_overpowering_discriminator(write_run):
    def blip(index, record):
        if 10 <= index < 14:  # four records: fewer than SUSTAINED
            record.update({"health/d_acc_real": 0.99, "health/d_acc_fake": 0.99})
    assert judge_run(write_run(blip)).healthy


def test_with_a_short_log_interval_the_confident_stretch_must_last_too():
    rng = random.Random(0)
    records = [healthy_record(i, rng) for i in range(400)]
    for step, record in enumerate(records, 1):
        record["step"] = step  # --log-every 1
    winning = {"health/d_acc_real": 0.99, "health/d_acc_fake": 0.99}
    for record in records[100:106]:  # 6 records, but 6 steps of 400
        record.update(winning)
    assert judge(records).healthy
    for record in records[200:230]:  # 30 steps: more than 5% of the run
        record.update(winning)
    assert [(f.problem, f.step) for f in judge(records).findings] == [(OVERPOWERED, 201)]


def test_without_health_signals_the_losses_show_an_overpowering_discriminator(write_run):
    def old_run(index, record):
        for key in [k for k in record if k.startswith("health/")]:
            del record[key]
        if index >= 30:  # D's loss near zero while G's adversarial loss climbs
            record.update({"d/real": 0.01, "d/fake": 0.01, "g/gan": 3.0 + index * 0.1})
    verdict = judge_run(write_run(old_run))
    finding = problems(verdict)[OVERPOWERED]
    assert finding.step == 31 * EVERY and finding.signal == "d-loss-near-zero"
    assert any("--spectral-norm" in tip for tip in finding.suggestions)
    assert any("no health/* signals" in note for note in verdict.notes)


def test_r_t_near_one_shows_it_when_accuracy_is_not_logged(write_run):
    def sure(index, record):
        del record["health/d_acc_real"], record["health/d_acc_fake"]
        if index >= 20:
            record["health/r_t"] = 0.97
    finding = problems(judge_run(write_run(sure)))[OVERPOWERED]
    assert finding.step == 21 * EVERY and finding.signal == "health/r_t"
    assert finding.suggestions[0].startswith("--ada")


def test_wgan_gp_is_never_called_overpowered(write_run):
    def winning_d(index, record):
        record.update({"health/d_acc_real": 0.99, "health/d_acc_fake": 0.99})
    config = {"training": {"gan_loss": "wgan-gp", "lr": 2e-4}}
    verdict = judge_run(write_run(winning_d, config=config))
    assert verdict.healthy and any("wgan-gp" in note for note in verdict.notes)


def test_constant_outputs_are_reported_as_collapse(write_run):
    def constant(index, record):
        if "health/diversity" in record and index >= 19:
            record["health/diversity"] = 0.0  # every input gave the same image
    found = problems(judge_run(write_run(constant)))
    assert set(found) == {COLLAPSED}
    assert found[COLLAPSED].step == 20 * EVERY
    assert "0, 0" in found[COLLAPSED].detail


def test_one_low_diversity_sample_that_recovers_is_not_collapse(write_run):
    def dip(index, record):
        if index == 9:
            record["health/diversity"] = 0.01
    assert judge_run(write_run(dip)).healthy


def test_collapse_is_judged_per_direction_and_at_the_last_sample(write_run):
    def one_way(index, record):
        if "health/diversity" in record:
            value = record.pop("health/diversity")
            record["health/diversity.a_to_b"] = value
            record["health/diversity.b_to_a"] = 0.0 if index == RECORDS - 1 else value
    finding = problems(judge_run(write_run(one_way)))[COLLAPSED]
    assert finding.signal == "health/diversity.b_to_a" and finding.step == RECORDS * EVERY


def test_nan_is_reported_at_its_step(write_run):
    def nan(index, record):
        if index >= 33:
            record["g/l1"] = math.nan
    finding = problems(judge_run(write_run(nan)))[NON_FINITE]
    assert finding.step == 34 * EVERY and finding.signal == "g/l1"
    assert "g/l1 logged as nan" in finding.detail
    assert any("--lambda-l1 50" in tip for tip in finding.suggestions)


def test_skipped_steps_and_rollbacks_are_listed_by_step(write_run):
    def events(index, record):
        record["health/skipped"] = 0 if index < 5 else 1 if index < 12 else 3
        record["health/rollbacks"] = 0 if index < 20 else 1
    found = problems(judge_run(write_run(events)))
    assert set(found) == {SKIPPED_STEPS, ROLLED_BACK}
    assert found[SKIPPED_STEPS].step == 6 * EVERY
    assert "3 step(s) skipped" in found[SKIPPED_STEPS].detail
    assert f"ending at step(s) {6 * EVERY}, {13 * EVERY}" in found[SKIPPED_STEPS].detail
    assert found[ROLLED_BACK].step == 21 * EVERY


def test_a_rollback_names_the_signal_that_ran_away(write_run):
    def spike(index, record):
        if index in (18, 19):
            record["grad/d.b"] *= 10_000  # past GRAD_FACTOR (1000x): single-step norms swing
        record["health/rollbacks"] = int(index >= 20)
    finding = problems(judge_run(write_run(spike)))[ROLLED_BACK]
    assert finding.signal == "grad/d.b" and "grad/d.b ran away" in finding.detail
    assert any("--lr-d" in tip for tip in finding.suggestions)


def test_findings_come_in_order_of_their_first_step(write_run):
    def both(index, record):
        if index >= 30:
            record["g/gan"] = math.inf
        if index >= 10:
            record.update({"health/d_acc_real": 0.99, "health/d_acc_fake": 0.99})
    verdict = judge_run(write_run(both))
    assert [f.problem for f in verdict.findings] == [OVERPOWERED, NON_FINITE]


def test_a_last_line_cut_short_is_ignored_and_a_broken_one_refused(write_run):
    run = write_run()
    with open(run / METRICS, "a") as f:
        f.write('{"step": 2050, "g/gan": 0.')
    assert judge_run(run).records == RECORDS
    lines = (run / METRICS).read_text().splitlines()
    lines[3] = lines[3][:20]
    (run / METRICS).write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match=r"metrics.jsonl line 4 is not JSON"):
        judge_run(run)


def test_what_is_not_a_run_is_named(tmp_path, write_run):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'nothing'} does not exist"):
        judge_run(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match=f"{tmp_path} is not a run folder"):
        judge_run(tmp_path)
    run = write_run()
    (run / METRICS).unlink()
    with pytest.raises(CheckpointError, match="has no metrics.jsonl"):
        judge_run(run)
    (run / METRICS).write_text(json.dumps({"step": 10, "eval/l1": 0.2}) + "\n")
    with pytest.raises(CheckpointError, match="no training record"):
        judge_run(run)


def test_the_file_names_are_the_trainers():
    assert (CONFIG, METRICS) == (runs.CONFIG, runs.METRICS)


def test_text_and_html_carry_each_finding_with_its_step_and_suggestions(write_run):
    def constant(index, record):
        if "health/diversity" in record and index >= 19:
            record["health/diversity"] = 0.0
    verdict = judge_run(write_run(constant))
    text = render_text(verdict)
    assert f"outputs collapsed, from step {20 * EVERY}" in text and "  try: " in text
    drawn = []
    page = render_html(verdict, chart=lambda title, series, y_label: drawn.append(
        (title, sorted(series))) or f"<svg>{title}</svg>")
    assert page.startswith('<section id="health" class="health problems">')
    assert f"<td>outputs collapsed</td><td>{20 * EVERY}</td>" in page
    assert ("Discriminator accuracy", ["fake", "real"]) in drawn
    assert ("Output diversity", ["diversity"]) in drawn
    assert "<svg>Output diversity</svg>" in page and page.rstrip().endswith("</section>")


def test_html_escapes_what_it_shows():
    verdict = judge([{"step": 1, "g/<b>": math.nan}], {}, "r")
    page = render_html(verdict)
    assert "g/&lt;b&gt;" in page and "<b>" not in page
