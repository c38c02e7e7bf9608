"""The divergence monitor: after its warm-up, a gradient norm 10^4x its recent median
rolls back within two checks, a lone spike does not, NaN rolls back at once, and after
--max-rollbacks the run is told to stop with what kept happening. Its state round-trips."""
from __future__ import annotations

import json
import math

import pytest

from img2img.health import OK, ROLLBACK, STOP, DivergenceMonitor

WATCHED = ("g/gan", "d/real", "grad/g.a_to_b")
# Gradient norms diverge only past GRAD_FACTOR (1000x) their median: single-step norms are
# heavy-tailed. A 10^4x norm is divergence whatever its key.
SPIKE = 10_000


def record(step, scale=1.0, **values):
    wobble = 1 + 0.2 * math.sin(step)  # healthy losses move 20% either way
    found = {"step": step, "lr": 2e-4, "epoch": 1, "time": 1.0,
             **{key: 0.7 * wobble for key in WATCHED}}
    found.update({key: value * wobble for key, value in values.items()})
    if scale != 1:
        found["grad/g.a_to_b"] *= scale
    return found


def warmed_up(monitor, records=12):
    for step in range(1, records + 1):
        assert monitor.check(record(step)).action == OK
    return records


def test_a_sustained_spike_rolls_back_within_two_checks():
    monitor = DivergenceMonitor()
    step = warmed_up(monitor)
    first = monitor.check(record(step + 1, scale=SPIKE))
    assert first.action == OK and first.signals == ("grad/g.a_to_b",)
    assert not monitor.healthy  # a checkpoint now would not be one to roll back to
    second = monitor.check(record(step + 2, scale=SPIKE))
    assert second.action == ROLLBACK and second.signals == ("grad/g.a_to_b",)
    assert "rollback 1 of at most 3" in second.message and monitor.lr_factor == 0.5
    assert monitor.healthy


def test_an_evaluation_line_between_two_divergent_records_changes_nothing():
    monitor = DivergenceMonitor()
    step = warmed_up(monitor)
    monitor.check(record(step + 1, scale=SPIKE))
    assert monitor.check({"step": step + 1, "epoch": 1, "eval/l1": 0.3}).action == OK
    assert monitor.check(record(step + 2, scale=SPIKE)).action == ROLLBACK


def test_a_lone_spike_is_noise_and_is_not_learned_from():
    monitor = DivergenceMonitor()
    step = warmed_up(monitor)
    assert monitor.check(record(step + 1, scale=SPIKE)).action == OK
    assert monitor.check(record(step + 2)).action == OK
    assert monitor.rollbacks == 0 and monitor.healthy
    assert max(monitor.history["grad/g.a_to_b"]) < 1  # the spike never entered the history


def test_values_are_judged_against_their_recent_level_not_the_whole_run():
    monitor = DivergenceMonitor(window=20)
    levels = [1.0] * 25 + [8.0] * 15  # a loss that settled higher, 8x (below the factor 10)
    for step, level in enumerate(levels, 1):
        assert monitor.check({"step": step, "g/l1": level}).action == OK
    # 70 is 70x the run's median but under 10x the last 20 records' median of 8.
    assert monitor.check({"step": 41, "g/l1": 70.0}).signals == ()


def test_nothing_is_judged_during_the_warm_up():
    monitor = DivergenceMonitor(warmup=10)
    for step in range(1, 10):
        assert monitor.check(record(step, scale=SPIKE if step > 5 else 1)).action == OK
    assert monitor.rollbacks == 0


def test_a_non_finite_value_rolls_back_at_once():
    monitor = DivergenceMonitor()
    step = warmed_up(monitor)
    decision = monitor.check(record(step + 1, **{"d/real": math.nan}))
    assert decision.action == ROLLBACK and decision.signals == ("d/real",)


def test_small_values_rising_back_to_ordinary_ones_are_not_divergence():
    monitor = DivergenceMonitor()
    for step in range(1, 13):  # a hinge D at zero loss
        monitor.check(record(step, **{"d/real": 0.0}))
    for step in range(13, 16):
        assert monitor.check(record(step, **{"d/real": 0.4})).action == OK


def test_after_max_rollbacks_it_says_stop_with_what_kept_happening():
    config = {"training": {"lr": 2e-4, "lr_d": 4e-4}}
    monitor = DivergenceMonitor(max_rollbacks=3, config=config)
    step = warmed_up(monitor)
    saved = monitor.state_dict()
    actions = []
    for _ in range(4):
        for _ in range(2):
            step += 1
            decision = monitor.check(record(step, **{"d/real": 500.0}))
        actions.append(decision.action)
        if decision.action == ROLLBACK:
            monitor.rewind(saved)  # the trainer restored the last healthy checkpoint
    assert actions == [ROLLBACK, ROLLBACK, ROLLBACK, STOP]
    assert monitor.rollbacks == 3 and monitor.lr_factor == 0.125
    assert "d/real ran away 4 time(s)" in decision.message
    assert "--lr-d 0.0002 (now 0.0004)" in decision.message and "\n" not in decision.message


def test_no_rollbacks_allowed_stops_at_the_first_divergence():
    monitor = DivergenceMonitor(max_rollbacks=0, confirm=1)
    step = warmed_up(monitor)
    assert monitor.check(record(step + 1, scale=10 * SPIKE)).action == STOP


def test_the_state_is_plain_data_and_resumes_exactly():
    monitor = DivergenceMonitor()
    step = warmed_up(monitor, 15)
    monitor.check(record(step + 1, scale=SPIKE))  # a suspicion pending at the checkpoint
    state = json.loads(json.dumps(monitor.state_dict()))
    resumed = DivergenceMonitor()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == monitor.state_dict()
    later = [record(step + 2, scale=SPIKE), record(step + 3)]
    assert [resumed.check(r) for r in later] == [monitor.check(r) for r in later]


@pytest.mark.parametrize("bad", [dict(factor=1), dict(warmup=0), dict(max_rollbacks=-1)])
def test_nonsense_settings_are_refused(bad):
    with pytest.raises(ValueError):
        DivergenceMonitor(**bad)
