"""The trainer's speed switches on a CPU (img2img.training.speed): --compile with each gradient penalty
(the aot_eager backend takes the same AOTAutograd path as a GPU's inductor), which networks
--channels-last auto converts, inputs laid out after the device augmentation, and optimiser
state that follows its parameters' layout across a resume."""
from __future__ import annotations

import math

import pytest
import torch

from img2img import Img2ImgError, Trainer
from img2img.runs import folders as runs
from img2img.training import speed
from img2img.registry.catalog import TRAIN_FIELDS, build_catalog
from img2img.runs.checkpoints import network_tensors
from img2img.registry.loading import load_plugins
from img2img.testing import check_model, write_sample_images
from img2img.training.trainer import TrainConfig
from img2img_cyclegan import CycleGAN
from img2img_pix2pix import Pix2Pix

MODELS = sorted(build_catalog(load_plugins(strict=True), TRAIN_FIELDS).models.items())
# Instance norm: wgan-gp warns about batch norm in the critic (a per-sample penalty).
PIX2PIX = Pix2Pix.Options(**{**Pix2Pix.smoke_options, "norm": "instance"})


def _config(tmp_path, name, **overrides):
    folders = write_sample_images("paired", tmp_path / "data", n=4, size=40)
    settings = dict(epochs=2, decay_epochs=0, batch_size=2, load_size=36, crop_size=32,
                    workers=0, log_every=1, sample_every=0, checkpoint_every=0, device="cpu",
                    runs_dir=tmp_path / "runs", seed=3, max_steps=2, name=name)
    return TrainConfig(**folders, **{**settings, **overrides})


def _assert_same_outputs(one, other, atol):
    """Every network of two runs gives the same output on one probe. Outputs, not weights: a
    conv bias just before instance norm gets a gradient that is rounding noise, which Adam
    turns into full learning-rate steps of either sign; it changes no output."""
    probe = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        for nets in ("generators", "discriminators"):
            for key, net in getattr(one.model, nets).items():
                first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
                seen = probe.repeat(1, first.in_channels // 3, 1, 1)
                was = (net.training, getattr(other.model, nets)[key].training)
                want, got = net.eval()(seen), getattr(other.model, nets)[key].eval()(seen)
                net.train(was[0]), getattr(other.model, nets)[key].train(was[1])
                assert torch.allclose(want.float(), got.float(), atol=atol), (nets, key)


def _assert_same_weights(one, other, atol):
    expected, got = network_tensors(one.model), network_tensors(other.model)
    for key in expected:
        assert torch.allclose(expected[key].float(), got[key].float(), atol=atol), key


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("penalty", [dict(gan_loss="wgan-gp"), dict(r1_weight=1.0)],
                         ids=["wgan-gp", "r1"])
def test_compile_trains_with_each_gradient_penalty(tmp_path, monkeypatch, penalty, norm):
    """AOTAutograd refuses double backward: the penalty's critic forward runs uncompiled,
    everything else compiled, and the run equals an uncompiled one. With batch norm, a
    compiled pass between R1's eager pass and its gradient broke the latter."""
    monkeypatch.setattr(speed, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    options = Pix2Pix.Options(**{**Pix2Pix.smoke_options, "norm": norm})
    trained = {}
    for compiled in (False, True):
        trainer = Trainer(Pix2Pix, options, _config(tmp_path, f"c{compiled}", compile=compiled,
                                                    **penalty), progress=False)
        trainer.fit()
        trained[compiled] = trainer
    critic = trained[True].model.discriminators["b"]
    assert critic._compiled_call_impl is not None  # the switch took effect
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    # aot_eager runs the same aten kernels as eager; only fused-op ordering can round apart.
    _assert_same_outputs(trained[False], trained[True], atol=1e-4)


@pytest.mark.parametrize("name,model_cls", MODELS, ids=[n for n, _ in MODELS])
def test_every_model_trains_compiled_and_channels_last(name, model_cls, tmp_path, monkeypatch):
    """What tests/test_gpu.py runs with inductor, here with aot_eager, which shares its graph
    capture and its shape model: CUT's anti-aliased upsampling failed there (torch's shape of
    the replicate padding's backward assumed NCHW)."""
    monkeypatch.setattr(speed, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    check_model(model_cls, workdir=tmp_path, steps=2, compile=True, channels_last="on",
                augment_on="device")


def test_a_penalty_through_a_compiled_network_is_a_clear_error(tmp_path, monkeypatch):
    """A plugin that takes an input gradient through a compiled network itself, outside
    `losses.eager()`, gets a message naming --compile, not AOTAutograd's."""
    monkeypatch.setattr(speed, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    trainer = Trainer(Pix2Pix, PIX2PIX, _config(tmp_path, "bad", compile=True), progress=False)

    def losses(batch, fakes):
        critic = trainer.model.discriminators["b"]
        x = torch.cat([batch["a"], batch["b"]], 1).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return {"penalty": grad.pow(2).mean()}

    monkeypatch.setattr(trainer.model, "discriminator_losses", losses)
    batch = trainer._to_device(next(iter(trainer._loader())))
    with pytest.raises(Img2ImgError, match="--compile: a gradient penalty ran through"):
        trainer.train_step(batch)


def test_channels_last_auto_converts_only_networks_that_keep_the_format():
    """Instance norm returns NCHW, so under auto on CUDA only batch-norm networks convert."""
    cuda = torch.device("cuda")
    cyclegan = CycleGAN(CycleGAN.Options(**CycleGAN.smoke_options))
    pix2pix = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options))
    for model, expected in ((cyclegan, []), (pix2pix, ["a_to_b", "b"])):
        networks = {**model.generators, **model.discriminators}
        assert speed.channels_last_networks("auto", cuda, networks) == expected
        assert speed.channels_last_networks("auto", torch.device("cpu"), networks) == []
        assert speed.channels_last_networks("on", torch.device("cpu"), networks) == \
            list(networks)
        assert speed.channels_last_networks("off", cuda, networks) == []


@pytest.mark.parametrize("model_cls", [CycleGAN, Pix2Pix])
def test_the_rule_matches_what_the_layers_do(model_cls):
    """The arithmetic behind auto, checked on the CPU: a channels-last network given a
    channels-last input keeps it through every layer, or has a layer `speed` knows returns
    NCHW (the ones it does not know would make auto convert a network that gains nothing)."""
    model = model_cls(model_cls.Options(**model_cls.smoke_options))
    for net in [*model.generators.values(), *model.discriminators.values()]:
        net.to(memory_format=torch.channels_last)
        dropped = []

        def hook(module, inputs, output):
            given = inputs[0].is_contiguous(memory_format=torch.channels_last)
            if given and output.dim() == 4 and not output.is_contiguous(
                    memory_format=torch.channels_last):
                dropped.append(module)

        leaves = [m for m in net.modules() if not list(m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        conv = next(m for m in leaves if isinstance(m, torch.nn.Conv2d))
        x = torch.rand(2, conv.in_channels, 32, 32).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            net(x)
        for handle in handles:
            handle.remove()
        assert all(isinstance(m, speed.NCHW_LAYERS) for m in dropped), dropped
        assert speed.keeps_channels_last(net) == (not dropped)


def test_inputs_are_channels_last_after_the_device_augmentation(tmp_path):
    trainer = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options),
                      _config(tmp_path, "cl", channels_last="on", augment_on="device"),
                      progress=False)
    batch = trainer._to_device(next(iter(trainer._loader())))
    assert batch["a"].shape[-1] == 32  # cropped on the device from load size 36
    assert all(batch[k].is_contiguous(memory_format=torch.channels_last) for k in "ab")
    weight = next(p for p in trainer.model.generators["a_to_b"].parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("before,after", [("on", "off"), ("off", "on")])
def test_resume_across_channels_last_settings_equals_one_run(tmp_path, before, after):
    """Adam's moments come back laid out like the weights: with the saved layout CPU fused Adam
    applied wrong updates (about 1e-3 after one step)."""
    straight = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options),
                       _config(tmp_path, "straight", max_steps=4, channels_last=after),
                       progress=False)
    straight.fit()
    first = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options),
                    _config(tmp_path, "split", max_steps=2, channels_last=before),
                    progress=False)
    weights = first.fit() / "checkpoints" / "step_00000002.safetensors"
    second = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options),
                     _config(tmp_path, "split", max_steps=4, channels_last=after),
                     resume_from=weights, progress=False)
    for optimizer in second.optimizers.values():
        for param, state in optimizer.state.items():
            assert state["exp_avg"].stride() == param.stride()
    second.fit()
    # The two layouts' convolutions sum in another order: 5e-7 apart here, against 7.7e-4 with
    # the moments in the saved layout.
    _assert_same_weights(straight, second, atol=1e-5)


@pytest.mark.parametrize("norm", ["instance", "none"])
@pytest.mark.parametrize("penalty", [dict(gan_loss="wgan-gp"), dict(r1_weight=1.0)],
                         ids=["wgan-gp", "r1"])
def test_compile_and_fp16_train_with_each_gradient_penalty(tmp_path, monkeypatch, penalty, norm):
    """fp16 on the CPU takes the GPU's path: a gradient scaler, which the penalty uses too, and
    a penalty in float32 for a critic with instance norm, whose double backward overflows fp16
    (without it every discriminator step was skipped, as NaN)."""
    monkeypatch.setattr(speed, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    options = Pix2Pix.Options(**{**Pix2Pix.smoke_options, "norm": norm})
    trainer = Trainer(Pix2Pix, options, _config(tmp_path, "fp16", compile=True, precision="fp16",
                                                max_steps=4, **penalty), progress=False)
    adversary = trainer.model.adversary
    assert adversary.scaler is trainer.scaler and trainer.scaler.is_enabled()
    assert adversary.penalty_in_float32 == (norm == "instance")
    before = {k: v.clone() for k, v in network_tensors(trainer.model).items()}
    trainer.fit()
    key = "d/gp" if "gan_loss" in penalty else "d/r1"
    assert math.isfinite(runs.read_metrics(trainer.run_dir)[-1][key])
    for name, optimizer in trainer.optimizers.items():  # some steps were applied, not skipped
        assert next(iter(optimizer.state.values()))["step"] >= 2, name
    after = network_tensors(trainer.model)
    unchanged = [k for k, v in before.items() if k.startswith("discriminators.")
                 and k.endswith("weight") and torch.equal(v, after[k])]
    assert not unchanged, unchanged
