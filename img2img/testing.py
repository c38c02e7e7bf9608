"""`check_model(cls)`: the contract test shipped for plugin authors. It builds the model at 32 px
with its `smoke_options`, trains a few steps through the real trainer on generated images, and
checks what every model owes its users: finite losses, generator, discriminator and auxiliary
weights that move, outputs of the right shape, and a checkpoint that rebuilds the same model."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .model import Model
from .registry import catalog as registry
from .runs import checkpoints, folders as runs
from .runs.checkpoints import model_from_checkpoint
from .training.settings import TrainConfig
from .training.trainer import Trainer

__all__ = ["check_model", "write_sample_images"]


def write_sample_images(kind: str, root: Path, n: int = 4, size: int = 40,
                        channels: int = 3, seed: int = 0) -> dict[str, Path]:
    """Random-texture images laid out as `kind` data needs; returns the TrainConfig folders."""
    rng = np.random.default_rng(seed)

    def write(folder: Path, count: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size, size) if channels == 1 else (size, size, 3)
            cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, shape, np.uint8))

    if kind == "images":
        write(root, n)
        return {"data": root}
    if kind == "labelled":
        for label in ("class_0", "class_1"):
            write(root / label, n)
        return {"data": root}
    write(root / "a", n)
    write(root / "b", n)
    return {"data": root} if kind == "paired" else {"a": root / "a", "b": root / "b"}


def _snapshot(modules: torch.nn.ModuleDict) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: p.detach().clone() for k, p in m.named_parameters()}
            for name, m in modules.items()}


def _assert_moved(before: dict, modules: torch.nn.ModuleDict, what: str) -> None:
    for name, module in modules.items():
        params = dict(module.named_parameters())
        moved = any(not torch.equal(before[name][k], p.detach()) for k, p in params.items())
        assert moved, f"{what} '{name}' did not change during training"


def _check_outputs(model: Model, batch: dict[str, torch.Tensor], size: int) -> None:
    with torch.no_grad():
        fakes = model.generate(batch)
        for key, value in fakes.items():
            if value.dim() == 4:
                assert value.shape[-2:] == (size, size), f"generate()['{key}'] is {value.shape}"
                assert torch.isfinite(value).all(), f"generate()['{key}'] is not finite"
        reference = next(v for v in batch.values() if v.dim() == 4)
        for direction in model.directions:
            out = model.translate(reference, direction)
            assert out.shape[0] == reference.shape[0] and out.shape[-2:] == reference.shape[-2:], \
                f"translate(..., '{direction}') returned {tuple(out.shape)}"
        if not model.directions:
            labels = torch.arange(len(model.spec.classes) or 1).repeat(2)
            out = model.sample(labels)
            assert out.shape[0] == len(labels), f"sample() returned {tuple(out.shape)}"


def check_model(cls: type[Model], options: Any = None, *, size: int = 32, steps: int = 2,
                workdir: Path | None = None, device: str = "cpu",
                precision: str = "auto", **training: Any) -> Path:
    """Train `cls` for `steps` at `size` px and check the model contract; returns the run folder.

    `options` defaults to `cls.Options(**cls.smoke_options)`; `training` overrides TrainConfig
    fields (e.g. `compile=True`). Raises AssertionError on failure.
    """
    if options is None:
        options = cls.Options(**cls.smoke_options)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        folders = write_sample_images(cls.data_for(options), root / "data", size=size + 8)
        # As many epochs as steps: the few generated images may make an epoch a single step.
        settings = dict(epochs=steps, decay_epochs=0, max_steps=steps, batch_size=2,
                        load_size=size, crop_size=size, workers=0, log_every=1, sample_every=0,
                        checkpoint_every=0, runs_dir=root / "runs", device=device,
                        precision=precision, name="check")
        config = TrainConfig(**folders, **{**settings, **training})
        # A `logger` named in `training` may be a plugin's: those installed are looked up.
        loggers = registry.catalog().loggers if config.logger else None
        trainer = Trainer(cls, options, config, progress=False, loggers=loggers)
        model = trainer.model
        g_before, d_before = _snapshot(model.generators), _snapshot(model.discriminators)
        aux_before = _snapshot(model.auxiliary)
        run_dir = trainer.fit()
        _assert_moved(g_before, model.generators, "generator")
        _assert_moved(d_before, model.discriminators, "discriminator")
        _assert_moved(aux_before, model.auxiliary, "auxiliary network")
        records = runs.read_metrics(run_dir)
        assert len(records) == steps, f"expected {steps} metric records, got {len(records)}"
        losses = {k: v for r in records for k, v in r.items() if k.startswith(("g/", "d/"))}
        assert any(k.startswith("g/") for k in losses), "no generator loss was logged"
        assert any(k.startswith("d/") for k in losses), "no discriminator loss was logged"
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        assert not bad, f"non-finite losses: {bad}"
        model.eval()
        _check_outputs(model, trainer.fixed_batch, size)
        _check_checkpoint(cls, trainer, run_dir)
        return run_dir


@contextlib.contextmanager
def _without_tf32() -> Iterator[None]:
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def _check_checkpoint(cls: type[Model], trainer: Trainer, run_dir: Path) -> None:
    """The run's checkpoint rebuilds the trained model: options, auxiliary networks, outputs."""
    model = trainer.model
    restored = model_from_checkpoint(cls, checkpoints.resolve_checkpoint(run_dir), trainer.device)
    assert dataclasses.asdict(restored.options) == dataclasses.asdict(model.options)
    for name, net in model.auxiliary.items():  # trained with the run, so saved with it
        saved = restored.auxiliary[name].state_dict()
        assert all(torch.equal(v.cpu(), saved[k].cpu()) for k, v in net.state_dict().items()), \
            f"the checkpoint does not hold the trained auxiliary network '{name}'"
    # The trained networks may be channels-last and compiled, the rebuilt ones are neither: other
    # kernels, which sum in another order. On a CPU that is 1e-6 on outputs in [-1, 1]; on CUDA
    # the comparison runs without TF32 (which rounds convolution inputs to 10 mantissa bits,
    # ~1e-3 here) and cuDNN may pick other fp32 algorithms per layout (Winograd, FFT), so 1e-4.
    # A wrong or missing weight moves outputs by far more.
    atol = 1e-4 if trainer.device.type == "cuda" else 1e-5
    x = trainer.fixed_batch[next(k for k, v in trainer.fixed_batch.items() if v.dim() == 4)]
    with torch.no_grad(), _without_tf32():
        for direction in model.directions:
            assert torch.allclose(model.translate(x, direction), restored.translate(x, direction),
                                  atol=atol), \
                f"the checkpoint does not reproduce translate(..., '{direction}')"
