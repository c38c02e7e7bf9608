"""Tests for img2img.networks: published parameter counts, shapes and ranges, norms, init,
per-sample batch norm and the PatchGAN receptive field. Small models at 32 px on the CPU."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from img2img.networks import (NORMS, PatchDiscriminator, PerSampleNorm2d, ResnetGenerator,
                              UnetGenerator, init_weights, norm_layer, per_sample_batch_norm,
                              receptive_field)
from img2img.networks.unet import Bottleneck


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("build, expected", [
    (lambda: ResnetGenerator(3, 3, 64, n_blocks=9, norm="instance"), 11_378_179),
    (lambda: ResnetGenerator(3, 3, 64, n_blocks=6, norm="instance"), 7_837_699),
    (lambda: UnetGenerator(3, 3, num_downs=8, norm="batch"), 54_413_955),
    (lambda: UnetGenerator(3, 3, num_downs=7, norm="batch"), 41_828_995),
    (lambda: PatchDiscriminator(3, 64, 3, norm="instance"), 2_764_737),
    (lambda: PatchDiscriminator(6, 64, 3, norm="batch"), 2_768_705),
], ids=["resnet9", "resnet6", "unet256", "unet128", "patchgan", "patchgan-pair-bn"])
def test_published_parameter_counts(build, expected):
    with torch.device("meta"):
        assert count(build()) == expected


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("in_ch, out_ch", [(3, 3), (1, 3)])
def test_generators_keep_size_and_tanh_range(norm, in_ch, out_ch):
    torch.manual_seed(0)
    x = torch.randn(2, in_ch, 32, 32) * 3
    for net in (ResnetGenerator(in_ch, out_ch, ngf=8, n_blocks=2, norm=norm, dropout=True),
                UnetGenerator(in_ch, out_ch, num_downs=5, ngf=8, norm=norm)):
        y = net(x)
        assert y.shape == (2, out_ch, 32, 32)
        assert y.abs().max() <= 1.0
        assert y.std() > 0  # not a constant map


def test_generators_reject_sizes_they_cannot_restore():
    with pytest.raises(ValueError, match="divisible by 4"):
        ResnetGenerator(ngf=8, n_blocks=1)(torch.zeros(1, 3, 30, 32))
    unet = UnetGenerator(num_downs=5, ngf=8)
    assert unet.required_multiple == 32
    with pytest.raises(ValueError, match="divisible by 32"):
        unet(torch.zeros(1, 3, 48, 32))


def test_unet_dropout_sits_in_the_extra_8ngf_levels():
    def dropouts(net):
        return sum(isinstance(m, nn.Dropout) for m in net.modules())

    with torch.device("meta"):
        assert dropouts(UnetGenerator(num_downs=8, ngf=8)) == 3
        assert dropouts(UnetGenerator(num_downs=8, ngf=8, dropout=False)) == 0
        assert dropouts(UnetGenerator(num_downs=5, ngf=8)) == 0


def test_unet_skip_connections_carry_input_detail():
    # Zeroing the bottleneck's decoder leaves the output still depending on the input: the skips.
    torch.manual_seed(0)
    net = UnetGenerator(num_downs=5, ngf=8, norm="none", dropout=False)
    bottleneck = net.model
    while not isinstance(bottleneck.inner, Bottleneck):
        bottleneck = bottleneck.inner
    nn.init.zeros_(bottleneck.up[1].weight)
    a, b = torch.randn(2, 1, 3, 32, 32)
    assert not torch.allclose(net(a), net(b))


def test_unet_conditioning_is_added_at_the_bottleneck():
    # No condition (or a zero one) is the plain U-Net; a condition per image changes its output.
    torch.manual_seed(0)
    net = UnetGenerator(num_downs=5, ngf=4, norm="instance", dropout=False).eval()
    x = torch.randn(2, 3, 32, 32)
    condition = torch.randn(2, net.bottleneck_channels)
    assert net.bottleneck_channels == 32
    assert torch.equal(net(x), net(x, torch.zeros_like(condition)))
    changed = net(x, condition)
    assert changed.shape == x.shape and not torch.allclose(changed, net(x))
    assert not torch.allclose(changed[:1], net(x[:1], condition[1:]))  # each image its own


@pytest.mark.parametrize("size, side", [(32, 2), (64, 6)])
@pytest.mark.parametrize("norm", NORMS)
def test_discriminator_output_shape(size, side, norm):
    d = PatchDiscriminator(6, ndf=8, n_layers=3, norm=norm)
    assert d(torch.randn(2, 6, size, size)).shape == (2, 1, side, side)


def test_norm_layer_kinds_and_unknown_name():
    assert isinstance(norm_layer("none", 4), nn.Identity)
    inorm = norm_layer("instance", 4)
    assert isinstance(inorm, nn.InstanceNorm2d) and not inorm.affine and not inorm.track_running_stats
    bn = norm_layer("batch", 4)
    assert isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.track_running_stats
    with pytest.raises(ValueError, match="instance, batch, none"):
        norm_layer("layer", 4)
    with pytest.raises(ValueError, match="'group'"):
        ResnetGenerator(norm="group")


def test_batch_norm_networks_drop_the_redundant_conv_bias():
    for net in (ResnetGenerator(ngf=8, n_blocks=1, norm="batch"), PatchDiscriminator(ndf=8, norm="batch")):
        followed_by_bn = [conv for conv, nxt in zip(net.model, net.model[1:])
                          if isinstance(conv, nn.Conv2d | nn.ConvTranspose2d) and isinstance(nxt, nn.BatchNorm2d)]
        assert followed_by_bn and all(conv.bias is None for conv in followed_by_bn)


def test_init_weights_normal_scheme():
    torch.manual_seed(0)
    net = init_weights(ResnetGenerator(ngf=16, n_blocks=2, norm="batch"))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    big = [c.weight for c in convs if c.weight.numel() > 2000]
    assert big
    for w in big:
        assert abs(w.std().item() - 0.02) < 0.002
        assert abs(w.mean().item()) < 0.002
    assert all(torch.all(c.bias == 0) for c in convs if c.bias is not None)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    scales = torch.cat([bn.weight for bn in bns])
    assert abs(scales.mean().item() - 1.0) < 0.005 and 0.01 < scales.std().item() < 0.03
    assert all(torch.all(bn.bias == 0) for bn in bns)


def test_init_weights_reaches_spectral_norm_weights():
    d = init_weights(PatchDiscriminator(ndf=16, spectral_norm=True), std=0.05)
    conv = d.model[2]
    assert parametrize.is_parametrized(conv, "weight")
    assert abs(conv.parametrizations.weight.original.std().item() - 0.05) < 0.005


def test_spectral_norm_bounds_every_conv():
    torch.manual_seed(0)
    d = PatchDiscriminator(3, ndf=8, norm="none", spectral_norm=True)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(parametrize.is_parametrized(c, "weight") for c in convs)
    for _ in range(30):  # in training mode each access to the weight runs one power iteration
        for c in convs:
            c.weight
    d.eval()
    for c in convs:
        sigma = torch.linalg.matrix_norm(c.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)


def _bn_unet_with_used_running_stats():
    torch.manual_seed(0)
    net = init_weights(UnetGenerator(num_downs=5, ngf=8, norm="batch", dropout=False), std=0.2)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # stats the per-sample path must ignore
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return net


@torch.no_grad()
def test_per_sample_batch_norm_matches_training_at_batch_one():
    net = _bn_unet_with_used_running_stats()
    reference = copy.deepcopy(net).train()
    keys = net.state_dict().keys()
    converted = per_sample_batch_norm(net).eval()
    assert converted is net
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    assert converted.state_dict().keys() == keys

    a, b = torch.randn(2, 1, 3, 32, 32)
    assert torch.allclose(converted(a), reference(a), atol=1e-5)
    pair = converted(torch.cat([a, b]))
    assert torch.allclose(pair[:1], converted(a), atol=1e-5)
    assert torch.allclose(pair[1:], converted(b), atol=1e-5)
    # Plain eval-mode batch norm would have used the running statistics instead.
    eval_bn = copy.deepcopy(reference).eval()
    assert not torch.allclose(eval_bn(a), reference(a), atol=1e-3)


def test_per_sample_batch_norm_on_a_bare_layer():
    bn = nn.BatchNorm2d(4, eps=1e-3)
    replaced = per_sample_batch_norm(bn)
    assert isinstance(replaced, PerSampleNorm2d) and replaced.weight is bn.weight and replaced.eps == 1e-3


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_patchgan_receptive_field(n_layers):
    assert receptive_field(3) == 70
    # Positive weights and LeakyReLU's positive slopes make every path contribute, so the
    # pixels with nonzero gradient are exactly the patch one central logit sees.
    d = PatchDiscriminator(1, ndf=4, n_layers=n_layers, norm="none")
    for p in d.parameters():
        nn.init.constant_(p, 0.01)
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    logits = d(x)
    h, w = logits.shape[-2:]
    logits[0, 0, h // 2, w // 2].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    side = receptive_field(n_layers)
    assert d.receptive_field == side
    assert rows.max() - rows.min() + 1 == side and len(rows) == side
    assert cols.max() - cols.min() + 1 == side and len(cols) == side
