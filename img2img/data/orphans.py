"""Loader processes never outlive the trainer, however it dies (kill -9 included). A worker's
parent is the forkserver, not the trainer, so torch's own watchdog (which compares the parent
pid) never fires: each worker watches the trainer's pid itself, and the forkserver, which imports
this module first, asks Linux to kill it when the trainer dies (elsewhere it polls its parent)."""
from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

POLL_S = 1.0
PR_SET_PDEATHSIG = 1
SIGKILL = 9


def is_alive(pid: int) -> bool:
    """Whether process `pid` runs (a killed process its parent has not reaped yet is a zombie:
    gone for our purposes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(pid, 0) is all we can know


def exit_when_gone(pid: int) -> None:
    """End this process, at once and without cleanup, within a second of `pid` ending."""
    def watch() -> None:
        while is_alive(pid):
            time.sleep(POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="img2img-orphan-guard", daemon=True).start()


def _guard_this_process() -> None:
    """Run at import in the forkserver: die with the parent (the trainer)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0 and os.getppid() == parent:
                return
        except (OSError, AttributeError):
            pass
    exit_when_gone(parent)


if os.environ.get("IMG2IMG_FORKSERVER") == "1":  # set only for the forkserver we start
    _guard_this_process()
