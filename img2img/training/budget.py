"""Training for the time a user has (`--time-budget 25m`): `parse_duration` reads the flag's value,
and `TimeBudget` is the clock the training loop asks whether the next step still fits
(`last_step`) and how far through the run it is (`fraction`), which the learning-rate schedule
follows instead of epochs. The time counted is the whole loop's wall time (steps, evaluation,
sample grids, checkpoints), kept across `--resume` by the checkpoint's `elapsed`."""
from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)")


def parse_duration(value: str | float) -> float:
    """Seconds in `value`: a number with a unit, s, m or h ("90s", "25m", "1.5h"), or a plain
    number of minutes ("25", or 25 from Python). ValueError says what was expected."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 25m or 1.5h")
    if isinstance(value, (int, float)):
        seconds = float(value) * UNITS["m"]
    else:
        text = str(value).strip().lower()
        match = _DURATION.fullmatch(text.removeprefix("-"))
        if match is not None and text.startswith("-"):
            raise ValueError("must be more than zero; expected e.g. 90s, 25m or 1.5h")
        if match is None:
            raise ValueError("expected a duration such as 90s, 25m or 1.5h (a plain number "
                             "counts minutes)")
        seconds = float(match.group(1)) * UNITS[match.group(2) or "m"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be more than zero; expected e.g. 90s, 25m or 1.5h")
    return seconds


def format_duration(seconds: float) -> str:
    """`1h 02m 05s`, `2m 05s`, `45s`: how messages show a duration."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class TimeBudget:
    """The run's clock against its budget (`seconds`; None: no budget, the clock only counts).

    `tick()` reads the clock once before each step; everything else works from that reading,
    so the processes of a distributed run, given one agreed `clock`, decide alike. The time a
    step takes is measured over the steps since the first `WARMUP` ones (which pay for the
    loader's start and first allocations), including whatever ran between them (evaluation,
    samples, checkpoints), so the estimate of the steps still to come corrects itself as the
    run goes on."""

    WARMUP = 3

    def __init__(self, seconds: float | None, used: float = 0.0, steps: int = 0,
                 max_steps: int | None = None, clock: Callable[[float], float] | None = None):
        # `used` seconds went into the `steps` done before this session (a resumed run).
        self.seconds, self.used_before, self.steps_before = seconds, used, steps
        self.max_steps = max_steps
        # `clock(seconds this process measured)` -> the seconds the run agrees on.
        self.clock = clock or (lambda seconds: seconds)
        self._started: float | None = None
        self._ticks, self._now = 0, 0.0
        self._mark: tuple[int, float] | None = None

    @property
    def active(self) -> bool:
        return self.seconds is not None

    def start(self) -> None:
        """The loop starts (again, after a resume): time from here on adds to `used_before`."""
        self._started = time.perf_counter()
        self._ticks, self._now, self._mark = 0, 0.0, None

    @property
    def used(self) -> float:
        """Seconds of training so far, this session's included (read now, not at the tick)."""
        if self._started is None:
            return self.used_before
        return self.used_before + time.perf_counter() - self._started

    def tick(self) -> None:
        """Read the clock before a step."""
        self._now = self.clock(time.perf_counter() - self._started)
        if self._ticks == self.WARMUP:
            self._mark = (self._ticks, self._now)
        self._ticks += 1

    def seconds_per_step(self) -> float | None:
        """Wall time per step (and what ran between steps); before this session's first step,
        the mean of the sessions before (None for a new run)."""
        done = self._ticks - 1  # steps completed before this tick
        if self._mark is not None and done > self._mark[0]:
            return (self._now - self._mark[1]) / (done - self._mark[0])
        # Until the warm-up steps are past, a resumed run trusts the sessions before: this
        # session's first steps carry its start-up (loader, first graph), and taking them for
        # the step time ended a resumed 10 s remainder after 4 s.
        if self.steps_before:
            return self.used_before / self.steps_before
        return self._now / done if done > 0 else None

    def left(self) -> float:
        """Seconds of the budget left at the last tick (infinite without a budget)."""
        if self.seconds is None:
            return math.inf
        return self.seconds - self.used_before - self._now

    def spent(self) -> bool:
        """Not even the step about to run fits (a resumed run that had used its budget)."""
        if not self.active:
            return False
        per_step = self.seconds_per_step()
        return self.left() <= 0 or (per_step is not None and self.left() < per_step)

    def last_step(self) -> bool:
        """Whether the step about to run is the last that fits: after it, another would end
        past the budget. The run so ends within one step of its budget."""
        if not self.active:
            return False
        per_step = self.seconds_per_step()
        return self.left() < (2 * per_step if per_step is not None else 0.0)

    def fraction(self, done: int) -> float:
        """How far through the run training will be after the step about to run (`done`: the
        step count then), from 0 to 1: `done` over the steps the budget allows, estimated at
        the measured rate as `done` plus the whole steps that will still start after this one
        (one follows while two steps' time is left; see `last_step`), and no more than
        `max_steps`. It is 1 on the last step. Before any step is measured: the share of the
        time used."""
        if not self.active:
            return 0.0
        per_step = self.seconds_per_step()
        if per_step is None or per_step <= 0:
            return min(1.0, max(0.0, 1 - self.left() / self.seconds))
        # The epsilon keeps a rate that divides the time left exactly from losing a step.
        total = done + max(0, math.floor((self.left() - per_step) / per_step + 1e-9))
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        return min(1.0, done / total) if total > 0 else 1.0
