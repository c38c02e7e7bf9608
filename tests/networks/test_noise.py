"""The noise input and its diversity losses (img2img.networks.noise): values on hand-made
tensors, the noise reaching the output, seeds, the declared injection, `--noise-dim 0` leaving
every network as it was, and training with noise through the real trainer for each built-in
translating model."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

from img2img import ImageSpec
from img2img.errors import Img2ImgError
from img2img.networks import build_generator
from img2img.networks.noise import (
    DIVERSITY_EVERY, ZERO_NOISE_RATE, LatentEncoder, NoisyGenerator, add_noise_input,
    begin_noise_step, install_noise, latent_regression_loss, mode_seeking_loss, noise_dim_of,
    noise_for_seed, noise_terms, pinned_noise, slerp, with_noise_terms,
)
from img2img.runs.folders import read_metrics
from img2img.runs.checkpoints import model_from_checkpoint, read_metadata, resolve_checkpoint
from img2img.testing import check_model
from img2img_cut import CUT
from img2img_cyclegan import CycleGAN
from img2img_pix2pix import Pix2Pix


def test_mode_seeking_loss_is_one_over_the_ratio_plus_eps():
    out1, out2 = torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])
    z1, z2 = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    # mean|out1 - out2| = 2.0 / 4 = 0.5; mean|z1 - z2| = 1 / 2 = 0.5; ratio 1.
    assert float(mode_seeking_loss(out1, out2, z1, z2)) == pytest.approx(1 / (1 + 1e-5))
    # Outputs twice as far apart for the same noise distance: the loss halves.
    assert float(mode_seeking_loss(out1, 2 * out2, z1, z2)) == pytest.approx(1 / (2 + 1e-5))
    # Identical outputs: 1 / eps, large but finite.
    assert float(mode_seeking_loss(out1, out1, z1, z2)) == pytest.approx(1e5)


def test_latent_regression_loss_is_the_mean_absolute_error():
    recovered = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    noise = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert float(latent_regression_loss(recovered, noise)) == pytest.approx((1 + 1 + 0.5 + 2) / 4)


def test_seeded_noise_is_the_same_everywhere_and_slerp_keeps_the_ends():
    assert torch.equal(noise_for_seed(3, 8), noise_for_seed(3, 8))
    assert not torch.equal(noise_for_seed(3, 8), noise_for_seed(4, 8))
    z0, z1 = noise_for_seed(0, 8), noise_for_seed(1, 8)
    assert torch.allclose(slerp(z0, z1, 0.0), z0, atol=1e-6)
    assert torch.allclose(slerp(z0, z1, 1.0), z1, atol=1e-6)
    middle = slerp(z0, z1, 0.5)  # between the two norms, not shrunk towards the origin
    assert float(middle.norm()) > 0.9 * min(float(z0.norm()), float(z1.norm()))


def _resnet(channels=3):
    torch.manual_seed(0)
    return build_generator("resnet-6", channels, channels, ngf=4, norm="instance", dropout=False)


@pytest.mark.parametrize("kind", ["resnet-6", "unet-32"])
def test_the_noise_reaches_the_output(kind):
    torch.manual_seed(0)
    net = add_noise_input(build_generator(kind, 3, 3, ngf=4, norm="instance", dropout=False),
                          3, noise_dim=4, size=32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = torch.randn(2, 4, requires_grad=True)
    net(x, noise=z).square().sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    # And it changes the output by more than rounding: an erased noise (tiled channels under an
    # instance norm) differs by about 1e-7, a used one by a fair share of the image's effect.
    with torch.no_grad():
        by_noise = net(x[:1].expand(2, -1, -1, -1), noise=z.detach())
        by_image = net(x, noise=z.detach()[:1].expand(2, -1))
    noise_change = float((by_noise[0] - by_noise[1]).abs().mean())
    assert noise_change > 0.01 * float((by_image[0] - by_image[1]).abs().mean())


def test_the_resnet_takes_its_noise_in_a_branch_beside_its_last_layer():
    """Tiled channels would be erased by the ResNet stem's instance norm, so it declares its
    own injection: the stem keeps 3 input channels; the noise changes the output; zero noise
    gives exactly the network without the branch; the difference between two noises' outputs
    (what the mode-seeking term widens) trains the branch; and the encoder features that CUT
    reads are the same for every noise."""
    torch.manual_seed(0)
    net = add_noise_input(_resnet(), 3, noise_dim=4, size=32)
    assert net.declared and net.model[1].in_channels == 3
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z0, z1 = noise_for_seed(0, 4), noise_for_seed(1, 4)
    out0, out1 = net(x, noise=z0), net(x, noise=z1)
    difference = (out0 - out1).abs().mean()
    assert float(difference.detach()) > 1e-3
    difference.backward()
    assert all(p.grad is not None and p.grad.any() for p in net.net.noise_branch.parameters()
               if p.dim() > 1)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x, noise=torch.zeros(4)), net.net.model(x))
        layers = ["down1", "block1"]
        first = net.encoder_features(x, layers, noise=z0)
        second = net.encoder_features(x, layers, noise=z1)
        out, captured = net.forward_with_features(x, layers)  # eval: zero noise
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert torch.equal(out, net.net.model(x))
    assert all(torch.allclose(a, b) for a, b in zip(captured, first))


def test_a_generator_whose_norm_erases_tiled_noise_is_refused():
    """A third-party generator like the ResNet but declaring nothing: instance norm right after
    its first convolution would silently erase the noise; it is refused, naming the fix."""
    class Stem(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 8, 3),
                                      nn.InstanceNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 3, 3, padding=1), nn.Tanh())

        def forward(self, x):
            return self.body(x)

    with pytest.raises(Img2ImgError, match="Stem ignores the noise.*instance norm.*"
                                           "add_noise_input"):
        add_noise_input(Stem(), 3, noise_dim=4)


def test_same_seed_same_output_and_eval_mode_uses_zero_noise():
    net = add_noise_input(_resnet(), 3, noise_dim=4, size=32).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        first = net(x, noise=noise_for_seed(3, 4))
        again = net(x, noise=noise_for_seed(3, 4))
        other = net(x, noise=noise_for_seed(4, 4))
        default = net(x)
        zero = net(x, noise=torch.zeros(4))
        seed0 = net(x, noise=noise_for_seed(0, 4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(default, zero)
    assert not torch.equal(default, seed0)


def test_training_draws_zero_noise_for_about_half_the_images():
    """Outside a trainer step (no `begin_noise_step`), each training image's noise is zero
    with probability ZERO_NOISE_RATE; the rest is standard normal."""
    net = add_noise_input(_resnet(), 3, noise_dim=4, size=32).train()
    torch.manual_seed(0)
    z = net.noise(torch.zeros(4000, 3, 1, 1))
    zero = (z == 0).all(dim=1)
    # 4000 Bernoulli(0.5) draws: the share's standard deviation is 0.008, so +-0.04 is 5 sd.
    assert abs(float(zero.float().mean()) - ZERO_NOISE_RATE) < 0.04
    drawn = z[~zero]
    assert (drawn != 0).all()
    assert abs(float(drawn.std()) - 1) < 0.05 and abs(float(drawn.mean())) < 0.05


def test_a_training_step_gives_every_image_zero_noise_or_every_image_drawn_noise():
    """`begin_noise_step`: a ZERO_NOISE_RATE share of the steps give every image (and every
    generator) zero noise; the other steps draw noise for every image. A model without noise
    draws nothing from torch's generator (so its runs stay as they were)."""
    model = CycleGAN(CycleGAN.Options(**CycleGAN.smoke_options), spec=ImageSpec(3, 32))
    install_noise(model, 4)
    model.train()
    x = torch.zeros(6, 3, 1, 1)
    torch.manual_seed(0)
    noisy_steps = 0
    for _ in range(400):
        noisy = begin_noise_step(model)
        noisy_steps += noisy
        for net in model.generators.values():
            z = net.noise(x)
            assert bool((z != 0).all()) if noisy else bool((z == 0).all())
    # 400 Bernoulli(0.5) steps: the share's sd is 0.025, so +-0.1 is 4 sd.
    assert abs(noisy_steps / 400 - (1 - ZERO_NOISE_RATE)) < 0.1
    plain = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options), spec=ImageSpec(3, 32))
    state = torch.get_rng_state()
    assert begin_noise_step(plain) is False
    assert torch.equal(torch.get_rng_state(), state)


def test_steps_with_drawn_noise_leave_out_the_models_target_terms():
    """With a diversity term and drawn noise, the terms a model lists in `target_terms`
    (pix2pix: l1, fm) are left out, a group left empty is skipped; on a zero-noise step every
    term stays, and so does every term of a model with noise alone."""
    assert set(Pix2Pix.target_terms) == {"l1", "fm"}
    assert set(CycleGAN.target_terms) == {"idt_a", "idt_b"}
    one, two = torch.tensor(1.0), torch.tensor(2.0)
    groups = [{"gan": one, "l1": two}, {"fm": one}, {"other": two}]
    diverse = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options), spec=ImageSpec(3, 32))
    install_noise(diverse, 4, mode_seeking=1.0)
    assert list(with_noise_terms(diverse, iter(groups), step=1, noisy=True)) == [
        {"gan": one}, {"other": two}]
    assert list(with_noise_terms(diverse, iter(groups), step=1, noisy=False)) == groups
    alone = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options), spec=ImageSpec(3, 32))
    install_noise(alone, 4)
    assert list(with_noise_terms(alone, iter(groups), step=1, noisy=True)) == groups


def test_a_cycle_reconstruction_gets_zero_noise_and_is_not_recorded(monkeypatch):
    """On a step with drawn noise, CycleGAN's passes over real images draw noise, while its
    reconstructions (a generator given the other's output) get zero noise: their cycle loss
    asks for the one input they came from, which would teach the generator to ignore its noise.
    The diversity terms are recorded from the passes over real images only."""
    model = CycleGAN(CycleGAN.Options(**CycleGAN.smoke_options), spec=ImageSpec(3, 32))
    install_noise(model, 4, mode_seeking=1.0)
    model.train()
    batch = {"a": torch.rand(2, 3, 32, 32) * 2 - 1, "b": torch.rand(2, 3, 32, 32) * 2 - 1}
    calls = []
    noise = NoisyGenerator.noise

    def spy(self, x, given=None):
        z = noise(self, x, given)
        calls.append((x.detach().clone(), z))
        return z
    monkeypatch.setattr(NoisyGenerator, "noise", spy)
    torch.manual_seed(0)
    while not begin_noise_step(model):
        pass
    _, groups = model.generator_step(batch)
    for group in groups:
        sum(group.values()).backward()

    def is_real(x):
        return torch.equal(x, batch["a"]) or torch.equal(x, batch["b"])
    real = [z for x, z in calls if is_real(x)]
    back = [z for x, z in calls if not is_real(x)]
    assert len(back) == 2 and all(bool((z == 0).all()) for z in back)  # rec_a, rec_b
    assert len(real) >= 2 and all(bool((z != 0).all()) for z in real)
    assert torch.equal(model.generators["a_to_b"].recorded[0], batch["a"])
    assert torch.equal(model.generators["b_to_a"].recorded[0], batch["b"])
    # A view of an output counts as the output; the next step starts afresh.
    net = model.generators["a_to_b"]
    assert net.reads_back(net.step_outputs[0][:1]) and not net.reads_back(batch["a"])
    begin_noise_step(model)
    assert net.step_outputs == []


def test_noisy_pix2pix_training_fits_l1_on_the_zero_noise_steps_only(tmp_path, monkeypatch):
    """Through the real trainer with mode seeking: L1 is logged on the zero-noise steps and on
    no other, and both kinds of step occur (the per-step seeds make this run the same every
    time)."""
    import img2img.training.trainer as trainer_module

    seen = []
    original = trainer_module.begin_noise_step

    def spy(model):
        seen.append(original(model))
        return seen[-1]
    monkeypatch.setattr(trainer_module, "begin_noise_step", spy)
    run = check_model(Pix2Pix, workdir=tmp_path, steps=8, noise_dim=3, mode_seeking=1.0)
    records = read_metrics(run)
    assert len(records) == len(seen) == 8 and True in seen and False in seen
    for noisy, record in zip(seen, records):
        assert "g/gan" in record and ("g/l1" in record) is (not noisy)


def test_widening_keeps_the_image_weights_and_adds_noise_channels():
    torch.manual_seed(0)
    plain = build_generator("unet-32", 3, 3, ngf=4, norm="batch", dropout=False)
    first = next(m for m in plain.modules() if isinstance(m, nn.Conv2d))
    stem = first.weight.detach().clone()
    net = add_noise_input(plain, 3, noise_dim=5, size=32)
    assert first.in_channels == 8 and not net.declared
    assert torch.equal(first.weight[:, :3], stem)
    assert net.required_multiple == plain.required_multiple  # attributes reach the wrapped net
    assert net.feature_layers["input"] == 3  # the image, as CUT's heads were sized


def test_a_generator_may_declare_its_own_injection():
    class Declared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.noise_dim = 0

        def add_noise_input(self, noise_dim):
            self.noise_dim = noise_dim
            self.project = nn.Linear(noise_dim, 3)

        def forward(self, x, noise):
            return self.conv(x) + self.project(noise)[:, :, None, None]

    net = add_noise_input(Declared(), 3, noise_dim=2)
    assert net.declared and net.net.noise_dim == 2
    x = torch.zeros(2, 3, 8, 8)
    assert not torch.equal(net(x, noise=torch.zeros(2)), net(x, noise=torch.ones(2)))


def test_a_generator_that_cannot_take_noise_is_refused_with_the_guide():
    class Dense(nn.Module):
        def forward(self, x):
            return x * 2

    with pytest.raises(Img2ImgError, match="add_noise_input.*Noise input"):
        add_noise_input(Dense(), 3, noise_dim=2)


def test_noise_dim_zero_changes_no_network():
    spec = ImageSpec(3, 32)
    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    torch.manual_seed(0)
    plain = Pix2Pix(options, spec=spec)
    torch.manual_seed(0)
    model = Pix2Pix(options, spec=spec)
    install_noise(model, 0)
    assert noise_dim_of(model) == 0
    mine, theirs = model.state_dict(), plain.state_dict()
    assert list(mine) == list(theirs)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())
    with pytest.raises(Img2ImgError, match="--noise-dim"):
        install_noise(model, 0, mode_seeking=1.0)


def test_noise_terms_come_from_one_more_pass_and_train_the_encoder():
    model = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options), spec=ImageSpec(3, 32))
    install_noise(model, 4, mode_seeking=2.0, latent_regression=0.5)
    assert isinstance(model.generators["a_to_b"], NoisyGenerator)
    assert isinstance(model.auxiliary["latent_a_to_b"], LatentEncoder)
    model.train()
    batch = {"a": torch.rand(2, 3, 32, 32) * 2 - 1, "b": torch.rand(2, 3, 32, 32) * 2 - 1}
    model.generate(batch)
    terms = noise_terms(model)
    assert set(terms) == {"mode_seeking", "latent_regression"}
    assert float(terms["mode_seeking"].detach()) > 0
    sum(terms.values()).backward()
    encoder = model.auxiliary["latent_a_to_b"]
    assert all(p.grad is not None for p in encoder.parameters())
    assert noise_terms(model) == {}  # consumed: the next step records afresh


def test_the_noise_terms_run_on_every_fourth_step_at_four_times_their_weight(monkeypatch):
    """Lazy regularisation: no extra pass on steps 1-3 (and their records are cleared), the
    full terms times DIVERSITY_EVERY on steps 0 and 4: mode seeking there is exactly
    4 * 2.0 * mode_seeking_loss of the two outputs, recomputed from the pass itself."""
    assert DIVERSITY_EVERY == 4
    model = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options), spec=ImageSpec(3, 32))
    install_noise(model, 4, mode_seeking=2.0)
    net = model.generators["a_to_b"]
    model.train()
    batch = {"a": torch.rand(2, 3, 32, 32) * 2 - 1, "b": torch.rand(2, 3, 32, 32) * 2 - 1}
    passes = []
    forward = NoisyGenerator.forward

    def counted(self, x, *args, noise=None, **kwargs):
        y = forward(self, x, *args, noise=noise, **kwargs)
        passes.append((noise, y.detach()))
        return y
    monkeypatch.setattr(NoisyGenerator, "forward", counted)
    for step in range(6):
        model.generate(batch)
        recorded = net.recorded
        passes.clear()
        terms = noise_terms(model, step)
        assert net.recorded is None
        if step % 4:
            assert terms == {} and passes == []
            continue
        (z2, y2), = passes
        x, _, z1, y1 = recorded
        expected = 4 * 2.0 * mode_seeking_loss(y1, y2, z1, z2)
        assert float(terms["mode_seeking"].detach()) == pytest.approx(float(expected), rel=1e-6)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_without_noise_writes_the_checkpoint_it_wrote_before(tmp_path, monkeypatch):
    """The trainer's two noise calls switched off (the code before the noise input) and left on
    with --noise-dim 0 write byte-identical weights files and config.json."""
    import img2img.training.trainer as trainer

    workdir = tmp_path / "work"  # the same paths for both: the record holds them
    run = check_model(Pix2Pix, workdir=workdir)
    plain = {name: _sha(run / name) for name in ("config.json", "checkpoints/step_00000002.safetensors")}
    assert "noise_dim" not in read_metadata(resolve_checkpoint(run))["training"]
    workdir.rename(tmp_path / "first")
    monkeypatch.setattr(trainer, "install_noise", lambda *args: None)
    monkeypatch.setattr(trainer, "begin_noise_step", lambda model: False)
    monkeypatch.setattr(trainer, "with_noise_terms", lambda model, groups, *rest: groups)
    run = check_model(Pix2Pix, workdir=workdir)
    assert {name: _sha(run / name) for name in plain} == plain


@pytest.mark.parametrize("cls", [Pix2Pix, CycleGAN, CUT])
def test_every_translating_model_trains_with_noise_and_mode_seeking(cls, tmp_path):
    run = check_model(cls, workdir=tmp_path, noise_dim=3, mode_seeking=1.0, latent_regression=1.0)
    weights = resolve_checkpoint(run)
    assert read_metadata(weights)["training"]["noise_dim"] == 3
    restored = model_from_checkpoint(cls, weights)
    assert noise_dim_of(restored) == 3
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        with pinned_noise(restored, noise_for_seed(1, 3)):
            one = restored.translate(x)
        with pinned_noise(restored, noise_for_seed(2, 3)):
            two = restored.translate(x)
    # More than rounding: noise a norm erases (CycleGAN's and CUT's ResNet stems once did)
    # changes the output by about 1e-7.
    assert float((one - two).abs().mean()) > 1e-3
    logged = {k for r in read_metrics(run) for k in r}
    assert {"g/mode_seeking", "g/latent_regression"} <= logged
