"""Tests for img2img.networks.losses: loss values on hand-computed logits, the penalties' values and
gradients, and the image pool's filling, determinism and checkpoint round trip."""
from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from img2img.networks.losses import GAN_LOSSES, Adversary, ImagePool, gradient_penalty, r1_penalty


def identity(x):
    """A critic whose logits are its input, so tests can choose logits directly."""
    return x


def half_square(x):
    """A critic with per-sample input gradient x (critic = 0.5 * ||x||^2 per sample)."""
    return 0.5 * x.pow(2).flatten(1).sum(1)


def conv_critic():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3))


def images(n=2, size=8, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# generator losses ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind, logits, expected", [
    ("vanilla", [0.0, 0.0], math.log(2)),
    ("vanilla", [30.0, 30.0], 0.0),
    ("lsgan", [1.0, 1.0], 0.0),
    ("lsgan", [0.0, 3.0], (1 + 4) / 2),
    ("hinge", [1.0, 3.0], -2.0),
    ("wgan-gp", [-1.0, 5.0], -2.0),
])
def test_generator_loss_values(kind, logits, expected):
    loss = Adversary(kind).generator_loss(torch.tensor(logits))
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_vanilla_generator_loss_does_not_saturate():
    # With D confidently rejecting fakes the non-saturating loss still gives gradient ~1 per logit.
    logits = torch.full((4,), -10.0, requires_grad=True)
    Adversary("vanilla").generator_loss(logits).backward()
    assert torch.allclose(logits.grad, torch.full((4,), -0.25), atol=1e-4)


def test_generator_loss_averages_patch_maps():
    logits = torch.zeros(2, 1, 3, 3)
    logits[0] = 4.0
    assert Adversary("hinge").generator_loss(logits).item() == pytest.approx(-2.0)


def test_unknown_kind_names_choices():
    with pytest.raises(ValueError, match="vanilla.*lsgan.*hinge.*wgan-gp"):
        Adversary("wgan")


def test_negative_weight_rejected():
    with pytest.raises(ValueError):
        Adversary("wgan-gp", gp_weight=-1.0)


# discriminator losses ----------------------------------------------------------------------

@pytest.mark.parametrize("kind, real, fake, expected", [
    ("vanilla", [0.0, 0.0], [0.0, 0.0], (0.5 * math.log(2), 0.5 * math.log(2))),
    ("vanilla", [30.0, 30.0], [-30.0, -30.0], (0.0, 0.0)),
    ("lsgan", [1.0, 1.0], [0.0, 0.0], (0.0, 0.0)),
    ("lsgan", [3.0, 1.0], [2.0, 0.0], (0.5 * 4 / 2, 0.5 * 4 / 2)),
    ("hinge", [0.5, 2.0], [-2.0, 0.0], (0.25, 0.5)),
    ("wgan-gp", [1.0, 3.0], [-1.0, 2.0], (-2.0, 0.5)),
])
def test_discriminator_loss_values(kind, real, fake, expected):
    # Logits of shape (B, 1) through the identity critic: input gradient has unit norm, so gp = 0.
    real, fake = torch.tensor(real)[:, None], torch.tensor(fake)[:, None]
    terms = Adversary(kind).discriminator_losses(identity, real, fake)
    assert terms["real"].item() == pytest.approx(expected[0], abs=1e-6)
    assert terms["fake"].item() == pytest.approx(expected[1], abs=1e-6)
    if kind == "wgan-gp":
        assert terms["gp"].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", GAN_LOSSES)
@pytest.mark.parametrize("r1_weight", [0.0, 1.0])
def test_discriminator_loss_keys(kind, r1_weight):
    critic = conv_critic()
    terms = Adversary(kind, r1_weight=r1_weight).discriminator_losses(critic, images(), images(seed=2))
    expected = {"real", "fake"} | ({"gp"} if kind == "wgan-gp" else set())
    expected |= {"r1"} if r1_weight else set()
    assert set(terms) == expected
    assert all(term.dim() == 0 and torch.isfinite(term) for term in terms.values())


def test_discriminator_losses_leave_callers_real_untouched():
    real = images()
    Adversary("vanilla", r1_weight=1.0).discriminator_losses(conv_critic(), real, images(seed=2))
    assert not real.requires_grad and real.grad is None


def test_conditional_critic_through_lambda():
    critic = nn.Conv2d(6, 1, 3)
    condition = images(seed=3)
    terms = Adversary("lsgan").discriminator_losses(
        lambda x: critic(torch.cat([condition, x], 1)), images(), images(seed=2))
    sum(terms.values()).backward()
    assert critic.weight.grad.abs().sum() > 0


def critic_grads(adversary):
    critic = conv_critic()
    torch.manual_seed(5)  # the penalty's interpolation draws from the global RNG
    terms = adversary.discriminator_losses(critic, images(), images(seed=2))
    sum(terms.values()).backward()
    return [p.grad.clone() for p in critic.parameters()]


def test_gradient_penalty_changes_critic_gradients():
    with_gp = critic_grads(Adversary("wgan-gp", gp_weight=10.0))
    without = critic_grads(Adversary("wgan-gp", gp_weight=0.0))
    assert any(not torch.allclose(a, b) for a, b in zip(with_gp, without))


def test_r1_changes_critic_gradients():
    with_r1 = critic_grads(Adversary("hinge", r1_weight=10.0))
    without = critic_grads(Adversary("hinge", r1_weight=0.0))
    assert any(not torch.allclose(a, b) for a, b in zip(with_r1, without))


def test_r1_term_is_half_weight_times_penalty():
    real = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    terms = Adversary("lsgan", r1_weight=4.0).discriminator_losses(half_square, real, real)
    assert terms["r1"].item() == pytest.approx(4.0 / 2 * (1 + 9) / 2)


# gradient penalty --------------------------------------------------------------------------

@pytest.mark.parametrize("scale, expected", [(1.0, 0.0), (3.0, 4.0)])
def test_gradient_penalty_of_linear_critic(scale, expected):
    # critic(x) = <w, x>: input gradient w everywhere, so the penalty is (||w|| - 1)^2.
    w = torch.randn(3 * 8 * 8)
    w = scale * w / w.norm()
    penalty = gradient_penalty(lambda x: x.flatten(1) @ w, images(), images(seed=2))
    assert penalty.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("weight, expected", [(0.5, 0.0), (1.0, 1.0)])
def test_gradient_penalty_with_patch_map(weight, expected):
    # A 1x1 conv map (B,1,2,2) = weight * x: gradient of its sum is weight everywhere, norm 2*weight.
    critic = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.constant_(critic.weight, weight)
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(expected, abs=1e-5)


def test_gradient_penalty_norm_is_per_sample():
    # real == fake pins the interpolation; per-sample norms 1 and 3 give ((1-1)^2 + (3-1)^2) / 2.
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert gradient_penalty(half_square, x, x).item() == pytest.approx(2.0, abs=1e-5)


def test_gradient_penalty_is_differentiable_wrt_critic():
    critic = conv_critic()
    penalty = gradient_penalty(critic, images(), images(seed=2))
    assert penalty.requires_grad
    penalty.backward()
    # Biases do not shape the input gradient; the weights must receive the penalty's gradient.
    assert critic[0].weight.grad.abs().sum() > 0 and critic[2].weight.grad.abs().sum() > 0


def test_gradient_penalty_leaves_inputs_detached():
    real, fake = images(), images(seed=2)
    gradient_penalty(conv_critic(), real, fake).backward()
    assert real.grad is None and fake.grad is None


# R1 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("constant", [
    lambda x: torch.zeros(x.shape[0]),                    # no graph at all
    lambda x: 0.0 * x.flatten(1).sum(1) + 2.0,            # graph, but zero input gradient
])
def test_r1_is_zero_for_constant_critic(constant):
    real = images().requires_grad_(True)
    assert r1_penalty(constant(real), real).item() == 0.0


def test_r1_value_and_positivity():
    real = torch.tensor([[1.0, 2.0], [0.0, 3.0]], requires_grad=True)
    assert r1_penalty(half_square(real), real).item() == pytest.approx((5 + 9) / 2)
    conv_real = images().requires_grad_(True)
    assert r1_penalty(conv_critic()(conv_real), conv_real).item() > 0


def test_r1_requires_grad_on_real():
    real = images()
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(conv_critic()(real), real)


# image pool --------------------------------------------------------------------------------

def batches(count, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, 4, 4, generator=g) for _ in range(count)]


def test_pool_size_zero_passes_through():
    pool = ImagePool(0)
    batch = batches(1)[0]
    assert pool.query(batch) is batch
    assert len(pool) == 0


def test_pool_fills_up_to_size_then_mixes_history():
    pool = ImagePool(3)
    seen = []
    first = batches(1, seed=1)[0]
    assert torch.equal(pool.query(first), first)  # filling: returns what it stores
    seen.extend(first)
    torch.manual_seed(0)
    from_history = 0
    for batch in batches(20, seed=2):
        out = pool.query(batch)
        assert out.shape == batch.shape
        assert len(pool) == 3
        for new, got in zip(batch, out):
            # An earlier image of the same batch may already have been stored and swapped out.
            assert any(torch.equal(got, old) for old in [*batch, *seen])
            from_history += not torch.equal(got, new)
        seen.extend(batch)
    assert 5 < from_history < 35  # about half of the 40 images, with probability 0.5 each


def test_pool_swap_stores_the_new_image():
    # Size 1 makes the history exact: a swap returns the stored image and keeps the new one.
    pool = ImagePool(1)
    stored = batches(1, n=1, seed=1)[0]
    pool.query(stored)
    torch.manual_seed(0)
    swaps = 0
    for batch in batches(12, n=1, seed=2):
        out = pool.query(batch)
        if torch.equal(out, batch):
            continue
        assert torch.equal(out, stored)
        stored, swaps = batch, swaps + 1
        assert torch.equal(pool.state_dict()["images"], stored)
    assert swaps > 0


def test_pool_stores_copies():
    pool = ImagePool(4)
    batch = batches(1)[0]
    pool.query(batch)
    batch.add_(1.0)
    assert not torch.equal(pool.state_dict()["images"], batch)


def run_pool(pool, seed, inputs):
    torch.manual_seed(seed)
    return [pool.query(batch) for batch in inputs]


def test_pool_is_deterministic_under_seed():
    inputs = batches(10)
    first = run_pool(ImagePool(4), 7, inputs)
    again = run_pool(ImagePool(4), 7, inputs)
    other = run_pool(ImagePool(4), 8, inputs)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_pool_state_dict_round_trip_reproduces_future():
    pool = ImagePool(4)
    run_pool(pool, 3, batches(5, seed=1))
    buffer = io.BytesIO()
    torch.save(pool.state_dict(), buffer)
    rng = torch.get_rng_state()
    future = batches(6, seed=2)
    expected = [pool.query(batch) for batch in future]

    restored = ImagePool(4)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert len(restored) == 4
    torch.set_rng_state(rng)
    assert all(torch.equal(a, restored.query(b)) for a, b in zip(expected, future))


def test_pool_empty_state_round_trip():
    target = ImagePool(4)
    run_pool(target, 0, batches(1))
    target.load_state_dict(ImagePool(4).state_dict())
    assert len(target) == 0
    batch = batches(1, seed=5)[0]
    assert torch.equal(target.query(batch), batch)  # empty again, so it refills


def test_pool_rejects_state_larger_than_size():
    with pytest.raises(ValueError, match="size"):
        ImagePool(2).load_state_dict({"images": torch.zeros(3, 3, 4, 4)})


# the penalties under fp16 (PyTorch's AMP recipe for gradient penalties) ----------------------

def faint_critic():
    """A critic whose input gradient is ~3e-8 per pixel: below fp16's smallest subnormal (6e-8),
    so in half precision it flushes to zero on its way back unless it is scaled."""
    critic = conv_critic()
    with torch.no_grad():
        critic[0].weight.mul_(1e-5)
        critic[2].weight.mul_(1e-2)
    return critic


def test_r1_under_fp16_goes_through_the_gradient_scaler():
    critic, real = faint_critic(), images(size=16)

    def r1(precision, scaler=None):
        x = real.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.float16, enabled=precision == "fp16"):
            logits = critic(x)
        return r1_penalty(logits, x, scaler).item()

    exact = r1("fp32")
    assert exact > 0
    assert r1("fp16") == 0.0  # what the unscaled penalty computed: nothing
    scaled = r1("fp16", torch.amp.GradScaler("cpu", init_scale=2.0**16))
    assert scaled == pytest.approx(exact, rel=1e-2)  # fp16 rounding of the activations


@pytest.mark.parametrize("kind,weights,key", [("wgan-gp", dict(gp_weight=10.0), "gp"),
                                              ("hinge", dict(r1_weight=10.0), "r1")])
def test_the_adversary_passes_its_scaler_to_the_penalty(kind, weights, key):
    """Unscaled afterwards: the scaler changes how the gradient travels, not the penalty."""
    real, fake = images(size=16), images(size=16, seed=2)

    def penalty(scaler, fp16):
        adversary = Adversary(kind, **weights)
        adversary.scaler = scaler
        torch.manual_seed(5)  # the same interpolation points
        with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
            return adversary.discriminator_losses(faint_critic(), real, fake)[key].item()

    exact = penalty(None, fp16=False)
    assert penalty(torch.amp.GradScaler("cpu", init_scale=2.0**16), fp16=False) == \
        pytest.approx(exact, rel=1e-5)
    scaled = penalty(torch.amp.GradScaler("cpu", init_scale=2.0**16), fp16=True)
    assert scaled == pytest.approx(exact, rel=1e-2)
    if key == "r1":
        assert penalty(None, fp16=True) == 0.0
    # A disabled scaler (bf16, fp32 runs) is no scaler.
    assert penalty(torch.amp.GradScaler("cpu", enabled=False), fp16=False) == \
        pytest.approx(exact, rel=1e-6)
