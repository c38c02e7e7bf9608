"""Training settings shared by every model: `TrainConfig` (each field is a `train` flag with its
help text and valid range), how `--help` groups them, and how settings are resolved
(`PRECEDENCE`: defaults, the IMG2IMG_* environment, the model's defaults, the preset, a config
file, what the user typed). The schedule they describe is `schedules`, the device `devices`."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch

from ..data.augment import GEOMETRY_LIMITS, geometry_error
from ..errors import Img2ImgError, SettingsError
from ..fields import check as check_ranges, option, recorded_when_set
from ..networks.losses import GAN_LOSSES
from .budget import parse_duration
from .diffaugment import parse_policy

SCHEDULES = ("linear", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Machine-wide defaults a user sets once in the shell: they replace the field defaults only.
ENVIRONMENT = {"runs_dir": "IMG2IMG_RUNS_DIR", "device": "IMG2IMG_DEVICE"}
PRECEDENCE = ("field default < IMG2IMG_RUNS_DIR / IMG2IMG_DEVICE < model default < preset < "
              "config file < typed flag")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings shared by every `img2img train <model>` command."""

    data: Path | None = option(None, "training folder (paired: a/ and b/ or side-by-side A|B "
                                     "images; labelled: one sub-folder per class; unpaired: a/ "
                                     "and b/)")
    a: Path | None = option(None, "folder of domain A images (unpaired models)")
    b: Path | None = option(None, "folder of domain B images (unpaired models)")
    epochs: int = option(100, "epochs at the initial learning rate")
    decay_epochs: int = option(100, "further epochs while the learning rate decays to zero")
    schedule: str = option("linear", "shape of the decay", choices=SCHEDULES)
    max_steps: int | None = option(None, "stop after this many steps in all (default: run all "
                                         "epochs)")
    time_budget: str | None = recorded_when_set(option(
        None, "train for this much wall-clock time: 90s, 25m, 1.5h (a plain number counts "
              "minutes), then stop with a checkpoint. The learning-rate schedule is fitted to "
              "the budget (--epochs and --decay-epochs give only the shares of constant and "
              "decaying rate; it reaches zero at the end); evaluation, samples and checkpoints "
              "count inside it, and --resume trains what is left of it"))
    batch_size: int = option(1, "images per step and process: with torchrun each of N processes "
                                "takes this many, a global batch of N x this (the learning rate is "
                                "never rescaled for it)")
    load_size: int = option(286, "resize images to this size before the random crop")
    crop_size: int = option(256, "train on random crops of this size")
    flip: bool = option(True, "random horizontal flips")
    color_jitter: float = option(0.0, "colour jitter strength, 0 to 1 (0 = off)", min=0, max=1)
    scale_jitter: float = option(0.0, "random zoom by a factor from [1 - S, 1 + S], S up to 0.5, "
                                      "before the crop; edges are replicated (0 = off)")
    rotate: float = option(0.0, "random rotation by up to this many degrees either way, up to 180 "
                                "(0 = off)")
    shear: float = option(0.0, "random horizontal shear (slant) by up to this many degrees either "
                               "way, up to 45 (0 = off)")
    elastic: float = option(0.0, "elastic distortion strength, 0 to 1: a smooth random warp moving "
                                 "pixels by strength x 5% of the image side on average, e.g. 0.3 "
                                 "moves a 64 px image ~1 px (0 = off)")
    channels: int = option(3, "image channels: 1 (grey) or 3 (colour)", choices=(1, 3))
    balance_classes: bool = option(False, "labelled data: draw every class equally often in each "
                                          "epoch, however many images it has")
    lr: float = option(2e-4, "Adam learning rate", gt=0)
    lr_d: float | None = option(None, "the discriminators' own learning rate (two time-scale "
                                      "update rule, Heusel et al. 2017; default: --lr)", gt=0)
    warmup_steps: int = option(0, "raise the learning rates linearly from near zero over the first "
                                  "N steps (0 = off)", min=0)
    beta1: float = option(0.5, "Adam beta1", min=0, max=0.9999)
    beta2: float = option(0.999, "Adam beta2", min=0, max=0.99999)
    gan_loss: str = option("vanilla", "adversarial objective", choices=GAN_LOSSES)
    diff_augment: str = option("none", "differentiable augmentation of every discriminator input, "
                                       "real and fake (DiffAugment, Zhao et al. 2020; helps most "
                                       "on a few dozen images): a comma-separated list of color, "
                                       "translation, cutout, or none")
    ada: bool = option(False, "adaptive discriminator augmentation (Karras et al. 2020): each "
                              "DiffAugment op (those of --diff-augment, or all) applies with a "
                              "probability that follows the discriminator's overfitting sign r_t "
                              "towards 0.6; for small datasets")
    max_rollbacks: int = option(3, "when losses or gradient norms run away from their recent "
                                   "history, roll back to the last healthy point with halved "
                                   "learning rates, at most N times, then stop (0 = stop at the "
                                   "first divergence)", min=0)
    temporal_weight: float = option(0.0, "temporal stability for video: weight of a loss asking "
                                         "the generator to commute with small random warps of "
                                         "its input, G(T(x)) ~ T(G(x)) (Eilertsen et al. 2019; "
                                         "no video data needed; 0 = off)", min=0)
    gp_weight: float = option(10.0, "gradient penalty weight (wgan-gp)", min=0)
    r1_weight: float = option(0.0, "R1 penalty weight on real images (0 = off)", min=0)
    ema: float = option(0.0, "keep a moving average of the generator weights with this decay, e.g. "
                             "0.999, used for samples and convert (0 = off)")
    init_from: Path | None = option(None, "start from the weights of this run or checkpoint (e.g. "
                                          "one `img2img import` made) with a fresh optimiser and "
                                          "schedule; model options and --channels default to "
                                          "that run's")
    device: str = option("auto", "cuda, cuda:N, mps, cpu, or auto (the best available)")
    precision: str = option("auto", "auto = bf16/fp16 mixed precision on CUDA, fp32 elsewhere",
                            choices=PRECISIONS)
    channels_last: str = option("auto", "channels-last memory format (auto = on CUDA, for the "
                                        "networks without instance norm, which returns NCHW)",
                                choices=("auto", "on", "off"))
    compile: bool = option(False, "compile the networks with torch.compile (slower start, faster "
                                  "steps on a GPU)")
    augment_on: str = option("cpu", "where random warps, crops and flips run: cpu (loader "
                                    "workers) or device (kornia, batched on the training device)",
                             choices=("cpu", "device"))
    seed: int = option(0, "random seed (data order, augmentation, initial weights)")
    noise_dim: int = recorded_when_set(option(
        0, "feed the generators N noise values (tiled extra input channels, or the injection a "
           "generator declares) so one input can give several outputs (0 = off: the networks "
           "and checkpoints are exactly as without it)", min=0))
    mode_seeking: float = recorded_when_set(option(
        0.0, "weight of the mode-seeking term (MSGAN, Mao et al. 2019) that rewards different "
             "outputs for different noise; needs --noise-dim (0 = off)", min=0))
    latent_regression: float = recorded_when_set(option(
        0.0, "weight of latent regression (BicycleGAN's cLR): a small encoder must recover the "
             "noise from the output; needs --noise-dim (0 = off)", min=0))
    workers: int = option(2, "data-loading worker processes (0 = load in the main process)")
    max_bad_samples: int | None = option(None, "training images that may become unreadable during "
                                               "the run (each skipped with a warning) before it "
                                               "stops (default: 1% of the dataset, at least 1)",
                                         min=0)
    sync_batch_norm: bool = option(False, "with torchrun on GPUs: batch-norm statistics over the "
                                          "global batch rather than each process's own")
    dist_timeout: float = option(900.0, "with torchrun: seconds a process waits for the others "
                                        "before the run stops with an error (a lost process never "
                                        "hangs the rest)")
    logger: tuple[str, ...] = option((), "experiment tracker, repeatable: tensorboard (extra "
                                         "tensorboard), wandb (extra wandb), one a plugin adds, or "
                                         "none; metrics.jsonl and the report are always written")
    log_every: int = option(50, "log losses every N steps")
    sample_every: int = option(500, "save a sample grid every N steps (0 = only at the end)")
    checkpoint_every: int = option(2000, "save a checkpoint every N steps (0 = only at the end)")
    eval_every: int = option(0, "evaluate on --eval-data every N steps, log the metrics and keep "
                                "the best checkpoint as RUN:best (0 = off)")
    eval_data: Path | None = option(None, "held-out data for --eval-every, in the training layout")
    keep_checkpoints: int = option(3, "keep the newest N checkpoints (0 = keep all)")
    runs_dir: Path = option(Path("runs"), "folder that holds run folders")
    name: str | None = option(None, "run folder name (default: <model>-<date>-<time>)")

    def __post_init__(self) -> None:
        for name in ("data", "a", "b", "runs_dir", "eval_data", "init_from"):  # str from Python
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        # One name (Python, a config.json from before --logger repeated) or several; "none" adds
        # nothing. Which names exist is known once plugins are loaded (loggers.resolve).
        names = (self.logger,) if isinstance(self.logger, str) else tuple(self.logger)
        object.__setattr__(self, "logger", tuple(dict.fromkeys(n for n in names if n != "none")))
        positive = ("epochs", "batch_size", "load_size", "crop_size", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("decay_epochs", "workers", "sample_every", "checkpoint_every",
                     "keep_checkpoints", "eval_every"):
            if getattr(self, name) < 0:
                raise SettingsError(f"--{name.replace('_', '-')} must not be negative")
        if self.eval_every and self.eval_data is None:
            raise SettingsError("--eval-every needs --eval-data DIR (held-out images)")
        try:
            parse_policy(self.diff_augment)
        except ValueError as error:
            raise SettingsError(f"--diff-augment: {error}") from None
        if (self.mode_seeking or self.latent_regression) and not self.noise_dim:
            raise SettingsError("--mode-seeking and --latent-regression need a noise input: "
                                "set --noise-dim N (e.g. 8)")
        if self.dist_timeout <= 0:
            raise SettingsError("--dist-timeout must be a positive number of seconds")
        if not 0.0 <= self.ema < 1.0:
            raise SettingsError(f"--ema must be 0 (off) or a decay in (0, 1), got {self.ema}")
        if self.time_budget is not None:
            self._check_time_budget()
        if self.max_steps is not None and self.max_steps < 1:
            raise SettingsError("--max-steps must be at least 1")
        if self.load_size < self.crop_size:
            raise SettingsError(f"--load-size ({self.load_size}) must be at least --crop-size "
                               f"({self.crop_size})")
        for name in GEOMETRY_LIMITS:
            message = geometry_error(name, getattr(self, name))
            if message:
                raise SettingsError(message)
        check_ranges(self)

    def _check_time_budget(self) -> None:
        """A number from Python counts minutes, as on the command line; kept as text ("25m")."""
        value = self.time_budget
        try:
            parse_duration(value)
        except ValueError as error:
            raise SettingsError(f"--time-budget {value}: {error}") from None
        if not isinstance(value, str):
            object.__setattr__(self, "time_budget", f"{value:g}m")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.decay_epochs

    @property
    def budget_seconds(self) -> float | None:
        """The time budget in seconds, or None without one."""
        return None if self.time_budget is None else parse_duration(self.time_budget)


# How `img2img train MODEL --help` groups the training settings (after the model's own options).
SECTIONS = {
    "Data": ("data", "a", "b", "channels", "balance_classes", "max_bad_samples"),
    "Augmentation": ("load_size", "crop_size", "flip", "color_jitter", "scale_jitter", "rotate",
                     "shear", "elastic", "augment_on"),
    "Optimisation": ("epochs", "decay_epochs", "schedule", "max_steps", "time_budget",
                     "batch_size", "lr",
                     "lr_d", "warmup_steps", "beta1", "beta2", "gan_loss", "diff_augment",
                     "ada", "max_rollbacks", "temporal_weight", "gp_weight", "r1_weight", "ema",
                     "init_from", "seed"),
    "Noise input and several outputs": ("noise_dim", "mode_seeking", "latent_regression"),
    "Logging, evaluation and checkpoints": ("logger", "log_every", "sample_every",
                                            "checkpoint_every", "eval_every", "eval_data",
                                            "keep_checkpoints", "runs_dir", "name"),
    "Speed and device": ("device", "precision", "channels_last", "compile", "workers",
                         "sync_batch_norm", "dist_timeout"),
}
SECTION_OF = {field: section for section, fields in SECTIONS.items() for field in fields}


def training_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def split_settings(model_cls: Any, settings: Mapping[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """`settings` by name -> (model options, training settings); an unknown name is an error
    that lists what the model takes."""
    option_names = {f.name for f in dataclasses.fields(model_cls.Options)}
    training_names = set(training_fields())
    unknown = sorted(set(settings) - option_names - training_names)
    if unknown:
        raise Img2ImgError(f"unknown setting(s) for {model_cls.name}: {', '.join(unknown)}; "
                           f"its options: {', '.join(sorted(option_names)) or 'none'}; training "
                           f"settings: {', '.join(sorted(training_names))}")
    return ({k: v for k, v in settings.items() if k in option_names},
            {k: v for k, v in settings.items() if k in training_names})


def environment_defaults(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The training settings the IMG2IMG_* variables of `env` (default: os.environ) set."""
    env = os.environ if env is None else env
    found: dict[str, Any] = {}
    for name, variable in ENVIRONMENT.items():
        value = env.get(variable, "").strip()
        if value:
            found[name] = Path(value) if name == "runs_dir" else value
    device = found.get("device", "auto")
    if device != "auto":
        try:
            torch.device(device)
        except RuntimeError:
            raise SettingsError(f"{ENVIRONMENT['device']}={device} is not a device (cuda, "
                                "cuda:N, mps, cpu, auto)") from None
    return found


def resolve_settings(model_cls: Any, preset: Any = None,
                     file_settings: Mapping[str, Any] | None = None,
                     **settings: Any) -> tuple[Any, TrainConfig]:
    """The model options and `TrainConfig` a new run trains with. Precedence (`PRECEDENCE`):
    field default < the IMG2IMG_* environment < the model's `training_defaults` < the preset's
    values < `file_settings` (a config file's) < `settings` (what the user gave: typed flags on
    the command line, keyword arguments from Python)."""
    options, training = split_settings(model_cls, {**(file_settings or {}), **settings})
    preset_options = dict(preset.options) if preset is not None else {}
    preset_training = dict(preset.training) if preset is not None else {}
    try:
        model_options = model_cls.Options(**{**preset_options, **options})
    except TypeError as exc:
        raise SettingsError(f"{model_cls.name} options: {exc}") from None
    check_ranges(model_options)
    config = TrainConfig(**{**environment_defaults(), **dict(model_cls.training_defaults),
                            **preset_training, **training})
    return model_options, config
