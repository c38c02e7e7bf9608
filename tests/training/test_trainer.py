"""The shared trainer: exact resume, the learning-rate schedule, grouped backward, settings."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from img2img import Img2ImgError, TrainConfig, Trainer
from img2img.runs import checkpoints, folders as runs
from img2img.runs.checkpoints import network_tensors
from img2img.testing import write_sample_images
from img2img.training.schedules import lr_factor
from img2img_cyclegan import CycleGAN
from img2img_pix2pix import Pix2Pix


def _config(tmp_path, kind, **overrides):
    folders = write_sample_images(kind, tmp_path / "data", n=4, size=40)
    settings = dict(epochs=2, decay_epochs=2, batch_size=2, load_size=36, crop_size=32,
                    workers=0, log_every=1, sample_every=0, checkpoint_every=0, device="cpu",
                    runs_dir=tmp_path / "runs", seed=3)
    settings.update(overrides)
    return TrainConfig(**folders, **settings)


@pytest.mark.parametrize("model_cls,workers", [(Pix2Pix, 0), (CycleGAN, 1)])
def test_resume_gives_the_same_weights_as_one_run(tmp_path, model_cls, workers):
    options = model_cls.Options(**model_cls.smoke_options)
    straight = Trainer(model_cls, options, _config(tmp_path, model_cls.data, max_steps=5,
                                                   name="straight", workers=workers),
                       progress=False)
    straight.fit()

    first = Trainer(model_cls, options, _config(tmp_path, model_cls.data, max_steps=3,
                                                name="split", workers=workers), progress=False)
    run_dir = first.fit()
    weights = run_dir / "checkpoints" / "step_00000003.safetensors"
    second = Trainer(model_cls, options, _config(tmp_path, model_cls.data, max_steps=5,
                                                 workers=workers),
                     resume_from=weights, progress=False)
    assert (second.state.step, second.state.epoch, second.state.batch_in_epoch) == (3, 1, 1)
    second.fit()

    expected, got = network_tensors(straight.model), network_tensors(second.model)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.allclose(expected[key].float(), got[key].float(), atol=1e-6), key
    # The uninterrupted run and the resumed one really trained (weights moved from the start).
    fresh = Trainer(model_cls, options, _config(tmp_path, model_cls.data, name="fresh"),
                    progress=False)
    assert any(not torch.equal(v, network_tensors(fresh.model)[k]) for k, v in got.items())


def test_lr_schedule_is_constant_then_linear_to_zero():
    config = TrainConfig(epochs=3, decay_epochs=3)
    factors = [lr_factor(config, e) for e in range(6)]
    assert factors[:3] == [1.0, 1.0, 1.0]
    assert factors[3:] == pytest.approx([0.75, 0.5, 0.25])
    cosine = dataclasses.replace(config, schedule="cosine")
    assert [lr_factor(cosine, e) for e in range(3)] == [1.0, 1.0, 1.0]
    decayed = [lr_factor(cosine, e) for e in range(3, 6)]
    assert decayed == sorted(decayed, reverse=True) and 0 < decayed[-1] < 0.5


def test_optimizer_learning_rate_follows_the_schedule(tmp_path):
    trainer = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options),
                      _config(tmp_path, "paired", epochs=1, decay_epochs=1, max_steps=3),
                      progress=False)
    trainer.fit()
    assert trainer.state.epoch == 1
    assert trainer.optimizers["g"].param_groups[0]["lr"] == pytest.approx(2e-4 * 0.5)


@pytest.mark.parametrize("bad,flag", [
    (dict(load_size=32, crop_size=64), "--load-size"),
    (dict(batch_size=0), "--batch-size"),
    (dict(max_steps=0), "--max-steps"),
    (dict(workers=-1), "--workers"),
])
def test_bad_settings_name_the_flag(bad, flag):
    with pytest.raises(Img2ImgError, match=flag):
        TrainConfig(**bad)


def test_generator_groups_sum_to_the_single_backward_gradient(tmp_path):
    """CycleGAN yields its loss in groups; their summed gradient equals one backward of all."""
    torch.manual_seed(0)
    config = _config(tmp_path, "unpaired")
    options = CycleGAN.Options(**{**CycleGAN.smoke_options, "pool_size": 0})
    trainer = Trainer(CycleGAN, options, config, progress=False)
    model = trainer.model
    batch = trainer.fixed_batch
    model.discriminators.requires_grad_(False)

    def grads() -> dict[str, torch.Tensor]:
        return {k: p.grad.clone() for k, p in model.generators.named_parameters()}

    model.generators.zero_grad()
    made, groups = model.generator_step(batch)  # as the trainer runs it: each group its fake
    assert made == {}
    for group in groups:
        sum(group.values()).backward()
    grouped = grads()
    assert set(made) == {"fake_a", "fake_b"} and not any(f.requires_grad for f in made.values())

    model.generators.zero_grad()
    fakes = model.generate(batch)
    total = sum(sum(g.values()) for g in model.generator_losses(batch, fakes))
    total.backward()
    summed = grads()
    for key in summed:
        assert torch.allclose(grouped[key], summed[key], atol=1e-6, rtol=1e-4), key
    for key, fake in fakes.items():
        assert torch.allclose(made[key], fake, atol=1e-6), key


def test_training_writes_samples_metrics_and_checkpoints(tmp_path):
    config = _config(tmp_path, "paired", max_steps=4, sample_every=2, checkpoint_every=2,
                     keep_checkpoints=1, log_every=2, name="files")
    run_dir = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options), config,
                      progress=False).fit()
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "step_00000002.png", "step_00000004.png"]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["latest", "step_00000004.safetensors", "step_00000004.state.pt"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"step": 4' in lines[1]
    assert (run_dir / "config.json").exists()
    page = (run_dir / "index.html").read_text()
    assert "samples/step_00000002.png" in page and "samples/step_00000004.png" in page


def test_ctrl_c_saves_a_checkpoint_after_the_current_step_and_resumes(tmp_path):
    import os
    import signal

    class Interrupted(Trainer):
        def train_step(self, batch):
            terms = super().train_step(batch)
            if self.state.step == 1:  # counted after this returns: the interrupt lands in step 2
                os.kill(os.getpid(), signal.SIGINT)
            return terms

    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    trainer = Interrupted(Pix2Pix, options, _config(tmp_path, "paired", max_steps=6),
                          progress=False)
    run_dir = trainer.fit()
    assert trainer.state.step == 2
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest == "step_00000002"
    resumed = Trainer(Pix2Pix, options, _config(tmp_path, "paired", max_steps=6),
                      resume_from=run_dir / "checkpoints" / f"{latest}.safetensors",
                      progress=False)
    resumed.fit()
    assert resumed.state.step == 6


def test_ema_averages_generator_weights_and_is_used_for_inference(tmp_path):
    from img2img.runs.checkpoints import model_from_checkpoint

    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    trainer = Trainer(Pix2Pix, options, _config(tmp_path, "paired", ema=0.9, max_steps=1),
                      progress=False)
    start = {k: v.clone() for k, v in trainer.model.generators.state_dict().items()}
    run_dir = trainer.fit()
    now = trainer.model.generators.state_dict()
    averaged = trainer.ema.average.state_dict()
    name = next(k for k, v in start.items() if v.is_floating_point() and "weight" in k)
    assert torch.allclose(averaged[name], 0.9 * start[name] + 0.1 * now[name], atol=1e-6)

    weights = checkpoints.resolve_checkpoint(run_dir)
    tensors = checkpoints.load_weights(weights)
    assert any(k.startswith("ema.") for k in tensors)
    model = model_from_checkpoint(Pix2Pix, weights)
    assert torch.equal(model.generators.state_dict()[name], averaged[name])
    raw = model_from_checkpoint(Pix2Pix, weights, use_average=False)
    assert torch.equal(raw.generators.state_dict()[name], now[name])


def test_resume_restores_the_average_too(tmp_path):
    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    straight = Trainer(Pix2Pix, options, _config(tmp_path, "paired", ema=0.5, max_steps=3,
                                                  name="s"), progress=False)
    straight.fit()
    first = Trainer(Pix2Pix, options, _config(tmp_path, "paired", ema=0.5, max_steps=2,
                                               name="f"), progress=False)
    run_dir = first.fit()
    second = Trainer(Pix2Pix, options, _config(tmp_path, "paired", ema=0.5, max_steps=3),
                     resume_from=run_dir / "checkpoints" / "step_00000002.safetensors",
                     progress=False)
    second.fit()
    for key, value in straight.ema.average.state_dict().items():
        assert torch.allclose(value.float(), second.ema.average.state_dict()[key].float(),
                              atol=1e-6), key


def test_device_augmentation_crops_on_the_device_and_trains(tmp_path):
    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    config = _config(tmp_path, "paired", augment_on="device", load_size=40, crop_size=32,
                     max_steps=2)
    trainer = Trainer(Pix2Pix, options, config, progress=False)
    assert trainer.dataset[(0, 0)]["a"].shape[-1] == 40  # the loader only resizes
    assert trainer.fixed_batch["a"].shape[-2:] == (32, 32)
    trainer.fit()
    assert trainer.state.step == 2


def test_device_augment_shares_the_draw_within_a_pair_only():
    from img2img.data.device_augment import DeviceAugment

    torch.manual_seed(0)
    augment = DeviceAugment(load_size=24, crop_size=16, flip=True)
    x = torch.rand(8, 3, 24, 24)
    paired = augment({"a": x, "b": x.clone()}, paired=True)
    assert paired["a"].shape == (8, 3, 16, 16) and torch.allclose(paired["a"], paired["b"])
    unpaired = augment({"a": x, "b": x.clone()}, paired=False)
    assert not torch.allclose(unpaired["a"], unpaired["b"])


def test_channels_last_trains_to_the_same_weights(tmp_path):
    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    results = []
    for setting in ("off", "on"):
        trainer = Trainer(Pix2Pix, options, _config(tmp_path, "paired", channels_last=setting,
                                                    max_steps=2, name=setting), progress=False)
        trainer.fit()
        results.append(network_tensors(trainer.model))
    for key, value in results[0].items():
        assert torch.allclose(value.float(), results[1][key].float(), atol=1e-4), key


def test_eval_every_logs_metrics_and_keeps_the_best_checkpoint(tmp_path):

    held_out = write_sample_images("paired", tmp_path / "held_out", n=2, size=40, seed=9)
    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    trainer = Trainer(Pix2Pix, options, _config(tmp_path, "paired", eval_every=1, max_steps=3,
                                                eval_data=held_out["data"]), progress=False)
    run_dir = trainer.fit()
    evals = [r for r in runs.read_metrics(run_dir) if "eval/psnr" in r]
    assert [r["step"] for r in evals] == [1, 2, 3]
    best_step = max(evals, key=lambda r: r["eval/psnr"])["step"]
    best = checkpoints.resolve_checkpoint(f"{run_dir}:best")
    assert checkpoints.read_metadata(best)["step"] == best_step
    assert trainer.state.best == max(r["eval/psnr"] for r in evals)
    assert "eval/psnr" in (run_dir / "index.html").read_text()


def test_eval_every_without_eval_data_is_a_clear_error():
    with pytest.raises(Img2ImgError, match="--eval-data"):
        TrainConfig(eval_every=10)


def test_loader_workers_do_not_hang_after_opencv_started_its_threads(tmp_path):
    """A forked worker could deadlock inside OpenCV when the parent's OpenCV thread pool was
    running; the trainer's workers start from a clean process instead. Run in a subprocess so
    a regression fails on the timeout instead of hanging the suite."""
    import subprocess
    import sys
    import textwrap

    folders = write_sample_images("paired", tmp_path / "data", n=4, size=40)
    script = textwrap.dedent(f"""
        import cv2, numpy as np, torch
        from img2img import TrainConfig, Trainer
        from img2img_pix2pix import Pix2Pix
        cv2.setNumThreads(2)
        big = np.random.default_rng(0).integers(0, 255, (2000, 2000, 3), np.uint8)
        cv2.resize(big, (1000, 1000), interpolation=cv2.INTER_AREA)
        config = TrainConfig(data={str(folders['data'])!r}, load_size=32, crop_size=32,
                             batch_size=2, workers=1, max_steps=3, device="cpu",
                             runs_dir={str(tmp_path / 'runs')!r}, sample_every=0)
        Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options), config, progress=False).fit()
        print("trained")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0 and "trained" in result.stdout, result.stderr[-2000:]


def test_the_first_log_line_after_resume_averages_the_steps_actually_run(tmp_path):
    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    config = _config(tmp_path, "paired", max_steps=3, log_every=5, checkpoint_every=0,
                     name="avg")
    run_dir = Trainer(Pix2Pix, options, config, progress=False).fit()
    resumed = Trainer(Pix2Pix, options, dataclasses.replace(config, max_steps=5),
                      resume_from=checkpoints.resolve_checkpoint(run_dir), progress=False)
    seen = []
    original = resumed.train_step

    def recording(batch):
        terms = original(batch)
        seen.append(float(terms["g/l1"]))
        return terms

    resumed.train_step = recording
    resumed.fit()
    record = [r for r in runs.read_metrics(run_dir) if r["step"] == 5][0]
    assert record["g/l1"] == pytest.approx(sum(seen) / len(seen), rel=1e-4)  # 2 steps, not 5


def test_wgan_gp_with_a_batch_norm_discriminator_warns_and_spectral_norm_is_on_every_conv(
        tmp_path, caplog):
    options = Pix2Pix.Options(**Pix2Pix.smoke_options)  # batch norm, pix2pix's default
    with caplog.at_level("WARNING", logger="img2img"):
        Trainer(Pix2Pix, options, _config(tmp_path, "paired", gan_loss="wgan-gp", name="bn"),
                progress=False)
    assert "wgan-gp with batch norm in the pix2pix discriminator" in caplog.text
    caplog.clear()
    instance = dataclasses.replace(options, norm="instance", spectral_norm=True)
    with caplog.at_level("WARNING", logger="img2img"):
        trainer = Trainer(Pix2Pix, instance, _config(tmp_path, "paired", gan_loss="wgan-gp",
                                                     name="in"), progress=False)
    assert "wgan-gp" not in caplog.text
    convs = [m for m in trainer.model.discriminators.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(c, "parametrizations") for c in convs)
    trainer.config = dataclasses.replace(trainer.config, max_steps=1)
    trainer.fit()  # and it trains
