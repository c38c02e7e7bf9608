"""Stopping a long loop from outside: Ctrl-C (SIGINT) or SIGTERM, which SLURM, Kubernetes,
Docker, systemd and torchrun's agent send before they kill. The first asks the loop to stop after
the current step (so it can save a checkpoint); a second Ctrl-C stops at once."""
from __future__ import annotations

import signal
import sys
from typing import Any

from tqdm import tqdm

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt:
    """The first SIGINT or SIGTERM asks the loop to stop after the current step (`requested`,
    and `signal` says which); a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "Interrupt":
        for number in SIGNALS:
            try:
                self._previous[number] = signal.signal(number, self._handle)
            except ValueError:  # not the main thread: leave the signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return  # a repeated SIGTERM: the checkpoint is already on its way
        self.requested, self.signal = True, signum
        again = " (Ctrl-C again to abort)" if signum == signal.SIGINT else ""
        tqdm.write(f"{signal.Signals(signum).name}: saving a checkpoint after this step{again}",
                   file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}
