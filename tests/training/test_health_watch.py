"""Training health in the trainer, with failures injected on purpose on tiny runs: a NaN loss at
one step is skipped and changes nothing; NaN from some step on stops the run with a loadable
checkpoint; a learning rate far too high rolls back (and a resumed run is exact); a constant
generator is reported as collapsed and a healthy run is not; --ada's probability is logged and
resumed exactly; every record carries the discriminator's decisions."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from img2img import Img2ImgError, TrainConfig, Trainer
from img2img.cli import build_cli
from img2img.health import NonFiniteSteps
from img2img.health.verdict import COLLAPSE_BELOW, OVERPOWERED, judge_run
from img2img.registry.loading import load_plugins
from img2img.runs import checkpoints, folders as runs
from img2img.testing import write_sample_images
from img2img_pix2pix import Pix2Pix

from collapsed import Collapsed

OPTIONS = Pix2Pix.Options(generator="unet-32", ngf=8, ndf=8)
SMALL = dict(load_size=32, crop_size=32, workers=0, device="cpu", log_every=1, sample_every=0,
             seed=2)


@pytest.fixture
def data(tmp_path):
    return write_sample_images("paired", tmp_path / "data", n=6, size=40)["data"]


def _trainer(tmp_path, data, cls=Pix2Pix, options=OPTIONS, resume_from=None, **settings):
    config = TrainConfig(data=data, runs_dir=tmp_path / "runs", **{**SMALL, **settings})
    return Trainer(cls, options, config, resume_from=resume_from, progress=False)


def _everything(trainer) -> dict:
    """Every weight and optimiser tensor (and step count) of the run, copied."""
    return copy.deepcopy({"model": trainer.model.state_dict(),
                          "optimizers": {k: o.state_dict()["state"]
                                         for k, o in trainer.optimizers.items()}})


def _tensors(tree, prefix=""):
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _tensors(value, f"{prefix}/{key}")


def _assert_identical(before, after):
    pairs = dict(_tensors(before)), dict(_tensors(after))
    assert pairs[0].keys() == pairs[1].keys()
    changed = [k for k in pairs[0] if not torch.equal(pairs[0][k], pairs[1][k])]
    assert not changed, f"changed across the skipped step: {changed[:5]}"


def _poison(trainer, from_step: int, to_step: int | None = None) -> None:
    """The generator's adversarial loss becomes NaN on the steps [from_step, to_step)."""
    losses = trainer.model.generator_losses

    def poisoned(batch, fakes):
        terms = dict(losses(batch, fakes))
        step = trainer.state.step
        if step >= from_step and (to_step is None or step < to_step):
            terms["gan"] = terms["gan"] * float("nan")
        return terms
    trainer.model.generator_losses = poisoned


def test_a_nan_loss_at_one_step_is_skipped_and_changes_nothing(tmp_path, data, caplog):
    trainer = _trainer(tmp_path, data, max_steps=6, ema=0.9)
    _poison(trainer, 3, 4)  # the 4th step
    seen, step = {}, trainer.train_step

    def train_step(batch):
        if trainer.state.step == 3:
            seen["before"] = _everything(trainer)
            seen["average"] = copy.deepcopy(trainer.ema.average.state_dict())
        terms = step(batch)
        if trainer.state.step == 3:
            seen["after"] = _everything(trainer)
            seen["average after"] = copy.deepcopy(trainer.ema.average.state_dict())
            seen["terms"] = terms
        return terms
    trainer.train_step = train_step
    with caplog.at_level(logging.WARNING, logger="img2img"):
        trainer.fit()
    assert trainer.state.step == 6 and seen["terms"] is None
    _assert_identical(seen["before"], seen["after"])
    _assert_identical(seen["average"], seen["average after"])
    skips = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skips) == 1 and skips[0].startswith("step 4 skipped: non-finite g/gan")
    records = runs.read_metrics(trainer.run_dir)
    assert [r["health/skipped"] for r in records] == [0, 0, 0, 1, 1, 1]
    # The skipped step's NaN is in no logged value, so nothing downstream is poisoned.
    assert all(v == v for r in records for v in r.values() if isinstance(v, float))
    assert "g/gan" not in records[3] and "grad/g.a_to_b" not in records[3]


def test_nan_from_some_step_on_stops_with_the_message_and_a_loadable_checkpoint(tmp_path, data):
    trainer = _trainer(tmp_path, data, max_steps=60)
    _poison(trainer, 2)
    with pytest.raises(NonFiniteSteps) as caught:
        trainer.fit()
    message = str(caught.value)
    assert message.startswith("training stopped at step 22: 20 steps in a row (3-22) had a "
                              "non-finite g/gan")
    assert "Saved step_00000022.safetensors" in message and "--resume" in message
    assert "training stopped at step" not in message[10:]  # said once
    weights = checkpoints.resolve_checkpoint(trainer.run_dir)
    tensors = checkpoints.load_weights(weights)
    assert all(torch.isfinite(t).all() for t in tensors.values())
    # No weight moved since step 2, the last applied step.
    resumed = _trainer(tmp_path, data, max_steps=60, resume_from=weights)
    assert resumed.state.step == 22 and resumed.watch.guard.skipped == 20


def _too_fast_from(trainer, step: int, factor: float) -> None:
    """From `step` on, the base learning rates are `factor` x too high (rollbacks halve them
    from there)."""
    train_step, base = trainer.train_step, dict(trainer.base_lr)

    def faster(batch):
        if trainer.state.step >= step and trainer.base_lr == base:
            trainer.base_lr = {k: v * factor for k, v in base.items()}
            trainer._set_learning_rates()
        return train_step(batch)
    trainer.train_step = faster


# At 8 channels wide the networks shrug off a 100x learning rate under Adam (its step is
# bounded by the rate and batch norm absorbs the rest), so the failure is injected at 1000x.
TOO_FAST = 1000.0


def test_a_learning_rate_far_too_high_rolls_back_then_stops_clearly(tmp_path, data, caplog):
    trainer = _trainer(tmp_path, data, max_steps=60, max_rollbacks=1)
    _too_fast_from(trainer, 15, 100 * TOO_FAST)  # still far too fast once halved
    with caplog.at_level(logging.WARNING, logger="img2img"), \
            pytest.raises(Img2ImgError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert "training kept diverging" in message and "1 rollback(s)" in message
    assert "ran away" in message and "; try a lower" in message and "learning rate" in message
    records = runs.read_metrics(trainer.run_dir)
    watching = [r.getMessage() for r in caplog.records if "watching" in r.getMessage()]
    rolls = [r.getMessage() for r in caplog.records if "rolling back" in r.getMessage()]
    assert len(rolls) == 1 and watching
    # Each rollback comes at the second check that sees the divergence (the first warns).
    for roll in rolls:
        at = int(roll.split(":")[0].split()[1])
        assert at >= 16 and any(w.startswith(f"step {at - 1}: ") for w in watching), roll
    assert [r["health/rollbacks"] for r in records][-1] == 1
    # The saved checkpoint is the healthy point before the divergence, finite and loadable.
    weights = checkpoints.resolve_checkpoint(trainer.run_dir)
    saved = checkpoints.load_state(weights)
    assert saved["step"] < at - 1 and saved["health"]["monitor"]["rollbacks"] == 1
    assert all(torch.isfinite(t).all() for t in checkpoints.load_weights(weights).values())


def test_rollbacks_halve_the_rate_until_training_finishes_and_resume_is_exact(tmp_path, data):
    full = _trainer(tmp_path, data, max_steps=40, max_rollbacks=12, name="full")
    _too_fast_from(full, 15, TOO_FAST)
    full.fit()
    records = runs.read_metrics(full.run_dir)
    rollbacks = records[-1]["health/rollbacks"]
    assert full.state.step == 40 and rollbacks >= 1
    assert records[-1]["lr"] == pytest.approx(2e-4 * TOO_FAST * 0.5 ** rollbacks)
    # The same run stopped at step 33 and resumed: bit for bit the same weights at step 40.
    part = _trainer(tmp_path, data, max_steps=33, max_rollbacks=12, name="part")
    _too_fast_from(part, 15, TOO_FAST)
    part.fit()
    resumed = _trainer(tmp_path, data, max_steps=40, max_rollbacks=12,
                       resume_from=part.run_dir / "checkpoints" / "step_00000033.safetensors")
    _too_fast_from(resumed, 15, TOO_FAST)
    resumed.fit()
    assert resumed.watch.monitor.rollbacks == rollbacks
    _assert_identical(_everything(full)["model"], _everything(resumed)["model"])


def _health(run: Path):
    cli = build_cli(load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"}))
    return CliRunner().invoke(cli, ["health", str(run)])


def test_a_constant_generator_is_reported_collapsed(tmp_path, data):
    trainer = _trainer(tmp_path, data, cls=Collapsed, max_steps=12, sample_every=4)
    trainer.fit()
    diversity = [r["health/diversity"] for r in runs.read_metrics(trainer.run_dir)
                 if "health/diversity" in r]
    assert len(diversity) == 3 and max(diversity) < 1e-6
    result = _health(trainer.run_dir)
    assert result.exit_code == 1, result.output
    assert "outputs collapsed, from step 4" in result.output


FACES = Path(__file__).resolve().parents[2] / "datasets" / "faces_edges2photo" / "train"


def test_a_healthy_run_on_the_bundled_faces_raises_no_alarm(tmp_path):
    trainer = _trainer(tmp_path, FACES, max_steps=40, log_every=4, sample_every=10,
                       batch_size=2)
    trainer.fit()
    records = runs.read_metrics(trainer.run_dir)
    diversity = [r["health/diversity"] for r in records if "health/diversity" in r]
    # Early outputs are blurred means of faces, less varied than their edge maps, but far from
    # the collapse threshold.
    assert len(diversity) == 4 and min(diversity) > 1.5 * COLLAPSE_BELOW
    assert all(0 <= r["health/d_acc_real"] <= 1 and -1 <= r["health/r_t"] <= 1
               for r in records)
    # No false alarm of collapse, skips or rollbacks. (Its 8-wide discriminator may well
    # overpower the generator on 128 faces within 40 steps: that finding is not false.)
    verdict = judge_run(trainer.run_dir)
    assert verdict.records == 10 and not verdict.notes
    assert {f.problem for f in verdict.findings} <= {OVERPOWERED}


def test_a_discriminator_learning_ten_times_faster_is_reported_from_the_step_it_started(
        tmp_path):
    trainer = _trainer(tmp_path, FACES, max_steps=40, log_every=2, batch_size=2, lr_d=2e-3)
    trainer.fit()
    records = runs.read_metrics(trainer.run_dir)
    confident = [r["health/d_acc_real"] >= 0.95 and r["health/d_acc_fake"] >= 0.95
                 for r in records]
    # Where the first run of 5 confident records in a row begins, read from the log itself.
    started = next(records[i]["step"] for i in range(len(records) - 4) if all(confident[i:i + 5]))
    found = [f for f in judge_run(trainer.run_dir).findings if f.problem == OVERPOWERED]
    assert len(found) == 1 and found[0].step == started
    assert found[0].signal == "health/d_acc_real"
    assert any("--lr-d 0.001 (now 0.002)" in tip for tip in found[0].suggestions)
    result = _health(trainer.run_dir)
    assert result.exit_code == 1 and f"discriminator overpowered, from step {started}" \
        in result.output


def _eager_ada(trainer):
    """r_t of a tiny run hovers near 0, below the 0.6 target; a target below any r_t makes p
    rise every interval, so its path is worth checking."""
    trainer.watch.ada.target = -1.0
    return trainer


def test_ada_probability_is_logged_checkpointed_and_resumed_exactly(tmp_path, data):
    full = _eager_ada(_trainer(tmp_path, data, max_steps=16, ada=True, name="full"))
    full.fit()
    p = [r["health/ada_p"] for r in runs.read_metrics(full.run_dir)]
    assert len(p) == 16 and len(set(p)) > 1  # it moves, every 4 steps
    assert p[:4] == [0.0] * 3 + [0.0004] and p[-1] == pytest.approx(0.0016)  # 1 x 4 / 10k
    part = _eager_ada(_trainer(tmp_path, data, max_steps=10, ada=True, name="part"))
    part.fit()
    resumed = _eager_ada(_trainer(
        tmp_path, data, max_steps=16, ada=True,
        resume_from=part.run_dir / "checkpoints" / "step_00000010.safetensors"))
    assert float(resumed.watch.ada.p) == pytest.approx(p[9], abs=1e-5)
    resumed.fit()
    assert float(resumed.watch.ada.p) == float(full.watch.ada.p)
    _assert_identical(_everything(full)["model"], _everything(resumed)["model"])
    config = json.loads((full.run_dir / "config.json").read_text())
    assert config["training"]["ada"] is True


def test_a_model_can_log_a_signal_of_its_own(tmp_path, data):
    class Reporting(Pix2Pix):
        name = "reporting"

        def health_signals(self):
            return {"mean_output": torch.tensor(0.25)}

    trainer = _trainer(tmp_path, data, cls=Reporting, max_steps=2)
    trainer.fit()
    assert [r["health/mean_output"] for r in runs.read_metrics(trainer.run_dir)] == [0.25] * 2
