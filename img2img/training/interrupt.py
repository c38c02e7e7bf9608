"""Ctrl-C during a long loop: the first press asks the loop to stop after the current step (so
it can save a checkpoint), a second one stops at once."""
from __future__ import annotations

import signal
import sys
from typing import Any

from tqdm import tqdm


class Interrupt:
    """First Ctrl-C asks the loop to stop after the current step; a second one stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "Interrupt":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Interrupted: saving a checkpoint after this step (Ctrl-C again to abort)",
                   file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
