"""The DataLoader the trainer reads batches from: worker processes that start clean (forkserver),
decode on one thread each and hand batches over through shared-memory files, and an order
that comes from the seeded sampler alone, so a resumed run sees what an uninterrupted one saw."""
from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .orphans import exit_when_gone


def make_loader(dataset: Dataset, sampler: Sampler, batch_size: int, workers: int,
                pin_memory: bool, seed: int) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        pin_memory=pin_memory, persistent_workers=workers > 0,
        worker_init_fn=functools.partial(_worker_init, os.getpid()) if workers else None,
        # Workers start from a clean forkserver process, not a fork of this one: a fork
        # taken while OpenCV's or OpenMP's thread pool is running can deadlock the worker.
        multiprocessing_context=_worker_context() if workers else None,
        # Its own generator: creating an iterator must not consume the global RNG, or a
        # resumed run would drift from an uninterrupted one.
        generator=torch.Generator().manual_seed(seed))


def _worker_context() -> Any:
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    # The forkserver imports the guard first, so it dies with the trainer (see orphans).
    context.set_forkserver_preload(["img2img.data.orphans"])
    os.environ["IMG2IMG_FORKSERVER"] = "1"  # inherited by the forkserver when it starts
    return context


def _worker_init(trainer_pid: int, worker_id: int) -> None:
    """Each loader worker decodes on one thread: the workers are the parallelism. Batches go
    to the trainer through named shared-memory files instead of passed file descriptors, which
    cost two socket handshakes per tensor and made the main process the loader's bottleneck
    (1.7x -> 2x the reference's samples/s; torch's shm manager removes the files if a worker
    dies)."""
    import cv2

    exit_when_gone(trainer_pid)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.multiprocessing.set_sharing_strategy("file_system")
