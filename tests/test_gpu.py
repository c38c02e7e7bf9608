"""GPU checks, skipped without CUDA: every model trains in fp32, bf16 and fp16; each speed and
precision switch is checked to have taken effect (autocast's dtype at a convolution, the
weights' memory format, compiled networks, the gradient scaler's state, the device
augmentation); compile and fp16 with each gradient penalty; seeds reach the GPU's generator and
a resumed run equals an uninterrupted one; ONNX Runtime runs on the GPU it was given."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from img2img import TrainConfig, Trainer
from img2img.registry.catalog import TRAIN_FIELDS, build_catalog
from img2img.registry.loading import load_plugins
from img2img.runs import folders as runs
from img2img.runs.checkpoints import network_tensors
from img2img.testing import check_model, write_sample_images
from img2img.training import rng

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MODELS = sorted(build_catalog(load_plugins(strict=True), TRAIN_FIELDS).models.items())
IDS = [n for n, _ in MODELS]
BY_NAME = dict(MODELS)
# fp16's gradient scaler starts at 65536 and skips each step whose gradients overflow, halving
# its scale. CUT's generator on the CPU (fp16 instance-norm backward) needed 256: 8 skipped
# steps. 20 steps leave room for that many and more before the weights must have moved.
STEPS = {"fp32": 3, "bf16": 3, "fp16": 20}


def _trainer(tmp_path, model, steps=3, options=None, **training):
    """A trainer as `check_model` builds one, with loads larger than crops (so a device crop
    shows) and the `training` overrides."""
    cls = BY_NAME[model]
    folders = write_sample_images(cls.data, tmp_path / "data", n=4, size=40)
    settings = dict(epochs=100, decay_epochs=0, max_steps=steps, batch_size=2, load_size=36,
                    crop_size=32, workers=0, log_every=1, sample_every=0, checkpoint_every=0,
                    runs_dir=tmp_path / "runs", device="cuda", seed=3)
    config = TrainConfig(**folders, **{**settings, **training})
    return Trainer(cls, options or cls.Options(**cls.smoke_options), config, progress=False)


def _applied_steps(trainer, name):
    """Optimiser steps Adam took (the scaler's skipped steps are not counted)."""
    return int(next(iter(trainer.optimizers[name].state.values()))["step"])


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("name,model_cls", MODELS, ids=IDS)
def test_model_trains_on_cuda(name, model_cls, precision, tmp_path):
    check_model(model_cls, workdir=tmp_path, device="cuda", precision=precision,
                steps=STEPS[precision])


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                             ("fp16", torch.float16)])
def test_precision_takes_effect(precision, dtype, tmp_path):
    trainer = _trainer(tmp_path, "pix2pix", steps=STEPS[precision], precision=precision)
    conv = next(m for m in trainer.model.generators.modules() if isinstance(m, torch.nn.Conv2d))
    seen = []
    handle = conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    trainer.fit()
    handle.remove()
    assert seen and set(seen) == {dtype}
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    if precision == "fp16":
        applied = [_applied_steps(trainer, "g"), _applied_steps(trainer, "d")]
        assert min(applied) >= 1  # the scaler let steps through
        # Each step with an overflow in either update halved the scale (it grows back only
        # after 2000 clean steps): so by at least as many halvings as either skipped.
        skipped = STEPS["fp16"] - min(applied)
        assert 65536.0 / 2 ** STEPS["fp16"] <= trainer.scaler.get_scale() <= 65536.0 / 2 ** skipped


@pytest.mark.parametrize("name", IDS)
def test_speed_switches_take_effect(name, tmp_path):
    torch._dynamo.reset()
    trainer = _trainer(tmp_path, name, compile=True, channels_last="on", augment_on="device")
    networks = [*trainer.model.generators.values(), *trainer.model.discriminators.values()]
    for net in networks:
        assert net._compiled_call_impl is not None
        assert all(p.is_contiguous(memory_format=torch.channels_last)
                   for p in net.parameters() if p.dim() == 4)
    batch = trainer._to_device(next(iter(trainer._loader())))
    images = [v for v in batch.values() if v.dim() == 4]
    assert trainer.device_augment is not None
    assert all(v.is_cuda and v.shape[-2:] == (32, 32) for v in images)  # cropped from 36
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in images)
    trainer.fit()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    check_model(BY_NAME[name], workdir=tmp_path / "check", device="cuda", steps=3, compile=True,
                channels_last="on", augment_on="device")


def test_channels_last_auto_skips_instance_norm_networks(tmp_path):
    for name, converted in (("cyclegan", False), ("pix2pix", True)):
        trainer = _trainer(tmp_path / name, name)
        for net in [*trainer.model.generators.values(), *trainer.model.discriminators.values()]:
            weight = next(p for p in net.parameters() if p.dim() == 4)
            assert weight.is_contiguous(memory_format=torch.channels_last) == converted, name


@pytest.mark.parametrize("penalty", [dict(gan_loss="wgan-gp"), dict(r1_weight=1.0)],
                         ids=["wgan-gp", "r1"])
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_compile_and_fp16_train_with_each_penalty(penalty, norm, tmp_path):
    torch._dynamo.reset()
    options = BY_NAME["pix2pix"].Options(**{**BY_NAME["pix2pix"].smoke_options, "norm": norm})
    trainer = _trainer(tmp_path, "pix2pix", steps=STEPS["fp16"], options=options, compile=True,
                       precision="fp16", **penalty)
    assert trainer.model.adversary.penalty_in_float32 == (norm != "none")
    trainer.fit()
    assert _applied_steps(trainer, "d") >= 1 and _applied_steps(trainer, "g") >= 1
    key = "d/gp" if "gan_loss" in penalty else "d/r1"
    assert torch.isfinite(torch.tensor(runs.read_metrics(trainer.run_dir)[-1][key]))


def test_the_seed_reaches_this_gpu_generator(tmp_path):
    """Each step seeds the GPU's generator from (seed, rank, step); the fixed batch, drawn
    after a resume, used to leave it at seed 0."""
    trainer = _trainer(tmp_path, "pix2pix", steps=2, seed=11, augment_on="device")
    trainer.fit()
    assert rng.cuda_generator(trainer.device).initial_seed() == rng.step_seed(11, 0, 1)


def test_resume_on_cuda_equals_one_run(tmp_path, monkeypatch):
    """pix2pix with dropout and device augmentation, which draw on the GPU. With deterministic
    cuDNN kernels the two runs compute the same sums in the same order, so they should be equal
    (on the CPU they are); 1e-6 leaves room for a reduction outside cuDNN that is not, and is
    far below the ~2e-4 one Adam step moves a weight, which a different dropout mask shows."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    common = dict(precision="fp32", augment_on="device")
    straight = _trainer(tmp_path, "pix2pix", steps=4, name="straight", **common)
    straight.fit()
    first = _trainer(tmp_path, "pix2pix", steps=2, name="split", **common)
    weights = first.fit() / "checkpoints" / "step_00000002.safetensors"
    cls = BY_NAME["pix2pix"]
    second = Trainer(cls, cls.Options(**cls.smoke_options),
                     dataclasses.replace(first.config, max_steps=4), resume_from=weights,
                     progress=False)
    second.fit()
    want, got = network_tensors(straight.model), network_tensors(second.model)
    worst = max(float((want[k].float() - got[k].float()).abs().max()) for k in want)
    assert worst < 1e-6, worst


def test_onnxruntime_runs_on_the_gpu_it_was_given():
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider")
    from img2img.interop.onnx_runtime import OnnxGraph
    from img2img.interop.export import onnx_model

    cls = BY_NAME["pix2pix"]
    model = cls(cls.Options(**cls.smoke_options)).eval()
    graph = OnnxGraph(onnx_model(model, "a_to_b", None)[0], torch.device("cuda", 0))
    assert graph.session.get_providers()[0] == "CUDAExecutionProvider"
    options = graph.session.get_provider_options()["CUDAExecutionProvider"]
    assert options["device_id"] == "0" and options["cudnn_conv_algo_search"] == "HEURISTIC"
