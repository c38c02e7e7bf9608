"""The run's random numbers (img2img.training.rng): which generators are seeded and restored, per-step
seeds per rank, and the trainer's use of them. The CUDA generators are stood in for by CPU
generators (`rng.cuda_generator` is the one place that reaches for a GPU's), so a CPU machine
checks the logic; tests/test_gpu.py checks it on a GPU."""
from __future__ import annotations

import random

import pytest
import torch

from img2img import Trainer

from img2img.runs import checkpoints

from img2img.training import rng
from img2img.testing import write_sample_images
from img2img.training.trainer import TrainConfig
from img2img_pix2pix import Pix2Pix

DEFAULT_SEED = torch.Generator().initial_seed()


@pytest.fixture
def gpus(monkeypatch):
    """Four stand-in GPU generators; `rng` reaches them as it would reach the real ones."""
    fakes = [torch.Generator() for _ in range(4)]
    monkeypatch.setattr(rng, "cuda_generator", lambda device: fakes[device.index])
    return fakes


def test_seeding_reaches_the_cpu_python_and_only_this_process_gpu(gpus):
    rng.seed(1234, torch.device("cuda", 2))
    assert torch.initial_seed() == 1234
    assert [g.initial_seed() for g in gpus] == [DEFAULT_SEED, DEFAULT_SEED, 1234, DEFAULT_SEED]
    first = random.random()
    rng.seed(1234, torch.device("cuda", 2))
    assert random.random() == first


def test_fork_restores_this_process_gpu_even_when_seeded_inside(gpus):
    device = torch.device("cuda", 1)
    rng.seed(5, device)
    gpus[1].manual_seed(5)
    cpu_before, gpu_before = torch.get_rng_state(), gpus[1].get_state()
    python_before = random.getstate()
    with rng.fork(device):
        rng.seed(0, device)
        torch.rand(3)
        torch.rand(3, generator=gpus[1])
        random.random()
    assert torch.equal(torch.get_rng_state(), cpu_before)
    assert torch.equal(gpus[1].get_state(), gpu_before)
    assert random.getstate() == python_before


def test_step_seeds_differ_by_step_rank_and_seed_and_repeat():
    seeds = {(s, r, t): rng.step_seed(s, r, t) for s in (0, 1) for r in (0, 1, 2)
             for t in (0, 1, 1000)}
    assert len(set(seeds.values())) == len(seeds)
    assert rng.step_seed(1, 2, 1000) == seeds[(1, 2, 1000)]
    assert all(0 <= v < 2**63 for v in seeds.values())


def _config(tmp_path, **overrides):
    folders = write_sample_images("paired", tmp_path / "data", n=4, size=40)
    settings = dict(epochs=1, decay_epochs=0, batch_size=2, load_size=36, crop_size=32,
                    workers=0, log_every=1, sample_every=0, checkpoint_every=0, device="cpu",
                    runs_dir=tmp_path / "runs", seed=3, max_steps=2)
    return TrainConfig(**folders, **{**settings, **overrides})


def test_the_trainer_never_reseeds_every_gpu(tmp_path, monkeypatch):
    """`torch.manual_seed` reseeds every visible GPU's generator (it calls manual_seed_all):
    used while the fixed batch is drawn it left the CUDA generator at seed 0 whatever --seed was,
    after a resume had restored it."""
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda value: calls.append(value))
    trainer = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options),
                      _config(tmp_path, augment_on="device"), progress=False)
    trainer.fit()
    assert calls == []


def test_each_step_is_seeded_from_seed_rank_and_step(tmp_path, monkeypatch):
    seen = []
    original = rng.seed_step
    monkeypatch.setattr(rng, "seed_step", lambda *args: (seen.append(args), original(*args)))
    trainer = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options),
                      _config(tmp_path, max_steps=3, epochs=2), progress=False)
    trainer.fit()
    assert seen == [(3, 0, step, torch.device("cpu")) for step in range(3)]


def test_a_checkpoint_holds_no_generator_state(tmp_path):
    """Nothing per GPU is saved, so a run resumes on any number of visible GPUs (restoring
    `get_rng_state_all()` of 8 GPUs where 4 are visible raised IndexError)."""
    trainer = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options), _config(tmp_path),
                      progress=False)
    run_dir = trainer.fit()
    state = checkpoints.load_state(checkpoints.resolve_checkpoint(run_dir))
    assert "rng" not in state
