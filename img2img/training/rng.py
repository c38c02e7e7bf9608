"""The random numbers of a training run. Each step draws from generators seeded afresh from
(seed, rank, step): the CPU's, Python's, and the CUDA generator of this process's own GPU. A
resumed run therefore draws exactly what an uninterrupted one drew without saving any generator
state, whatever the number of GPUs visible when it resumes, and every rank of a torchrun job has
its own stream (its own dropout masks and augmentation), resumed exactly too."""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of `step` on `rank` for a run started with `seed`. SeedSequence hashes the three
    numbers, so neighbouring steps and ranks get unrelated streams (seed + step would make run
    seed 1's step 0 replay run seed 0's step 1)."""
    state = np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))  # 63 bits: every torch and Python generator takes it


def cuda_generator(device: torch.device) -> torch.Generator:
    """The default CUDA generator of `device` itself: a single process training on cuda:1 never
    makes it the current device, so `torch.cuda.manual_seed` would seed the wrong GPU's."""
    torch.cuda.init()  # default_generators is filled on CUDA's first use
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.default_generators[index]


def generators(device: torch.device) -> list[torch.Generator]:
    """The torch generators this process draws from: the CPU's and, training on a GPU, that
    GPU's (never the other GPUs': under torchrun they belong to the other ranks)."""
    found = [torch.random.default_generator]
    if device.type == "cuda":
        found.append(cuda_generator(device))
    return found


def seed(value: int, device: torch.device) -> None:
    """Seed this process's generators (see `generators`) and Python's. Not `torch.manual_seed`,
    which reseeds every visible GPU's generator too."""
    for generator in generators(device):
        generator.manual_seed(value)
    random.seed(value)


def seed_step(run_seed: int, rank: int, step: int, device: torch.device) -> None:
    """Seed this process's generators for `step`: call before anything of the step draws."""
    seed(step_seed(run_seed, rank, step), device)


@contextlib.contextmanager
def fork(device: torch.device) -> Iterator[None]:
    """Whatever is drawn inside leaves this process's generators (and Python's) as they were.
    `torch.random.fork_rng(devices=[])` would not restore a GPU generator that is seeded inside."""
    saved = [(generator, generator.get_state()) for generator in generators(device)]
    python = random.getstate()
    try:
        yield
    finally:
        for generator, state in saved:
            generator.set_state(state)
        random.setstate(python)
