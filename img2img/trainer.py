"""The one training loop every model shares. `TrainConfig` holds the settings common to all
models (each field is a `train` flag); `Trainer` owns devices, seeds, optimisers, the learning-rate
schedule, mixed precision, discriminator freezing, logging, sample grids, checkpoints and exact
resume. Models only say what to compute (see `img2img.model.Model`)."""
from __future__ import annotations

import dataclasses
import math
import random
import signal
import sys
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from . import checkpoints, runs
from .data.augment import GEOMETRY_LIMITS, AugmentRecipe
from .config import TrainConfig, autocast_dtype, lr_factor, resolve_device, split_settings
from .data import SeededSampler, open_dataset
from .ema import GeneratorAverage, using
from .errors import Img2ImgError
from .evaluate import evaluate_with_average, load_eval_set, primary_metric
from .images import save_grid
from .losses import Adversary
from .model import ImageSpec, Model
from .ops import DeviceAugment, to_model_range
from .report import write_report
from .checkpoints import (
    average_tensors,
    capture_rng,
    load_networks,
    network_tensors,
    from_record,
    restore_rng,
    settings_record,
)


class _Interrupt:
    """First Ctrl-C asks the loop to stop after the current step; a second one stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "_Interrupt":
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


class Trainer:
    """Trains one model on one dataset into one run folder; `fit()` runs the loop."""

    def __init__(self, model_cls: type[Model], options: Any, config: TrainConfig, *,
                 resume_from: Path | None = None, plugin: Mapping[str, str] | None = None,
                 preset: str | None = None,
                 progress: bool | None = None):
        self.config, self.progress = config, progress
        self.device = resolve_device(config.device)
        self.amp_dtype = autocast_dtype(config.precision, self.device)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        on_device = config.augment_on == "device"
        # With device augmentation the loader only resizes; warps, crops and flips happen batched.
        geometry = {name: getattr(config, name) for name in GEOMETRY_LIMITS}
        recipe = AugmentRecipe(config.load_size, config.load_size if on_device else config.crop_size,
                               config.flip and not on_device, config.color_jitter,
                               **({} if on_device else geometry))
        self.device_augment = DeviceAugment(config.load_size, config.crop_size, config.flip,
                                            **geometry) if on_device else None
        self.dataset = open_dataset(model_cls.data, data=config.data, a=config.a, b=config.b,
                                    channels=config.channels, recipe=recipe)
        spec = ImageSpec(config.channels, config.crop_size,
                         tuple(getattr(self.dataset, "classes", ())))
        adversary = Adversary(config.gan_loss, config.gp_weight, config.r1_weight)
        self.model = model_cls(options, spec=spec, adversary=adversary).to(self.device)
        self.channels_last = config.channels_last == "on" or (
            config.channels_last == "auto" and self.device.type == "cuda")
        self._speed_up(config)
        self.ema = GeneratorAverage(self.model.generators, config.ema) if config.ema else None
        self.optimizers = {
            "g": self._adam(self.model.generators.parameters()),
            "d": self._adam(self.model.discriminators.parameters()),
        }
        scaler_on = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=scaler_on)
        labels = getattr(self.dataset, "labels", None) if config.balance_classes else None
        if config.balance_classes and labels is None:
            raise Img2ImgError(f"--balance-classes needs labelled data (one sub-folder per "
                               f"class); '{model_cls.name}' trains on {model_cls.data} data")
        # Balanced or not, the order derives from (seed, epoch) alone, so resume stays exact.
        self.sampler = SeededSampler(len(self.dataset), config.seed, labels=labels)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best: float | None = None  # the best evaluation so far (primary metric)
        self.record = settings_record(self.model, config, plugin or {}, preset)
        if resume_from is not None:
            self.run_dir = checkpoints.run_dir_of(resume_from)
            self._restore(resume_from)
        else:
            self.run_dir = runs.create_run(config.runs_dir,
                                           config.name or runs.default_run_name(model_cls.name))
            runs.write_config(self.run_dir, self.record)
        self.metrics = runs.MetricsLog(self.run_dir, tensorboard=config.logger == "tensorboard")
        self.fixed_batch = self._fixed_batch()
        self.eval_set = load_eval_set(self.model, config.eval_data) if config.eval_every else None

    @classmethod
    def resume(cls, model_cls: type[Model], ref: str | Path = "latest", *,
               plugin: Mapping[str, str] | None = None, progress: bool | None = None,
               **overrides: Any) -> "Trainer":
        """A trainer that continues a run exactly where it stopped: `ref` is a run folder, a
        checkpoint, or "latest" (the newest run of this model under `runs_dir`). Settings come
        from the checkpoint; training settings in `overrides` (e.g. a larger `max_steps`) win;
        model options cannot change (the networks were built with the checkpoint's own)."""
        options_given, training = split_settings(model_cls, overrides)
        if options_given:
            flags = ", ".join("--" + o.replace("_", "-") for o in sorted(options_given))
            raise Img2ImgError(f"{flags}: model options cannot change when resuming (the "
                               "checkpoint's networks were built with its own options)")
        runs_dir = Path(training.get("runs_dir", TrainConfig.runs_dir))
        weights = checkpoints.resolve_checkpoint(ref, runs_dir, model=model_cls.name)
        meta = checkpoints.read_metadata(weights)
        if meta.get("model") != model_cls.name:
            raise Img2ImgError(f"--resume {ref}: {weights} is a '{meta.get('model')}' "
                               f"checkpoint, not '{model_cls.name}'")
        options = from_record(model_cls.Options, meta["options"], "model options")
        saved = from_record(TrainConfig, meta["training"], "training settings")
        print(f"Resuming {weights}", file=sys.stderr)
        return cls(model_cls, options, dataclasses.replace(saved, **training),
                   resume_from=weights, plugin=plugin, preset=meta.get("preset"),
                   progress=progress)

    def _speed_up(self, config: TrainConfig) -> None:
        """Memory format and compilation, applied to every network of every model."""
        networks = [*self.model.generators.values(), *self.model.discriminators.values()]
        for net in networks:
            if self.channels_last:
                net.to(memory_format=torch.channels_last)
            if config.compile:
                net.compile()  # in place: parameter names (and checkpoints) stay the same

    def _adam(self, params: Any) -> torch.optim.Adam:
        params = [p for p in params if p.requires_grad]
        fused = self.device.type == "cuda"
        return torch.optim.Adam(params, lr=self.config.lr,
                                betas=(self.config.beta1, self.config.beta2), fused=fused or None)

    # -- data -----------------------------------------------------------------------------------
    def _loader(self) -> torch.utils.data.DataLoader:
        workers = self.config.workers
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.config.batch_size, sampler=self.sampler,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, worker_init_fn=_worker_init if workers else None,
            # Workers start from a clean forkserver process, not a fork of this one: a fork
            # taken while OpenCV's or OpenMP's thread pool is running can deadlock the worker.
            multiprocessing_context=_worker_context() if workers else None,
            # Its own generator: creating an iterator must not consume the global RNG, or a
            # resumed run would drift from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.config.seed))

    def _to_device(self, batch: Mapping[str, Tensor], augment: bool = True) -> dict[str, Tensor]:
        moved = {}
        for key, value in batch.items():
            value = value.to(self.device, non_blocking=True)
            if value.dtype == torch.uint8:
                value = to_model_range(value)
                if self.channels_last:
                    value = value.contiguous(memory_format=torch.channels_last)
            moved[key] = value
        if augment and self.device_augment is not None:
            moved = self.device_augment(moved, paired=self.model.data == "paired")
        return moved

    def _fixed_batch(self) -> dict[str, Tensor]:
        """The same few samples for every grid, so progress is comparable step to step."""
        items = [self.dataset[(i, i)] for i in range(min(4, len(self.dataset)))]
        with torch.random.fork_rng(devices=[]):  # device crops draw here, not from the run's RNG
            torch.manual_seed(0)
            return self._to_device(torch.utils.data.default_collate(items))

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.dataset) / self.config.batch_size)

    def total_steps(self) -> int:
        total = self.config.total_epochs * self.steps_per_epoch()
        return min(total, self.config.max_steps) if self.config.max_steps else total

    # -- one optimisation step ------------------------------------------------------------------
    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _backward(self, terms: Mapping[str, Tensor], prefix: str, logged: dict[str, Tensor]) -> None:
        total = sum(terms.values())
        for key, value in terms.items():
            logged[f"{prefix}/{key}"] = value.detach().float()
        try:
            self.scaler.scale(total).backward()
        except RuntimeError as exc:
            if "backward through the graph a second time" not in str(exc):
                raise
            raise Img2ImgError(f"model '{self.model.name}': two generator loss groups share one "
                               "graph; put terms that use the same fake in the same group") from None

    def train_step(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """One generator update then one discriminator update; returns the detached terms."""
        model, logged = self.model, {}
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        model.discriminators.requires_grad_(False)
        with self._autocast():
            fakes, groups = model.generator_step(batch)
            groups = iter([groups] if isinstance(groups, Mapping) else groups)
        while True:
            with self._autocast():
                group = next(groups, None)
            if group is None:
                break
            self._backward(group, "g", logged)
            del group
        self.scaler.step(self.optimizers["g"])
        if self.ema is not None:
            self.ema.update(model.generators)
        model.discriminators.requires_grad_(True)
        fakes = {k: v.detach() for k, v in fakes.items()}
        with self._autocast():
            d_terms = model.discriminator_losses(batch, fakes)
        self._backward(d_terms, "d", logged)
        self.scaler.step(self.optimizers["d"])
        self.scaler.update()
        return logged

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train until the last epoch or `max_steps`; save a checkpoint at the end (or Ctrl-C)."""
        total = self.total_steps()
        bar = tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=self.progress is False or (self.progress is None and not
                                                       sys.stderr.isatty()))
        loader, running, started = self._loader(), {}, time.perf_counter()
        self.model.train()
        with _Interrupt() as interrupt, bar:
            while (self.step < total and self.epoch < self.config.total_epochs
                   and not interrupt.requested):
                self._start_epoch()
                for batch in loader:
                    terms = self.train_step(self._to_device(batch))
                    self.step += 1
                    self.batch_in_epoch += 1
                    for key, value in terms.items():
                        running[key] = running.get(key, 0) + value
                    bar.update(1)
                    if self.step % self.config.log_every == 0 or self.step == total:
                        self._log(running, bar, started)
                        running = {}
                    self._periodic()
                    if self.step >= total or interrupt.requested:
                        break
                else:
                    self.epoch += 1
                    self.batch_in_epoch = 0
        self.save_samples()
        weights = self.save_checkpoint()
        write_report(self.run_dir)
        state = "stopped at" if self.step < total else "finished"
        print(f"Training {state} step {self.step}/{total}; checkpoint {weights}", file=sys.stderr)
        return self.run_dir

    def _start_epoch(self) -> None:
        self.sampler.set_epoch(self.epoch, skip=self.batch_in_epoch * self.config.batch_size)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = self.config.lr * lr_factor(self.config, self.epoch)

    def _periodic(self) -> None:
        saved = False
        every = self.config.sample_every
        if every and self.step % every == 0:
            self.save_samples()
            saved = True
        every = self.config.checkpoint_every
        if every and self.step % every == 0:
            self.save_checkpoint()
            saved = True
        every = self.config.eval_every
        if every and self.step % every == 0:
            self.run_evaluation()
            saved = True
        if saved:
            write_report(self.run_dir)

    def run_evaluation(self) -> dict[str, float]:
        """Metrics on the held-out set, logged as eval/<name>; a new best is kept as RUN:best."""
        average = self.ema.average if self.ema is not None else None
        try:
            results = evaluate_with_average(self.model, average, self.eval_set)
        finally:
            self.model.train()
        self.metrics.write({"step": self.step, "epoch": self.epoch + 1,
                                           **{f"eval/{k}": v for k, v in results.items()}})
        name, higher = primary_metric(self.model)
        value = results[name]
        if self.best is None or (value > self.best if higher else value < self.best):
            self.best = value
            checkpoints.save_best(self.save_checkpoint())
        return results

    def _log(self, running: dict[str, Tensor], bar: tqdm, started: float) -> None:
        """Losses reach the host only here (no per-step synchronisation), averaged since the
        last log line."""
        steps = (self.step - 1) % self.config.log_every + 1
        losses = {k: round(float(v) / steps, 5) for k, v in running.items()}
        lr = self.optimizers["g"].param_groups[0]["lr"]
        record = {"step": self.step, "epoch": self.epoch + 1, "lr": lr,
                  "time": round(time.perf_counter() - started, 3), **losses}
        self.metrics.write(record)
        bar.set_postfix({"epoch": self.epoch + 1, **{k: f"{v:.3f}" for k, v in losses.items()}},
                        refresh=False)
        if bar.disable:
            shown = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
            print(f"step {self.step} epoch {self.epoch + 1} {shown}", file=sys.stderr, flush=True)

    # -- samples and checkpoints ----------------------------------------------------------------
    @torch.no_grad()
    def save_samples(self) -> Path:
        """Grid of the fixed batch; RNG is forked so sampling never changes the training run."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            average = self.ema.average if self.ema is not None else None
            self.model.eval()
            try:
                with using(self.model, average) as model, self._autocast():
                    fakes = model.generate(self.fixed_batch)
                    columns = model.visuals(self.fixed_batch, fakes)
            finally:
                self.model.train()
        path = self.run_dir / runs.SAMPLES / f"{checkpoints.checkpoint_stem(self.step)}.png"
        save_grid(path, columns)
        return path

    def save_checkpoint(self) -> Path:
        state = {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(), "rng": capture_rng(),
            "model": self.model.extra_state(), "best": self.best,
        }
        meta = {**self.record, "step": self.step}
        tensors = network_tensors(self.model)
        if self.ema is not None:
            tensors.update(self.ema.tensors())
        return checkpoints.save_checkpoint(self.run_dir, self.step, tensors, meta, state,
                                    keep=self.config.keep_checkpoints)

    def _restore(self, weights: Path) -> None:
        tensors = checkpoints.load_weights(weights, self.device)
        load_networks(self.model, tensors, weights)
        if self.ema is not None and average_tensors(tensors):
            self.ema.average.load_state_dict(average_tensors(tensors))
        state = checkpoints.load_state(weights)
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.model.load_extra_state({k: v.to(self.device) for k, v in state["model"].items()})
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.best = state.get("best")
        restore_rng(state["rng"])


def _worker_context() -> str | None:
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None


def _worker_init(worker_id: int) -> None:
    """Each loader worker decodes on one thread: the workers are the parallelism. Batches go
    to the trainer through named shared-memory files instead of passed file descriptors, which
    cost two socket handshakes per tensor and made the main process the loader's bottleneck
    (1.7x -> 2x the reference's samples/s; torch's shm manager removes the files if a worker
    dies)."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.multiprocessing.set_sharing_strategy("file_system")
