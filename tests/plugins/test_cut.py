"""CUT and FastCUT: the published network sizes, PatchNCE on hand-made features, anti-aliased
sampling, named encoder features, the loss groups and weights, the projection head as an
auxiliary network (trained, checkpointed, resumed, never exported), and learning an unpaired
mapping through the real trainer with a ResNet and with a U-Net."""
from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import img2img
from img2img import ImageSpec, TrainConfig, Trainer
from img2img.networks import ResnetBlock, ResnetGenerator, UnetGenerator
from img2img.networks.antialias import BlurPool2d, BlurUpsample2d, antialias_resnet
from img2img.networks.features import encoder_features, resolve_layers
from img2img.runs import checkpoints, folders as runs
from img2img_cut import CUT, FastCUT, ProjectionHead, patch_nce_loss

from test_cyclegan import BRIGHT, DARK, n_params, textures, to_model


def smoke(cls=CUT, **changes):
    return cls(cls.Options(**{**cls.smoke_options, **changes}), spec=ImageSpec(3, 32))


def write_domains(root, n: int, seed: int) -> None:
    """Unpaired dark (a) and bright (b) smooth colour fields, drawn independently."""
    rng = np.random.default_rng(seed)
    for domain, value_range in (("a", DARK), ("b", BRIGHT)):
        (root / domain).mkdir()
        for i, image in enumerate(textures(rng, n, value_range)):
            bgr = (image[..., ::-1] * 255).round().astype(np.uint8)
            cv2.imwrite(str(root / domain / f"{i:03d}.png"), bgr)


def trainer(tmp_path, cls, options, steps: int, *, seed: int = 0, n: int = 8,
            **settings) -> Trainer:
    write_domains(tmp_path, n, seed)
    settings = {**cls.training_defaults, "epochs": 1000, "decay_epochs": 0, "max_steps": steps,
                "batch_size": 2,
                "load_size": 32, "crop_size": 32, "workers": 0, "log_every": 10,
                "sample_every": 0, "checkpoint_every": 0, "device": "cpu",
                "runs_dir": tmp_path / "runs", "name": "run", "seed": seed, **settings}
    config = TrainConfig(a=tmp_path / "a", b=tmp_path / "b", **settings)
    return Trainer(cls, options, config, progress=False)


# -- networks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("antialias", [False, True])
def test_default_networks_have_cyclegans_published_sizes(antialias):
    with torch.device("meta"):
        model = CUT(CUT.Options(antialias=antialias), spec=ImageSpec(3, 256))
    assert set(model.generators) == {"a_to_b"} and set(model.discriminators) == {"b"}
    assert n_params(model.generators["a_to_b"]) == 11_378_179
    assert n_params(model.discriminators["b"]) == 2_764_737
    # The head: per layer Linear(C, 256), ReLU, Linear(256, 256) for C = 3, 128, 256, 256, 256.
    expected = sum(c * 256 + 256 + 256 * 256 + 256 for c in (3, 128, 256, 256, 256))
    assert n_params(model.auxiliary["projection"]) == expected == 560_384


def test_the_published_defaults():
    cut, fast = CUT.Options(), FastCUT.Options()
    assert (cut.generator, cut.norm, cut.dropout, cut.antialias) == ("resnet-9", "instance", False,
                                                                     True)
    assert (cut.lambda_gan, cut.lambda_nce, cut.nce_identity, cut.flip_equivariance) == \
        (1.0, 1.0, True, False)
    assert (cut.nce_patches, cut.nce_head_units, cut.nce_temperature) == (256, 256, 0.07)
    assert (fast.lambda_nce, fast.nce_identity, fast.flip_equivariance) == (10.0, False, True)
    assert CUT.training_defaults == {"gan_loss": "lsgan", "epochs": 200, "decay_epochs": 200}
    assert FastCUT.training_defaults == {"gan_loss": "lsgan", "epochs": 150, "decay_epochs": 50}
    assert not hasattr(CUT(CUT.Options(**CUT.smoke_options), spec=ImageSpec(3, 32)), "pools")


def test_blur_upsampling_is_bilinear_and_blur_pooling_keeps_constants():
    x = torch.randn(2, 5, 8, 12)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(BlurUpsample2d(5)(x), expected, atol=1e-6)
    pooled = BlurPool2d(5)(torch.full((1, 5, 8, 12), 0.3))
    assert pooled.shape == (1, 5, 4, 6) and torch.allclose(pooled, torch.full_like(pooled, 0.3))
    # Shift by one pixel: the blurred pooling changes less than plain stride-2 subsampling.
    image = torch.rand(1, 1, 64, 64)
    shifted = image.roll(1, dims=-1)
    blurred = (BlurPool2d(1)(image)[..., 4:-4] - BlurPool2d(1)(shifted)[..., 4:-4]).abs().mean()
    plain = (image[..., ::2, ::2][..., 4:-4] - shifted[..., ::2, ::2][..., 4:-4]).abs().mean()
    assert blurred < 0.6 * plain, (blurred, plain)


def test_antialiasing_keeps_sizes_weights_and_feature_names():
    torch.manual_seed(0)
    plain = ResnetGenerator(3, 3, 8, 6)
    smooth = antialias_resnet(ResnetGenerator(3, 3, 8, 6))
    assert n_params(smooth) == n_params(plain)
    assert sum(isinstance(m, BlurPool2d) for m in smooth.modules()) == 2
    assert sum(isinstance(m, BlurUpsample2d) for m in smooth.modules()) == 2
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in smooth.modules())
    assert smooth(torch.zeros(1, 3, 20, 28)).shape == (1, 3, 20, 28)
    assert smooth.feature_layers == plain.feature_layers
    assert not any("kernel" in k for k in smooth.state_dict())  # fixed filters are not weights
    with torch.device("meta"):
        resize = antialias_resnet(ResnetGenerator(3, 3, 8, 6, upsample="resize"))
    assert not any(isinstance(m, nn.Upsample) for m in resize.modules())


def test_resnet_and_unet_name_their_encoder_features():
    x = torch.rand(2, 3, 64, 64)
    resnet = ResnetGenerator(3, 3, 8, 9)
    assert resnet.feature_layers == {"input": 3, "down1": 16, "down2": 32,
                                     **{f"block{i}": 32 for i in range(1, 10)}}
    assert resnet.default_feature_layers == ("input", "down1", "down2", "block1", "block5")
    found = encoder_features(resnet, x, ("block9", "input", "down1"))
    assert [tuple(f.shape) for f in found] == [(2, 32, 16, 16), (2, 3, 64, 64), (2, 16, 32, 32)]
    assert torch.equal(found[1], x)
    # block9 is the input of the decoder: the rest of the network turns it into the output.
    blocks = [i for i, m in enumerate(resnet.model) if isinstance(m, ResnetBlock)]
    with torch.no_grad():
        assert torch.allclose(resnet.model[blocks[-1] + 1:](found[0]), resnet(x), atol=1e-6)
    assert ResnetGenerator(3, 3, 8, 6).default_feature_layers[-1] == "block3"

    unet = UnetGenerator(3, 3, 6, 8, "instance", False)
    assert unet.feature_layers == {"input": 3, "down1": 8, "down2": 16, "down3": 32,
                                   "down4": 64, "down5": 64, "down6": 64}
    assert unet.default_feature_layers == ("input", "down1", "down2", "down3", "down4")
    shapes = [tuple(f.shape) for f in encoder_features(unet, x, unet.default_feature_layers)]
    assert shapes == [(2, 3, 64, 64), (2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8),
                      (2, 64, 4, 4)]


def test_unknown_feature_layers_and_generators_without_features_are_clear_errors(tmp_path):
    with pytest.raises(img2img.Img2ImgError, match="no feature layer 'block12'.*block6"):
        smoke(nce_layers="input,block12")
    with pytest.raises(img2img.Img2ImgError, match="does not declare named encoder features"):
        resolve_layers(nn.Conv2d(3, 3, 1), "")
    # Through the trainer: refused before a run folder exists.
    with pytest.raises(img2img.Img2ImgError, match="block12"):
        trainer(tmp_path, CUT, CUT.Options(**{**CUT.smoke_options, "nce_layers": "block12"}), 1)
    assert not (tmp_path / "runs").exists()


# -- PatchNCE ------------------------------------------------------------------------------------
def test_patch_nce_prefers_matching_patches_to_shuffled_ones():
    torch.manual_seed(0)
    key = F.normalize(torch.randn(2, 64, 16), dim=-1)
    same = patch_nce_loss(key.clone(), key, 0.07)
    shuffled = patch_nce_loss(key[:, torch.randperm(64)], key, 0.07)
    assert same < 0.05 < math.log(64) - 1 < shuffled, (same, shuffled)


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_patch_nce_is_the_formula_with_its_temperature(temperature):
    # Two unit patches at 60 degrees, the query identical to the key: each row of similarities
    # is (1, 1/2), so each patch's loss is -log(e^(1/T) / (e^(1/T) + e^(1/2T))),
    # which is log(1 + e^(-1/2T)).
    key = torch.tensor([[[1.0, 0.0], [0.5, math.sqrt(0.75)]]])
    assert torch.isclose(patch_nce_loss(key, key, temperature),
                         torch.tensor(math.log1p(math.exp(-0.5 / temperature))), rtol=1e-4)
    # Hand-made similarities: q . k = s; loss = mean over rows of logsumexp(s/T) - s_ii/T.
    query = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])
    key = torch.tensor([[[0.8, 0.6], [0.0, 1.0]]])
    s = (query @ key.transpose(1, 2))[0]
    expected = (torch.logsumexp(s / temperature, 1) - s.diagonal() / temperature).mean()
    assert torch.isclose(patch_nce_loss(query, key, temperature), expected, rtol=1e-5)


def test_patch_nce_learns_through_the_query_only():
    query = torch.randn(1, 8, 4, requires_grad=True)
    key = torch.randn(1, 8, 4, requires_grad=True)
    patch_nce_loss(F.normalize(query, dim=-1), F.normalize(key, dim=-1), 0.07).backward()
    assert query.grad is not None and key.grad is None


def test_the_projection_head_samples_the_same_positions_for_query_and_key():
    torch.manual_seed(0)
    head = ProjectionHead({"x": 4, "y": 6}, units=64)
    feats = [torch.randn(2, 4, 5, 5), torch.randn(2, 6, 2, 2)]
    keys, ids = head(feats, 10)
    assert [tuple(k.shape) for k in keys] == [(2, 10, 64), (2, 4, 64)]  # at most H*W patches
    assert all(torch.allclose(k.norm(dim=-1), torch.ones(())) for k in keys)
    again, same_ids = head(feats, 10, ids)
    assert all(torch.equal(a, b) for a, b in zip(again, keys))
    assert all(torch.equal(a, b) for a, b in zip(ids, same_ids))


# -- the model -----------------------------------------------------------------------------------
def _groups(found) -> list[dict]:
    return [found] if isinstance(found, Mapping) else list(found)


def test_cut_loss_groups_and_weights():
    torch.manual_seed(0)
    model = smoke()
    batch = {"a": torch.rand(2, 3, 32, 32) * 2 - 1, "b": torch.rand(2, 3, 32, 32) * 2 - 1}
    g, d = model.generators["a_to_b"], model.discriminators["b"]
    torch.manual_seed(1)
    fakes, groups = model.generator_step(batch)
    groups = [{k: v.detach() for k, v in group.items()} for group in _groups(groups)]
    assert [set(group) for group in groups] == [{"gan", "nce"}, {"nce_idt"}]
    torch.manual_seed(1)  # the same patch positions as the step drew
    with torch.no_grad():
        fake_b = g(batch["a"])
        gan = (d(fake_b) - 1).pow(2).mean()
        nce = model.patch_nce(batch["a"], fake_b)
        idt = model.patch_nce(batch["b"], g(batch["b"]))
    assert torch.allclose(fakes["fake_b"], fake_b) and torch.allclose(fakes["idt_b"], g(batch["b"]))
    assert torch.allclose(groups[0]["gan"], gan, atol=1e-6)
    # CUT averages the two NCE terms: 0.5 x lambda_nce each.
    assert torch.allclose(groups[0]["nce"], 0.5 * nce, atol=1e-6)
    assert torch.allclose(groups[1]["nce_idt"], 0.5 * idt, atol=1e-6)
    d_terms = model.discriminator_losses(batch, fakes)
    assert torch.allclose(d_terms["real"], 0.5 * (d(batch["b"]) - 1).pow(2).mean())
    assert torch.allclose(d_terms["fake"], 0.5 * d(fake_b).pow(2).mean())


def test_fastcut_has_one_group_weight_ten_and_flips_half_of_the_steps():
    model = smoke(FastCUT)
    batch = {"a": torch.rand(1, 3, 32, 32) * 2 - 1, "b": torch.rand(1, 3, 32, 32) * 2 - 1}
    g = model.generators["a_to_b"]
    flipped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        heads = bool(torch.rand(()) < 0.5)
        torch.manual_seed(seed)
        fakes, groups = model.generator_step(batch)
        groups = [{k: v.detach() for k, v in group.items()} for group in _groups(groups)]
        assert [set(group) for group in groups] == [{"gan", "nce"}]
        source = batch["a"].flip(3) if heads else batch["a"]
        with torch.no_grad():
            assert torch.allclose(fakes["fake_b"], g(source), atol=1e-6)
        flipped += heads
        if seed == 0:
            torch.manual_seed(0)
            torch.rand(())
            with torch.no_grad():
                nce = model.patch_nce(batch["a"], g(source), heads)
            assert torch.allclose(groups[0]["nce"], 10 * nce, atol=1e-5)
    assert 10 < flipped < 30
    model.eval()  # translating never flips
    with torch.no_grad():
        assert torch.equal(model.translate(batch["a"]), g(batch["a"]))


def test_cut_translates_one_way_and_says_so():
    model = smoke()
    assert CUT.directions == FastCUT.directions == ("a_to_b",)
    with pytest.raises(img2img.Img2ImgError, match="no direction 'b_to_a'.*one way only, a_to_b"):
        model.translate(torch.zeros(1, 3, 32, 32), "b_to_a")


def test_the_projection_head_trains_with_the_generator_and_is_checkpointed(tmp_path):
    run = trainer(tmp_path, CUT, CUT.Options(**CUT.smoke_options), steps=2, n=4)
    head = run.model.auxiliary["projection"]
    optimised = {id(p) for group in run.optimizers["g"].param_groups for p in group["params"]}
    assert {id(p) for p in head.parameters()} <= optimised
    assert not {id(p) for p in head.parameters()} & {
        id(p) for group in run.optimizers["d"].param_groups for p in group["params"]}
    before = {k: v.clone() for k, v in head.state_dict().items()}
    run_dir = run.fit()
    assert any(not torch.equal(before[k], v) for k, v in head.state_dict().items())
    weights = checkpoints.resolve_checkpoint(run_dir)
    saved = checkpoints.load_weights(weights)
    assert {k for k in saved if k.startswith("auxiliary.projection.")} == {
        f"auxiliary.projection.{k}" for k in head.state_dict()}
    resumed = Trainer.resume(CUT, run_dir, max_steps=3, progress=False)
    for key, value in head.state_dict().items():
        assert torch.equal(resumed.model.auxiliary["projection"].state_dict()[key], value)
    g_state = resumed.optimizers["g"].state_dict()["state"]
    assert len(g_state) == len(run.optimizers["g"].state_dict()["state"])
    # Translating needs only the generator: a file without the head still loads and converts.
    generators_only = {k: v for k, v in saved.items() if not k.startswith("auxiliary.")}
    loaded = CUT(run.model.options, spec=run.model.spec)
    checkpoints.load_networks(loaded, generators_only, weights)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded.eval().translate(x), run.model.eval().translate(x))


def test_a_run_evaluates_loads_and_exports_its_generator_alone(tmp_path):
    from img2img.interop.export import export_model

    run = trainer(tmp_path, CUT, CUT.Options(**CUT.smoke_options), steps=1, n=4)
    run_dir = run.fit()
    record, _ = img2img.evaluate_run(run_dir, tmp_path)  # tmp_path holds a/ and b/
    assert record["swd_a_to_b"] == record["swd"] and "swd_b_to_a" not in record
    translator = img2img.load(run_dir)
    image = np.zeros((36, 44, 3), np.uint8)
    assert translator(image).shape == image.shape
    with pytest.raises(img2img.Img2ImgError, match="one way only, a_to_b"):
        translator(image, "b_to_a")
    out = tmp_path / "cut.pt"
    contract = export_model(translator, out)
    assert contract.direction == "a_to_b"
    graph = str(torch.jit.load(str(out)).inlined_graph)
    # The generator is all convolutions; the projection head is the only linear layer there is.
    assert "aten::_convolution" in graph or "aten::conv2d" in graph
    assert "aten::linear" not in graph and "aten::addmm" not in graph


# -- learning ------------------------------------------------------------------------------------
def _held_out_error(model, seed: int) -> tuple[float, float, float]:
    """L1 from the translated held-out dark fields to the same fields brightened by 0.5 (what
    a -> b means here), from the untranslated fields to them (the identity baseline), and from
    the translations to another image's brightened field (content lost)."""
    rng = np.random.default_rng(seed + 1000)
    fields = textures(rng, 16, DARK)
    a, target = to_model(fields), to_model(fields + (BRIGHT[0] - DARK[0]))
    with torch.no_grad():
        fake = model.eval().translate(a)
    return ((fake - target).abs().mean().item(), (a - target).abs().mean().item(),
            (fake - target.roll(1, dims=0)).abs().mean().item())


def test_cut_learns_dark_to_bright_on_held_out_images(tmp_path):
    seed = 0
    options = CUT.Options(generator="resnet-6", ngf=8, ndf=8, nce_patches=64, nce_head_units=64)
    run = trainer(tmp_path, CUT, options, steps=100, seed=seed, n=32, lr=5e-4)
    run.fit()
    error, identity, other = _held_out_error(run.model, seed)
    # Measured (seeds 0-2): error 0.15-0.18 against 1.0 for doing nothing, and 0.28-0.30 to
    # another image's target, so each output keeps its own input's content.
    assert error < 0.3 * identity, (error, identity)
    assert error < 0.75 * other, (error, other)


def test_unet_cut_trains(tmp_path):
    seed = 0
    options = CUT.Options(generator="unet-32", ngf=8, ndf=8, nce_patches=64, nce_head_units=64)
    run = trainer(tmp_path, CUT, options, steps=200, seed=seed, n=32, lr=5e-4)
    run.fit()
    error, identity, _ = _held_out_error(run.model, seed)
    # Measured (seeds 0-2): error 0.23-0.28 against 1.0; PatchNCE from 1.6-1.7 down to 0.9-1.05.
    assert error < 0.5 * identity, (error, identity)
    records = [r for r in runs.read_metrics(run.run_dir) if "g/nce" in r]
    assert records[-1]["g/nce"] < 0.8 * records[0]["g/nce"], (records[0], records[-1])


# -- one pass for the output and the input's features; recomputed activations -----------------
class _Plain(nn.Module):
    """A generator with named features but no forward_with_features: the fallback's case."""
    feature_layers = {"input": 3, "stem": 4}

    def __init__(self):
        super().__init__()
        self.stem, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 3, 1)

    def forward(self, x):
        return self.head(self.stem(x))

    def encoder_features(self, x, layers):
        found = {"input": x, "stem": self.stem(x)}
        return [found[name] for name in layers]


@pytest.mark.parametrize("net", [
    ResnetGenerator(3, 3, 8, 6), antialias_resnet(ResnetGenerator(3, 3, 8, 9)),
    UnetGenerator(3, 3, 5, 8, "instance", False), _Plain()], ids=["resnet", "antialiased",
                                                                   "unet", "fallback"])
def test_forward_and_features_matches_the_output_and_the_encoder_features(net):
    from img2img.networks.features import forward_and_features

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    layers = list(net.feature_layers)[::-1]  # any order, every layer
    out, found = forward_and_features(net, x, layers)
    with torch.no_grad():
        assert torch.allclose(out, net(x), atol=1e-6)
        expected = encoder_features(net, x, layers)
    assert len(found) == len(expected)
    for f, e in zip(found, expected):
        assert not f.requires_grad and torch.allclose(f, e, atol=1e-6)
    out.mean().backward()  # the output keeps its graph
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [CUT, FastCUT])
def test_recompute_gives_the_same_losses_and_gradients(cls):
    batch = {"a": torch.rand(2, 3, 32, 32) * 2 - 1, "b": torch.rand(2, 3, 32, 32) * 2 - 1}
    results = []
    for recompute in (False, True):
        torch.manual_seed(0)
        model = smoke(cls, recompute=recompute, antialias=True)
        model.discriminators.requires_grad_(False)
        torch.manual_seed(3)  # the same flips and patch positions
        _, groups = model.generator_step(batch)
        losses = []
        for group in _groups(groups):
            total = sum(group.values())
            total.backward()
            losses.append(float(total.detach()))
        grads = {n: p.grad.clone() for part in (model.generators, model.auxiliary)
                 for n, p in part.named_parameters()}
        results.append((losses, grads))
    (plain_losses, plain), (re_losses, re) = results
    assert plain_losses == pytest.approx(re_losses, abs=1e-6)
    assert plain.keys() == re.keys() and len(plain) > 10
    for name in plain:
        assert torch.allclose(plain[name], re[name], atol=1e-6, rtol=1e-4), name
