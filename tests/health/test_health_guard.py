"""The step guard: a NaN or inf in any loss term or gradient skips the step (the update, as a
trainer applies it through the guard, leaves weights and Adam state bit-identical), each skip is
logged once with its step, and a long run of skips stops training with a clear error."""
from __future__ import annotations

import logging

import pytest
import torch

from img2img.errors import Img2ImgError
from img2img.health import NonFiniteSteps, StepGuard

NAN, INF = float("nan"), float("inf")


def grads_of(*values):
    return {"grad/g.a_to_b": [torch.tensor(v) for v in values]}


def test_finite_steps_pass_and_huge_finite_gradients_too():
    guard = StepGuard()
    assert guard.check(1, {"g/gan": torch.tensor(0.7)}, grads_of([1.0, -2.0], [3.0]))
    assert guard.check(2, {"g/gan": torch.tensor(0.7)}, grads_of([1e30, -1e30]))
    assert guard.skipped == 0


@pytest.mark.parametrize("losses, grads, bad", [
    ({"g/gan": torch.tensor(NAN)}, grads_of([1.0]), "g/gan"),
    ({"g/gan": torch.tensor(1.0)}, grads_of([1.0], [INF]), "grad/g.a_to_b"),
    ({"d/real": torch.tensor(-INF, dtype=torch.bfloat16)}, {}, "d/real"),
    ({"g/gan": torch.tensor(1.0)}, grads_of([0.0, NAN]), "grad/g.a_to_b"),
])
def test_a_non_finite_loss_or_gradient_skips_the_step_and_is_logged_once(losses, grads, bad,
                                                                          caplog):
    guard = StepGuard()
    with caplog.at_level(logging.WARNING, logger="img2img"):
        assert not guard.check(417, losses, grads)
    assert guard.skipped == 1 and guard.consecutive == 1
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"step 417 skipped: non-finite {bad}")


def test_a_skipped_step_leaves_weights_and_optimiser_state_bit_identical():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    guard = StepGuard()

    def step(number, poison):
        optimizer.zero_grad()
        loss = net(torch.randn(4, 3)).pow(2).mean() * (NAN if poison else 1.0)
        loss.backward()
        if guard.check(number, {"g/l2": loss}, {"grad/g.net": [p.grad for p in net.parameters()]}):
            optimizer.step()

    step(1, poison=False)
    weights = [p.detach().clone() for p in net.parameters()]
    state = [v.clone() for s in optimizer.state.values() for v in s.values()]
    step(2, poison=True)
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    assert all(torch.equal(a, b) for a, b in
               zip(state, [v for s in optimizer.state.values() for v in s.values()]))
    step(3, poison=False)
    assert not torch.equal(weights[0], net.weight) and guard.skipped == 1


def test_too_many_skips_in_a_row_stop_with_what_happened():
    settings = {"training": {"lr": 2e-4, "precision": "fp16"}}
    guard = StepGuard(max_consecutive=20, config=settings)
    nan = {"g/gan": torch.tensor(NAN)}
    assert not guard.check(5, nan, {})
    assert guard.check(6, {"g/gan": torch.tensor(1.0)}, {})  # a good step ends the run of skips
    for step in range(101, 120):
        assert not guard.check(step, nan, {})
    with pytest.raises(NonFiniteSteps) as stopped:
        guard.check(120, nan, {})
    assert isinstance(stopped.value, Img2ImgError)
    message = str(stopped.value)
    assert "stopped at step 120: 20 steps in a row (101-120) had a non-finite g/gan" in message
    assert "(21 skipped in all)" in message and "\n" not in message
    assert "--lr 0.0001 (now 0.0002)" in message and "--precision bf16" in message


def test_the_flags_can_be_reduced_across_processes_before_the_decision():
    guard = StepGuard()
    finite = guard.measure({"g/gan": torch.tensor(1.0)}, grads_of([1.0]))
    assert finite.tolist() == [1.0, 1.0]
    elsewhere = torch.tensor([1.0, 0.0])  # another process saw a NaN gradient
    assert not guard.allows(9, torch.minimum(finite, elsewhere))


def test_the_counts_survive_a_checkpoint():
    guard = StepGuard(max_consecutive=3)
    guard.check(1, {"g/gan": torch.tensor(NAN)}, {})
    guard.check(2, {"g/gan": torch.tensor(NAN)}, {})
    resumed = StepGuard(max_consecutive=3)
    resumed.load_state_dict(guard.state_dict())
    assert (resumed.skipped, resumed.consecutive) == (2, 2)
    with pytest.raises(NonFiniteSteps, match=r"\(1-3\)"):
        resumed.check(3, {"g/gan": torch.tensor(NAN)}, {})
