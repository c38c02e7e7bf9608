"""Experiment trackers: the `Logger` interface every tracker implements, the built-in TensorBoard
and Weights & Biases loggers, and `RunLog`, what the trainer writes to (the run's own
`metrics.jsonl` plus every logger `--logger` named). A plugin adds a tracker (MLflow, say) by
registering a `Logger` subclass through the `register_loggers` hook."""
from __future__ import annotations

import abc
import json
import math
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.atomic import write_text
from ..errors import Img2ImgError, SettingsError
from ..runs import folders as runs

NONE = "none"  # `--logger none`: the run's own metrics.jsonl only


class Logger(abc.ABC):
    """An experiment tracker for one run. Subclasses set `name` (the `--logger` value) and
    implement the `log_*` methods; `check()` runs before the run folder exists, so a tracker
    whose package is missing refuses the run without leaving anything behind.

    `run_dir` is the run folder; `resumed_at` is the step a resumed run continues from (None
    for a new run): a tracker that can, drops what it logged after that step, as `metrics.jsonl`
    does. Images are HxWx3 uint8 RGB arrays; scalars are floats keyed like `g/l1`, `eval/psnr`."""

    name: str = ""

    def __init__(self, run_dir: Path, resumed_at: int | None = None):
        self.run_dir, self.resumed_at = run_dir, resumed_at

    @classmethod
    def check(cls) -> None:
        """Raise `Img2ImgError` when the tracker cannot work here (e.g. its package is
        missing), naming what to install."""

    @abc.abstractmethod
    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Scalars of one step (losses, learning rate, evaluation metrics)."""

    @abc.abstractmethod
    def log_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Named images of one step (the sample grid)."""

    @abc.abstractmethod
    def log_hparams(self, settings: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """The run's settings (flat, `training.lr`, `options.ngf`) beside its final metrics."""

    def close(self) -> None:
        """Flush and release; called once when training ends."""


def _import(module: str, missing: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise Img2ImgError(missing) from None


TENSORBOARD_MISSING = ("--logger tensorboard needs the tensorboard extra: "
                       "pip install 'img2img[tensorboard]'")
WANDB_MISSING = "--logger wandb needs the wandb extra: pip install 'img2img[wandb]'"


class TensorBoardLogger(Logger):
    """Event files in `RUN/tensorboard`: scalars, the sample grids as images, and the settings
    in the HParams tab beside the final metrics. A resumed run appends to the same folder."""

    name = "tensorboard"

    @classmethod
    def check(cls) -> None:
        _import("torch.utils.tensorboard", TENSORBOARD_MISSING)

    def __init__(self, run_dir: Path, resumed_at: int | None = None):
        super().__init__(run_dir, resumed_at)
        tensorboard = _import("torch.utils.tensorboard", TENSORBOARD_MISSING)
        # purge_step hides the events a crashed run wrote after its last checkpoint (it drops
        # steps >= purge_step, and the checkpoint's own step was logged before it was saved).
        purge = None if resumed_at is None else resumed_at + 1
        self.writer = tensorboard.SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        for key, image in images.items():
            self.writer.add_image(key, image, step, dataformats="HWC")
        self.writer.flush()

    def log_hparams(self, settings: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # Written into this run's own event file (add_hparams would open a sub-run folder).
        shown = {f"final/{k}": v for k, v in metrics.items()}
        for summary in hparams({k: _hparam(v) for k, v in settings.items()}, shown):
            self.writer.file_writer.add_summary(summary)
        for key, value in shown.items():
            self.writer.add_scalar(key, value)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _hparam(value: Any) -> int | float | str | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    return NONE if value is None else str(value)


class WandbLogger(Logger):
    """A Weights & Biases run in `RUN/wandb`, resumed by a resumed run (its id is kept in
    `RUN/wandb-id`). Where it sends data is wandb's own setting: `WANDB_MODE=offline` keeps
    everything on disk (`wandb sync` uploads later); `WANDB_PROJECT` names the project
    (default: img2img)."""

    name = "wandb"
    ID_FILE = "wandb-id"

    @classmethod
    def check(cls) -> None:
        _import("wandb", WANDB_MISSING)

    def __init__(self, run_dir: Path, resumed_at: int | None = None):
        super().__init__(run_dir, resumed_at)
        self.wandb = _import("wandb", WANDB_MISSING)
        id_file = run_dir / self.ID_FILE
        if id_file.exists():
            run_id = id_file.read_text(encoding="utf-8").strip()
        else:
            run_id = secrets.token_hex(4)  # wandb's own ids are 8 lower-case characters too
            write_text(id_file, run_id + "\n")
        project = None if os.environ.get("WANDB_PROJECT") else "img2img"
        try:
            self.run = self.wandb.init(project=project, name=run_dir.name, id=run_id,
                                       dir=str(run_dir), resume="allow",
                                       config=runs.read_config(run_dir))
        except Exception as exc:  # wandb's own errors (no login, no network) have no common base
            detail = " ".join(str(exc).split())[:200]
            raise Img2ImgError(f"--logger wandb could not start a W&B run ({detail}); run "
                               "`wandb login`, or set WANDB_MODE=offline to keep the run on "
                               "disk") from None

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def log_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        self.run.log({k: self.wandb.Image(v) for k, v in images.items()}, step=step)

    def log_hparams(self, settings: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        self.run.config.update({k: _hparam(v) for k, v in settings.items()},
                               allow_val_change=True)
        self.run.summary.update({f"final/{k}": v for k, v in metrics.items()})

    def close(self) -> None:
        self.run.finish()


BUILT_IN: dict[str, type[Logger]] = {TensorBoardLogger.name: TensorBoardLogger,
                                     WandbLogger.name: WandbLogger}


def available(registered: Mapping[str, type[Logger]] | None = None) -> dict[str, type[Logger]]:
    """The built-in loggers and the `registered` ones (a catalog's: what its plugins add), by
    name."""
    return {**BUILT_IN, **(registered or {})}


def resolve(names: Sequence[str], registered: Mapping[str, type[Logger]] | None = None
            ) -> list[type[Logger]]:
    """The logger classes `--logger` names (`none` adds nothing) among the built-in and the
    `registered` ones, each checked; an unknown name is a usage error listing the available
    ones, found before any logger's package is checked (a typo is reported as such whatever is
    installed). Called before a run folder exists."""
    known = available(registered)
    unknown = [name for name in names if name != NONE and name not in known]
    if unknown:
        listed = ", ".join([NONE, *sorted(known)])
        raise SettingsError(f"--logger {unknown[0]}: no such logger; available: {listed}")
    found: list[type[Logger]] = []
    for name in names:
        if name != NONE and known[name] not in found:
            known[name].check()
            found.append(known[name])
    return found


def flat_settings(record: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config.json as one flat mapping (`model`, `options.ngf`, `training.lr`)."""
    flat: dict[str, Any] = {"model": record.get("model"), "preset": record.get("preset")}
    for section in ("options", "spec", "training"):
        for key, value in (record.get(section) or {}).items():
            flat[f"{section}.{key}"] = value
    return flat


class RunLog:
    """What the trainer logs to: every record goes to `metrics.jsonl` and its numbers to each
    logger; sample grids go to the loggers, and their column names to `RUN/samples.json`
    (the report labels the grid's columns with them; samples/ holds only the grids)."""

    def __init__(self, run_dir: Path, loggers: Sequence[type[Logger]] = (),
                 resumed_at: int | None = None):
        self.run_dir = run_dir
        self.loggers = [cls(run_dir, resumed_at) for cls in loggers]
        self.latest: dict[str, float] = {}

    def write(self, record: Mapping[str, Any]) -> None:
        runs.append_metrics(self.run_dir, record)
        scalars = {k: float(v) for k, v in record.items()
                   if k not in ("step", "epoch", "time") and isinstance(v, (int, float))
                   and not isinstance(v, bool)}
        self.latest.update({k: v for k, v in scalars.items() if math.isfinite(v)})
        for logger in self.loggers:
            logger.log_scalars(record["step"], scalars)

    def samples(self, step: int, image: np.ndarray, columns: Sequence[str]) -> None:
        write_text(self.run_dir / runs.SAMPLE_COLUMNS,
                        json.dumps({"columns": list(columns)}) + "\n")
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        for logger in self.loggers:
            logger.log_images(step, {"samples": rgb})

    def close(self, record: Mapping[str, Any]) -> None:
        """The settings beside the final metrics (the latest of each), then close each."""
        settings = flat_settings(record)
        final = {k: v for k, v in self.latest.items() if k.startswith(("eval/", "g/", "d/"))}
        for logger in self.loggers:
            logger.log_hparams(settings, final)
            logger.close()


def logger_problem(cls: Any) -> str | None:
    """What is wrong with a logger class a plugin registers (None when it is a named
    `Logger` whose name is free)."""
    if not (isinstance(cls, type) and issubclass(cls, Logger)):
        return f"{cls!r} is not a subclass of img2img.Logger"
    if not isinstance(cls.name, str) or not re.match(r"^[a-z][a-z0-9_-]*$", cls.name):
        return f"{cls.__name__}.name must be a lower-case name, got {cls.name!r}"
    if cls.name == NONE or cls.name in BUILT_IN:
        return f"logger '{cls.name}' is built in; skipped"
    abstract = getattr(cls, "__abstractmethods__", frozenset())
    missing = [m for m in ("log_scalars", "log_images", "log_hparams") if m in abstract]
    if missing:
        return f"{cls.__name__} does not implement: {', '.join(missing)}"
    return None
