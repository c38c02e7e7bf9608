"""Adaptive discriminator augmentation: p rises while r_t is above the target and falls while
it is below, by the paper's step, stays in [0, P_MAX], resumes bit for bit; the ops apply with
probability p per image without p changing the random stream."""
from __future__ import annotations

import io
import json

import pytest
import torch

from img2img.training import diffaugment
from img2img.training.ada import P_MAX, AdaptiveAugment, augment_with_probability

SURE = torch.ones(2, 1, 4, 4)       # r_t = 1: above the 0.6 target
UNSURE = -torch.ones(2, 1, 4, 4)    # r_t = -1: below it


def run(ada, logits, steps):
    for _ in range(steps):
        ada.observe(logits, "vanilla")
        ada.update()


def test_p_rises_when_r_t_is_above_the_target_by_the_papers_step():
    ada = AdaptiveAugment(batch_size=4, interval=4, kimg=1)
    rate = 4 * 4 / 1000
    run(ada, SURE, 3)
    assert ada.p.item() == 0.0  # adjusted only at the end of an interval
    run(ada, SURE, 1)
    assert ada.p.item() == pytest.approx(rate)
    run(ada, SURE, 8)
    assert ada.p.item() == pytest.approx(3 * rate)


def test_p_falls_when_r_t_is_below_and_stays_within_its_range():
    ada = AdaptiveAugment(batch_size=4, interval=1, kimg=0.01)  # 0.4 a step
    run(ada, SURE, 10)
    assert ada.p.item() == pytest.approx(P_MAX)
    run(ada, UNSURE, 1)
    assert ada.p.item() == pytest.approx(P_MAX - 0.4)
    run(ada, UNSURE, 5)
    assert ada.p.item() == 0.0


def test_lsgan_r_t_uses_its_own_threshold():
    ada = AdaptiveAugment(batch_size=4, interval=1, kimg=1)
    for _ in range(3):
        ada.observe(torch.full((2, 1), 0.4), "lsgan")  # positive, but below lsgan's 0.5
        ada.update()
    assert ada.p.item() == 0.0


def test_a_distributed_mean_drives_every_process_alike():
    ada = AdaptiveAugment(batch_size=4, interval=1, kimg=1)
    ada.observe(SURE, "vanilla")
    ada.update(all_reduce=lambda r_t: (r_t + torch.tensor(-1.0)) / 2)  # others saw r_t = -1
    assert ada.p.item() == 0.0


def test_the_state_resumes_bit_for_bit_mid_interval():
    torch.manual_seed(0)
    logits = [torch.randn(2, 1, 4, 4) + 0.8 for _ in range(40)]
    ada = AdaptiveAugment(batch_size=3, interval=4, kimg=0.3)
    for item in logits[:18]:
        ada.observe(item, "hinge")
        ada.update()
    buffer = io.BytesIO()
    torch.save(json.loads(json.dumps(ada.state_dict())), buffer)
    resumed = AdaptiveAugment(batch_size=3, interval=4, kimg=0.3)
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    for item in logits[18:]:
        for controller in (ada, resumed):
            controller.observe(item, "hinge")
            controller.update()
        assert torch.equal(ada.p, resumed.p)
    assert ada.p.item() > 0


def test_p_zero_and_one_mean_never_and_always():
    torch.manual_seed(1)
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    assert torch.equal(augment_with_probability(x, 0.0), x)
    torch.manual_seed(2)
    always = augment_with_probability(x, 1.0, ("translation",))
    torch.manual_seed(2)
    assert torch.equal(always, diffaugment.translation(x))


def test_the_random_stream_does_not_depend_on_p():
    x = torch.rand(4, 3, 8, 8)
    after = []
    for p in (0.0, 0.3, torch.tensor(0.9)):
        torch.manual_seed(3)
        augment_with_probability(x, p)
        after.append(torch.rand(()))
    assert after[0] == after[1] == after[2]


def test_the_generator_gradient_flows_through_the_augmentation():
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    augment_with_probability(x, 0.5).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_installed_it_augments_only_while_the_discriminator_trains():
    ada = AdaptiveAugment(batch_size=4, interval=1, kimg=0.001)
    run(ada, SURE, 1)
    assert ada.p.item() == pytest.approx(P_MAX)
    seen = []
    net = torch.nn.Identity()
    net.register_forward_hook(lambda module, args, out: seen.append(out))
    (handle,) = ada.install([net])
    x = torch.rand(8, 3, 8, 8)
    net.train()(x)
    net.eval()(x)
    handle.remove()
    assert not torch.equal(seen[0], x) and torch.equal(seen[1], x)


def test_nonsense_settings_are_refused():
    with pytest.raises(ValueError, match="at least one of"):
        AdaptiveAugment(batch_size=4, policy=("none",))
    with pytest.raises(ValueError, match="unknown DiffAugment policy zoom"):
        AdaptiveAugment(batch_size=4, policy=("zoom",))
    with pytest.raises(ValueError, match="0 < target < 1"):
        AdaptiveAugment(batch_size=4, target=1.0)
