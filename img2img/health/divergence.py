"""The divergence monitor: it reads each training log record, compares every loss term and
gradient norm with its own recent history, and tells the trainer to go on, to roll back to the
last healthy checkpoint with lower learning rates, or, after too many rollbacks, to stop.

The rule: a value is divergent when its key has at least `warmup` earlier values and
|value| > `factor` x max(median of |last `window` values|, `floor`) (`grad_factor` for gradient
norms), or when it is NaN/inf.
A record is divergent when any of its values is. `confirm` divergent records in a row roll
back (a non-finite value at once): single-step gradient norms are heavy-tailed, and one
spike that the next record does not repeat is noise, not divergence. Divergent values never
enter the history, so a spike cannot raise the bar it is judged by."""
from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

from .advice import suggestions
from .keys import GRAD_PREFIX, LOSS_PREFIXES

FACTOR = 10.0       # far above the 2-3x swings of healthy GAN losses
# A gradient norm is one step's, not an interval's mean: healthy runs show 100x swings between
# records (a discriminator's 0.8 to 93 within 25 steps of a tiny pix2pix on the bundled faces).
GRAD_FACTOR = 1000.0
WARMUP = 10         # records per key before it is judged: early training moves fast
WINDOW = 20         # records of history per key: a median robust to a few outliers
CONFIRM = 2         # divergent records in a row that trigger a rollback (the issue: "within two")
FLOOR = 1.0         # |values| <= 10 never diverge: GAN losses swing between ~0.01 and a few units
MAX_ROLLBACKS = 3
LR_DROP = 0.5       # each rollback halves the learning rates

OK, ROLLBACK, STOP = "ok", "rollback", "stop"


@dataclass(frozen=True)
class Decision:
    """What the trainer should do after a record: `action` is OK, ROLLBACK or STOP; `signals`
    names the divergent keys (empty when none); `message` is one line for the log."""

    action: str
    signals: tuple[str, ...] = ()
    message: str = ""


def watched(record: Mapping[str, Any]) -> dict[str, float]:
    """The loss terms (g/..., d/...) and gradient norms (grad/...) of a log record."""
    return {key: float(value) for key, value in record.items()
            if key.startswith((*LOSS_PREFIXES, GRAD_PREFIX))
            and isinstance(value, (int, float)) and not isinstance(value, bool)}


class DivergenceMonitor:
    """Judges training log records for divergence (rule in the module docstring).

    Call `check(record)` with each record the trainer logs. On ROLLBACK: restore the last
    checkpoint saved while `healthy` was True, call `rewind(state)` with the monitor state
    saved in it, and scale the base learning rates by `lr_factor`. `state_dict()` goes into
    every checkpoint; `load_state_dict()` restores it on resume.
    """

    def __init__(self, factor: float = FACTOR, warmup: int = WARMUP, window: int = WINDOW,
                 confirm: int = CONFIRM, max_rollbacks: int = MAX_ROLLBACKS,
                 floor: float = FLOOR, config: Mapping[str, Any] | None = None,
                 grad_factor: float = GRAD_FACTOR):
        if factor <= 1 or warmup < 1 or window < 1 or confirm < 1 or max_rollbacks < 0:
            raise ValueError(f"need factor > 1, warmup, window, confirm >= 1 and max_rollbacks "
                             f">= 0; got {factor}, {warmup}, {window}, {confirm}, {max_rollbacks}")
        self.factor, self.warmup, self.window = factor, warmup, window
        self.grad_factor = grad_factor
        self.confirm, self.max_rollbacks, self.floor = confirm, max_rollbacks, floor
        self.config = config  # the run's settings record, so advice names flags with values
        self.history: dict[str, list[float]] = {}
        self.suspect = 0       # divergent records in a row so far
        self.rollbacks = 0
        self.counts: Counter[str] = Counter()  # how often each key diverged, over rollbacks

    @property
    def healthy(self) -> bool:
        """False while a divergent record awaits confirmation: a checkpoint saved now is not
        one to roll back to."""
        return self.suspect == 0

    @property
    def lr_factor(self) -> float:
        """The factor on the base learning rates after the rollbacks so far."""
        return LR_DROP ** self.rollbacks

    def divergent(self, values: Mapping[str, float]) -> dict[str, str]:
        """{key: why} for the values that diverge from their history."""
        found = {}
        for key, value in values.items():
            past = self.history.get(key, [])
            if len(past) < self.warmup:
                continue
            typical = statistics.median(abs(v) for v in past)
            factor = self.grad_factor if key.startswith(GRAD_PREFIX) else self.factor
            bar = factor * max(typical, self.floor)
            if not math.isfinite(value):
                found[key] = f"{key} is {value}"
            elif abs(value) > bar:
                found[key] = (f"{key} {value:.4g} is {abs(value) / max(typical, 1e-30):.0f}x "
                              f"its recent median {typical:.4g}")
        return found

    def check(self, record: Mapping[str, Any]) -> Decision:
        """Judge one record (keys without g/, d/ or grad/ are ignored)."""
        values = watched(record)
        if not values:
            return Decision(OK)  # an evaluation line: neither evidence nor all-clear
        bad = self.divergent(values)
        if not bad:
            self.suspect = 0
            for key, value in values.items():
                if math.isfinite(value):
                    self.history[key] = (self.history.get(key, []) + [value])[-self.window:]
            return Decision(OK)
        self.suspect += 1
        signals = tuple(bad)
        at = f"step {record.get('step', '?')}: {'; '.join(bad.values())}"
        finite = all(math.isfinite(values[key]) for key in bad)
        if self.suspect < self.confirm and finite:
            return Decision(OK, signals, f"{at} (watching: a rollback if the next record agrees)")
        self.suspect = 0
        self.counts.update(signals)
        if self.rollbacks >= self.max_rollbacks:
            return Decision(STOP, signals, self._stop_message(at))
        self.rollbacks += 1
        return Decision(ROLLBACK, signals,
                        f"{at}; rolling back to the last healthy checkpoint with the learning "
                        f"rates x{self.lr_factor:g} (rollback {self.rollbacks} of at most "
                        f"{self.max_rollbacks})")

    def _stop_message(self, at: str) -> str:
        signal, times = self.counts.most_common(1)[0]
        return (f"training kept diverging: {signal} ran away {times} time(s) and "
                f"{self.rollbacks} rollback(s) with lower learning rates did not help ({at}); "
                f"try " + "; or ".join(suggestions(signal, self.config)))

    def rewind(self, state: Mapping[str, Any]) -> None:
        """After a rollback: take the history saved with the restored checkpoint, but keep the
        rollback count and what diverged, which the checkpoint predates."""
        rollbacks, counts = self.rollbacks, self.counts
        self.load_state_dict(state)
        self.rollbacks, self.counts = rollbacks, counts

    def state_dict(self) -> dict[str, Any]:
        """Plain ints, floats, strings, lists and dicts (JSON and weights-only torch.load)."""
        return {"history": {k: list(v) for k, v in self.history.items()},
                "suspect": self.suspect, "rollbacks": self.rollbacks,
                "counts": dict(self.counts)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = {k: [float(x) for x in v] for k, v in state["history"].items()}
        self.suspect = int(state["suspect"])
        self.rollbacks = int(state["rollbacks"])
        self.counts = Counter({k: int(v) for k, v in state["counts"].items()})
