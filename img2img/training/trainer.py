"""The one training loop every model shares, with the settings common to all models
(`TrainConfig`, in `settings`): `Trainer` owns devices, seeds, optimisers, the learning-rate
schedule, mixed precision, discriminator freezing, logging, sample grids, checkpoints and exact
resume. Models only say what to compute (see `img2img.model.Model`); where the loop stands is
its `TrainingState` (`state`)."""
from __future__ import annotations

import dataclasses
import logging
import math
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

from ..data import SeededSampler, open_dataset
from ..data.augment import GEOMETRY_LIMITS, AugmentRecipe
from ..data.device_augment import DeviceAugment
from ..data.images import save_grid
from ..data.loader import make_loader
from ..data.ops import to_model_range
from ..errors import CheckpointError, DataError, Img2ImgError, SettingsError
from ..health import OK, STOP, Decision, NonFiniteSteps
from ..health.keys import D_ACC_FAKE, D_ACC_REAL
from ..evaluation.evaluate import evaluate, load_eval_set, primary_metric
from ..fields import check as check_ranges
from ..model import ImageSpec, Model
from ..networks.losses import Adversary
from ..networks.noise import begin_noise_step, install_noise, with_noise_terms
from ..runs import checkpoints, folders as runs
from ..runs.checkpoints import settings_record
from ..runs.report import write_report
from . import diffaugment, distributed, rng, speed
from .budget import TimeBudget, format_duration
from .temporal import TemporalLoss
from .devices import autocast_dtype, resolve_device
from .ema import GeneratorAverage, using
from .interrupt import Interrupt
from .loggers import Logger, RunLog, resolve as resolve_loggers
from .schedules import budget_factor, lr_factor, warmup_factor
from .settings import TrainConfig
from .state import TrainingState, new_run, restore, resume_settings, save, start_from
from .watch import (
    HealthWatch, install as watch_health, measure_diversity, plugin_signals, restore_snapshot,
    take_snapshot,
)


log = logging.getLogger("img2img")

def _check_discriminator_sizes(model: Model, crop_size: int) -> None:
    """A discriminator that declares `minimum_size` (the PatchGANs do) must fit the crops,
    checked before any run folder exists."""
    for name, net in model.discriminators.items():
        needed = getattr(net, "minimum_size", None)
        if needed is not None and crop_size < needed:
            raise SettingsError(f"--crop-size {crop_size} is too small for discriminator "
                                f"'{name}' of '{model.name}', which needs at least {needed} px "
                                "(fewer --d-layers or --d-scales, or larger crops)")


class Trainer:
    """Trains one model on one dataset into one run folder; `fit()` runs the loop."""

    def __init__(self, model_cls: type[Model], options: Any, config: TrainConfig, *,
                 resume_from: Path | None = None, plugin: Mapping[str, str] | None = None,
                 preset: str | None = None, progress: bool | None = None,
                 loggers: Mapping[str, type[Logger]] | None = None):
        check_ranges(options)  # before anything is opened or written
        # `loggers`: those a catalog's plugins registered, beside the built-in ones; resolved
        # before any run folder exists.
        self.logger_classes = resolve_loggers(config.logger, loggers)
        self.config, self.progress = config, progress
        self.processes = distributed.from_environment()
        self.device = distributed.local_device(self.processes, resolve_device(config.device))
        distributed.start(self.processes, self.device, config.dist_timeout)
        if not self.processes.is_main:  # other ranks print nothing unless they fail
            logging.getLogger("img2img").setLevel(logging.ERROR)
        self.amp_dtype = autocast_dtype(config.precision, self.device)
        rng.seed(config.seed, self.device)  # the initial weights; each step reseeds (rng)
        on_device = config.augment_on == "device"
        # With device augmentation the loader only resizes; warps, crops and flips happen batched.
        geometry = {name: getattr(config, name) for name in GEOMETRY_LIMITS}
        recipe = AugmentRecipe(config.load_size, config.load_size if on_device else config.crop_size,
                               config.flip and not on_device, config.color_jitter,
                               **({} if on_device else geometry))
        self.device_augment = DeviceAugment(config.load_size, config.crop_size, config.flip,
                                            **geometry) if on_device else None
        self.dataset = open_dataset(model_cls.data_for(options), data=config.data, a=config.a, b=config.b,
                                    channels=config.channels, recipe=recipe)
        self.dataset.substitute = True  # a file that vanishes mid-run is skipped and counted
        self.skipped: set[str] = set()
        self._in_step = self.interrupted = False
        # Set to {} before a step that will be logged: train_step puts gradient norms in it.
        self.measured: dict[str, Tensor] | None = None
        spec = ImageSpec(config.channels, config.crop_size,
                         tuple(getattr(self.dataset, "classes", ())))
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        adversary = Adversary(config.gan_loss, config.gp_weight, config.r1_weight)
        self.model = model_cls(options, spec=spec, adversary=adversary).to(self.device)
        adversary.prepare(self.model.discriminators, self.scaler, self.model.name)
        _check_discriminator_sizes(self.model, config.crop_size)
        policy = diffaugment.parse_policy(config.diff_augment)
        self.watch = HealthWatch(max_rollbacks=config.max_rollbacks, ada=config.ada,
                                 policy=policy, channels=config.channels,
                                 global_batch=config.batch_size * self.processes.world,
                                 device=self.device)
        # --ada applies the DiffAugment ops with its own probability; without it, always.
        watch_health(self.watch, adversary, self.model.discriminators.values())
        if not config.ada:
            diffaugment.install(self.model.discriminators.values(), policy, config.channels)
        install_noise(self.model, config.noise_dim, config.mode_seeking, config.latent_regression)
        # --temporal-weight: one more generator term for every model (training/temporal.py).
        self.temporal = TemporalLoss(config.temporal_weight) if config.temporal_weight else None
        if config.init_from is not None and resume_from is None:
            start_from(self.model, config.init_from, config.runs_dir, self.processes.is_main)
        self.channels_last = speed.speed_up(self.model, config.channels_last, self.device,
                                            config.compile)
        if config.sync_batch_norm and self.device.type != "cuda":
            raise Img2ImgError("--sync-batch-norm needs CUDA GPUs (PyTorch's SyncBatchNorm runs "
                               "on GPUs only); on CPUs each process keeps its own statistics")
        if self.processes.distributed:
            distributed.prepare_model(self.model, self.device, config.sync_batch_norm)
        self.ema = GeneratorAverage(self.model.generators, config.ema) if config.ema else None
        self.optimizers = {
            # Auxiliary networks (a projection head) learn with the generators, step for step.
            "g": self._adam([*self.model.generators.parameters(),
                             *self.model.auxiliary.parameters()]),
            "d": self._adam(self.model.discriminators.parameters()),
        }
        # TTUR: the discriminators may learn at their own rate; warm-up and decay scale both.
        self.base_lr = {"g": config.lr, "d": config.lr if config.lr_d is None else config.lr_d}
        labels = getattr(self.dataset, "labels", None) if config.balance_classes else None
        if config.balance_classes and labels is None:
            raise Img2ImgError(f"--balance-classes needs labelled data (one sub-folder per "
                               f"class); '{model_cls.name}' trains on {model_cls.data} data")
        # Balanced or not, the order derives from (seed, epoch) alone, so resume stays exact.
        self.sampler = SeededSampler(len(self.dataset), config.seed, labels=labels,
                                     rank=self.processes.rank, world=self.processes.world,
                                     batch_size=config.batch_size)
        if self.sampler.used == 0:
            raise Img2ImgError(f"{len(self.dataset)} training items are fewer than one global "
                               f"batch ({self.processes.world} processes x --batch-size "
                               f"{config.batch_size})")
        self.state = TrainingState()
        self.record = settings_record(self.model, config, plugin or {}, preset)
        self.record["processes"] = {"world_size": self.processes.world,
                                    "global_batch": self.processes.world * config.batch_size}
        self.watch.advise(self.record)
        if resume_from is not None:
            self.run_dir = checkpoints.run_dir_of(resume_from)
            self.state = restore(resume_from, self.model, self.optimizers, self.scaler, self.ema,
                                 device=self.device, world=self.processes.world,
                                 items=len(self.dataset), is_main=self.processes.is_main)
            self.watch.load_state_dict(self.state.health)
        else:
            self.run_dir = new_run(config, self.record, model_cls.name, self.processes)
        # A budget's clock is agreed between processes (one all-reduce a step): only with one.
        agreed = self.processes.distributed and config.budget_seconds is not None
        self.budget = TimeBudget(config.budget_seconds, self.state.elapsed, self.state.step,
                                 config.max_steps, self._agreed_seconds if agreed else None)
        # Only rank 0 writes: the run folder, logs, samples, checkpoints and the report.
        self.metrics = RunLog(self.run_dir, self.logger_classes,
                              resumed_at=self.state.step if resume_from is not None else None) \
            if self.processes.is_main else None
        self.fixed_batch = self._fixed_batch()
        self.eval_set = load_eval_set(self.model, config.eval_data) if config.eval_every else None

    def _adam(self, params: Any) -> torch.optim.Adam:
        params = [p for p in params if p.requires_grad]
        fused = self.device.type in ("cuda", "cpu")  # one kernel for all tensors (CPU: 4x)
        return torch.optim.Adam(params, lr=self.config.lr,
                                betas=(self.config.beta1, self.config.beta2), fused=fused or None)

    @classmethod
    def resume(cls, model_cls: type[Model], ref: str | Path = "latest", *,
               plugin: Mapping[str, str] | None = None, progress: bool | None = None,
               loggers: Mapping[str, type[Logger]] | None = None,
               **overrides: Any) -> "Trainer":
        """A trainer that continues a run exactly where it stopped: `ref` is a run folder, a
        checkpoint, or "latest" (the newest run of this model under `runs_dir`). Settings come
        from the checkpoint; training settings in `overrides` (e.g. a larger `max_steps`) win;
        model options cannot change (the networks were built with the checkpoint's own)."""
        options, config, weights, preset = resume_settings(model_cls, ref, overrides)
        return cls(model_cls, options, config, resume_from=weights, plugin=plugin,
                   preset=preset, progress=progress, loggers=loggers)

    # -- data -----------------------------------------------------------------------------------
    def _loader(self) -> torch.utils.data.DataLoader:
        return make_loader(self.dataset, self.sampler, self.config.batch_size,
                           self.config.workers, self.device.type == "cuda", self.config.seed)

    def _to_device(self, batch: Mapping[str, Tensor], augment: bool = True) -> dict[str, Tensor]:
        moved = {}
        for key, value in batch.items():
            if not isinstance(value, Tensor):  # e.g. the dataset's "skipped" notes
                continue
            value = value.to(self.device, non_blocking=True)
            moved[key] = to_model_range(value) if value.dtype == torch.uint8 else value
        if augment and self.device_augment is not None:
            moved = self.device_augment(moved, paired=self.model.data == "paired")
        if self.channels_last:  # after the device augmentation, whose output is NCHW
            moved = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in moved.items()}
        return moved

    def _fixed_batch(self) -> dict[str, Tensor]:
        """The same few samples for every grid, so progress is comparable step to step."""
        items = [self.dataset[(i, i)] for i in range(min(4, len(self.dataset)))]
        with rng.fork(self.device):  # device crops draw here, not from the run's generators
            rng.seed(0, self.device)
            return self._to_device(torch.utils.data.default_collate(items))

    def steps_per_epoch(self) -> int:
        """Alone, the last batch of an epoch may be smaller; sharded, whole global steps only."""
        global_batch = self.config.batch_size * self.processes.world
        return math.ceil(self.sampler.used / global_batch)

    def total_steps(self) -> int | None:
        """Steps the run ends at: all epochs or --max-steps; with a --time-budget, --max-steps
        or None (the clock decides)."""
        if self.budget.active:
            return self.config.max_steps
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
            if "not currently support double backward" in str(exc):
                raise Img2ImgError(f"model '{self.model.name}' with --compile: a gradient penalty "
                                   "ran through a compiled network; run that forward under "
                                   "img2img.networks.eager() (Adversary does), or train without "
                                   "--compile") from None
            if "backward through the graph a second time" not in str(exc):
                raise
            raise Img2ImgError(f"model '{self.model.name}': two generator loss groups share one "
                               "graph; put terms that use the same fake in the same group") from None

    def _measure_gradients(self, groups: Mapping[str, Any], measured: dict[str, Tensor]) -> None:
        """The L2 norm of each network's gradient, as its optimiser will apply it (averaged
        over processes, unscaled): `grad/g.a_to_b`, `grad/d.b`. Stays on the device."""
        for prefix, nets in groups.items():
            for name, net in nets.items():
                grads = [p.grad.detach() for p in net.parameters() if p.grad is not None]
                if grads:  # one fused kernel per device and dtype, then the norm of the norms
                    norms = torch._foreach_norm(grads)
                    measured[f"grad/{prefix}.{name}"] = torch.linalg.vector_norm(
                        torch.stack([n.float() for n in norms]))

    def train_step(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
        """One generator and one discriminator update; returns the detached terms, or None
        when the step guard skipped the step (a non-finite loss or gradient: no weight,
        optimiser state or average changed). Both backward passes run before either update
        (the discriminator's loss sees the detached fakes, so the order changes no number),
        so the guard can judge the whole step first. On a step that will be logged
        (`self.measured` is a dict), each network's gradient norm goes into `self.measured`."""
        model, logged, measured = self.model, {}, self.measured
        if self.state.step < self.config.warmup_steps or self.budget.active:
            self._set_learning_rates()
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        # Forward passes move buffers (batch-norm statistics): kept to undo on a skipped step.
        buffers = list(model.buffers())
        kept = [b.clone() for b in buffers]
        model.discriminators.requires_grad_(False)
        noisy = begin_noise_step(model)
        with self._autocast():
            fakes, groups = model.generator_step(batch)
            groups = with_noise_terms(model, iter([groups] if isinstance(groups, Mapping)
                                                  else groups), self.state.step, noisy)
        while True:
            with self._autocast():
                group = next(groups, None)
            if group is None:
                break
            self._backward(group, "g", logged)
            del group
        if self.temporal is not None:
            with self._autocast():
                group = self.temporal(model, batch)
            if group:
                self._backward(group, "g", logged)
            del group
        model.discriminators.requires_grad_(True)
        fakes = {k: v.detach() for k, v in fakes.items()}
        with self._autocast():
            d_terms = model.discriminator_losses(batch, fakes)
        self._backward(d_terms, "d", logged)
        del fakes, d_terms
        if self.processes.distributed:  # once per network per step, after every group
            distributed.average_gradients([model.generators, model.auxiliary,
                                           model.discriminators], self.processes.world)
        nets = {"g": model.generators, "aux": model.auxiliary, "d": model.discriminators}
        if self.scaler.is_enabled():
            # fp16: the scaler skips steps whose gradients overflow (the usual way of loss
            # scaling, not a fault), so the guard judges the losses only.
            gradients: dict[str, list[Tensor | None]] = {}
            if measured is not None:
                for optimizer in self.optimizers.values():
                    self.scaler.unscale_(optimizer)
        else:
            gradients = {f"grad/{prefix}.{name}": [p.grad for p in net.parameters()]
                         for prefix, group in nets.items() for name, net in group.items()}
        if measured is not None:
            self._measure_gradients(nets, measured)
        flags = self.watch.flags(logged, gradients)
        if self.processes.distributed:  # every process applies the step, or none does
            flags = distributed.minimum(flags)
        if not self.watch.allows(self.state.step + 1, flags):
            with torch.no_grad():
                for buffer, value in zip(buffers, kept):
                    buffer.copy_(value)
            if self.scaler.is_enabled():  # lower the scale, as for an overflow
                self.scaler.update(self.scaler.get_scale() * self.scaler.get_backoff_factor())
            return None
        self.scaler.step(self.optimizers["g"])
        if self.ema is not None:
            self.ema.update(model.generators)
        self.scaler.step(self.optimizers["d"])
        self.scaler.update()
        self.watch.stepped(self._all_mean if self.processes.distributed else None)
        return logged

    def _agreed_seconds(self, seconds: float) -> float:
        """The largest of every process's clock: one reading for all, so all stop at the same
        step with the same learning rate."""
        return distributed.largest(seconds)

    def _all_mean(self, value: Tensor) -> Tensor:
        return distributed.mean({"value": value}, self.processes.world)["value"]

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train until the last epoch, `max_steps` or the time budget; save a checkpoint at the
        end (or Ctrl-C)."""
        known = self.total_steps()
        total = math.inf if known is None else known
        bar = tqdm(total=known, initial=self.state.step, unit="step", dynamic_ncols=True,
                   disable=self.progress is False or not self.processes.is_main or (
                       self.progress is None and not sys.stderr.isatty()))
        loader, running, started = self._loader(), {}, time.perf_counter()
        self._logged_at, self._summed = self.state.step, 0
        self._diversity: dict[str, float] = {}
        self.model.train()
        if self.watch.healthy:  # where a divergence before the first healthy record returns to
            self._keep_healthy_point(start=True)
        stopped = self.budget_reached = False
        self.budget.start()
        with Interrupt() as interrupt, bar:
            try:
                stopped = self._train_until(total, loader, interrupt, bar, running, started)
            except Exception as exc:
                self._stop_on_error(exc)
        self.interrupted = stopped and self.state.step < total
        # What stopped it: a rank stopped by another's vote exits with that rank's signal.
        self.stop_signal = interrupt.signal or self._voted or signal.SIGINT
        if self.processes.is_main:
            self.save_samples()
            weights = self.save_checkpoint()
            write_report(self.run_dir)
            self.metrics.close(self.record)  # the trackers get the settings and final metrics
            print(f"{self._ending(total)}; checkpoint {weights}", file=sys.stderr)
        distributed.stop()
        return self.run_dir

    def _ending(self, total: float) -> str:
        if self.budget_reached:
            return (f"Time budget reached ({self.config.time_budget}): training ended at step "
                    f"{self.state.step} after {format_duration(self.state.elapsed)}")
        state = "stopped at" if self.state.step < total else "finished"
        shown = "" if math.isinf(total) else f"/{total}"
        return f"Training {state} step {self.state.step}{shown}"

    def _train_until(self, total: int, loader: Any, interrupt: Interrupt, bar: tqdm,
                     running: dict[str, Tensor], started: float) -> bool:
        """The loop; returns whether it stopped on request (Ctrl-C here or, under torchrun, on
        any rank: all ranks stop at the same step, one after the request)."""
        vote = distributed.StopVote() if self.processes.distributed else None
        stop, self._voted = False, 0
        epochs = math.inf if self.budget.active else self.config.total_epochs
        while (self.state.step < total and self.state.epoch < epochs and not stop
               and not self.budget_reached):
            self._start_epoch()
            for batch in loader:
                self._count_skipped(batch.pop("skipped", ()))
                self.budget.tick()
                if self.budget.spent():  # only where a resumed run had used its budget
                    self.budget_reached = True
                    break
                self._in_step = True
                done = self.state.step + 1
                last_in_budget = self.budget.last_step()
                final = done == total or last_in_budget
                logs = done % self.config.log_every == 0 or final
                self.measured = {} if logs else None
                rng.seed_step(self.config.seed, self.processes.rank, self.state.step, self.device)
                try:
                    terms = self.train_step(self._to_device(batch))
                except NonFiniteSteps:
                    # Skipped like those before it: nothing changed, the state is sound.
                    self._in_step = False
                    self.state.step += 1
                    self.state.batch_in_epoch += 1
                    raise
                self._in_step = False
                self.state.step += 1
                self.state.batch_in_epoch += 1
                if terms is not None:  # a skipped step's terms and norms are not finite
                    for key, value in terms.items():
                        running[key] = running.get(key, 0) + value
                    self._summed += 1
                bar.update(1)
                every = self.config.sample_every
                if self.processes.is_main and (every and done % every == 0 or final):
                    self._diversity = self._measure_diversity()  # logged with the next record
                if logs:
                    decision = self._log(running, bar, started,
                                         self.measured if terms is not None else {})
                    running = {}
                    if self._act_on(decision):
                        bar.reset(None if math.isinf(total) else total)
                        bar.update(self.state.step)
                        break  # the epoch restarts where the healthy point stood
                    if self.watch.healthy:
                        self._keep_healthy_point()
                self._periodic()
                if vote is None:
                    stop = interrupt.requested
                else:  # each rank votes with the signal it got (SIGTERM outranks Ctrl-C)
                    self._voted = vote.poll(interrupt.signal if interrupt.requested else 0)
                    stop = bool(self._voted)
                if last_in_budget:
                    self.budget_reached = True
                if self.state.step >= total or stop or final:
                    break
            else:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
        if running and self.state.step > self._logged_at:
            # Steps since the last record, where the loop ended between records: the budget
            # found spent before a step (one ran slower than the estimate). Logged and judged
            # as any record, so the metrics end at the last step.
            self._act_on(self._log(running, bar, started, {}))
        if vote is not None:
            vote.finish()
        return stop

    def _act_on(self, decision: Decision) -> bool:
        """Carry out the divergence monitor's decision on a record: roll back to the healthy
        point (and raise where it says stop); returns whether it rolled back."""
        if decision.action == OK:
            return False
        self._roll_back(decision.message)
        if decision.action == STOP:
            raise Img2ImgError(decision.message)
        return True

    def _count_skipped(self, reasons: Any) -> None:
        """Training images that could not be read any more (the dataset put others in their
        place): one warning each, and a clear stop past --max-bad-samples."""
        for reason in reasons:
            if reason and reason not in self.skipped:
                self.skipped.add(reason)
                log.warning("skipped a training image that can no longer be read: %s", reason)
        limit = self.config.max_bad_samples
        limit = max(1, len(self.dataset) // 100) if limit is None else limit
        if len(self.skipped) > limit:
            raise DataError(f"{len(self.skipped)} training image(s) could not be read, more "
                            f"than --max-bad-samples {limit} (the latest: {reason})")

    def _keep_healthy_point(self, start: bool = False) -> None:
        """Copy the run as it stands (on the device), a point a rollback may return to."""
        if not self.watch.due(start):
            return
        self.state.health = self.watch.state_dict()
        self.watch.keep(take_snapshot(
            self.model, self.optimizers, self.scaler,
            self.ema.average if self.ema is not None else None,
            {"state": dataclasses.asdict(self.state)}))

    def _roll_back(self, message: str) -> None:
        """Return to the last healthy point: networks, optimisers, scaler, average, position in
        the data and --ada as they were, the learning rates x the monitor's factor (set as the
        epoch restarts). The rollback count and what diverged are kept."""
        point = self.watch.rollback_point()
        if point is None:
            raise Img2ImgError(f"{message}; no healthy point to return to (the run was resumed "
                               "from a checkpoint saved while it diverged); try a lower --lr")
        extra = restore_snapshot(point, self.model, self.optimizers, self.scaler,
                                 self.ema.average if self.ema is not None else None)
        diverged_at = self.state.step
        self.state = TrainingState(**extra["state"])
        self.watch.rewind(self.state.health)
        self._logged_at, self._summed = self.state.step, 0
        self._set_learning_rates()
        if self.processes.is_main:
            where = f"step {diverged_at} -> {self.state.step}"
            log.warning("%s (%s)", message, where)

    def _start_epoch(self) -> None:
        done = self.state.batch_in_epoch * self.config.batch_size * self.processes.world
        # A data folder that shrank since the checkpoint can leave the position past the end of
        # the epoch: the epoch is then over, and the next one starts.
        self.sampler.set_epoch(self.state.epoch, skip=min(done, self.sampler.used))
        self._set_learning_rates()

    def _set_learning_rates(self) -> None:
        """Each optimiser's base rate x the schedule (over the epochs, or fitted to the time
        budget: set before every step) x the warm-up."""
        state = self.state
        scheduled = (budget_factor(self.config, self.budget.fraction(state.step + 1))
                     if self.budget.active else lr_factor(self.config, state.epoch))
        factor = (scheduled * warmup_factor(self.config, state.step)
                  * self.watch.monitor.lr_factor)  # halved by each rollback
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lr.get(name, self.config.lr) * factor

    def _periodic(self) -> None:
        every = self.config.eval_every
        if every and self.state.step % every == 0 and self.processes.distributed:
            # Rank 0 evaluates; every rank then holds the same best value (saved with state).
            if self.processes.is_main:
                self.run_evaluation()
            self.state.best = distributed.broadcast_object(self.state.best)
        if not self.processes.is_main:
            return
        saved = False
        every = self.config.sample_every
        if every and self.state.step % every == 0:
            self.save_samples()
            saved = True
        every = self.config.checkpoint_every
        if every and self.state.step % every == 0:
            self.save_checkpoint()
            saved = True
        every = self.config.eval_every
        if every and self.state.step % every == 0:
            if not self.processes.distributed:
                self.run_evaluation()
            saved = True
        if saved:
            write_report(self.run_dir)

    def run_evaluation(self) -> dict[str, float]:
        """Metrics on the held-out set, logged as eval/<name>; a new best is kept as RUN:best."""
        average = self.ema.average if self.ema is not None else None
        try:
            with using(self.model, average):
                results = evaluate(self.model, self.eval_set)
        finally:
            self.model.train()
        state = self.state
        self.metrics.write({"step": state.step, "epoch": state.epoch + 1,
                                           **{f"eval/{k}": v for k, v in results.items()}})
        name, higher = primary_metric(self.model)
        value = results[name]
        if state.best is None or (value > state.best if higher else value < state.best):
            state.best = value
            checkpoints.save_best(self.save_checkpoint())
        return results

    def _log(self, running: dict[str, Tensor], bar: tqdm, started: float,
             measured: Mapping[str, Tensor]) -> Decision:
        """Losses and health signals reach the host only here (no per-step synchronisation),
        averaged since the last log line over the applied steps; `measured` (this step's
        gradient norms, the same on every process) is logged as it is. Returns the divergence
        monitor's decision on the record, the same on every process."""
        state = self.state
        steps, self._summed = self._summed, 0
        self._logged_at = state.step
        signals = {**self.watch.signals(), **plugin_signals(self.model)}
        if self.processes.distributed:  # the mean over every process's batch
            running = distributed.mean(running, self.processes.world)
            signals = distributed.mean(signals, self.processes.world)
        losses = {k: round(float(v) / steps, 5) for k, v in running.items()} if steps else {}
        lr = self.optimizers["g"].param_groups[0]["lr"]
        record = {"step": state.step, "epoch": state.epoch + 1, "lr": lr,
                  "time": round(time.perf_counter() - started, 3), **losses,
                  **{k: float(f"{float(v):.7g}") for k, v in measured.items()},
                  **{k: round(float(v), 5) for k, v in signals.items()},
                  **self.watch.counts(), **self._diversity}
        self._diversity = {}
        decision = self.watch.judge(record)
        if self.processes.distributed:  # rank 0's decision, whatever rounding did elsewhere
            decision = distributed.broadcast_object(decision)
        if not self.processes.is_main:
            return decision
        self.metrics.write(record)
        shown = dict(losses)
        if D_ACC_REAL in record:
            shown["D acc"] = f"{record[D_ACC_REAL]:.2f}/{record[D_ACC_FAKE]:.2f}"
        bar.set_postfix({"epoch": state.epoch + 1,
                         **{k: v if isinstance(v, str) else f"{v:.3f}" for k, v in shown.items()}},
                        refresh=False)
        if bar.disable:
            shown = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
            print(f"step {state.step} epoch {state.epoch + 1} {shown}", file=sys.stderr, flush=True)
        return decision

    # -- samples and checkpoints ----------------------------------------------------------------
    @torch.no_grad()
    def _measure_diversity(self) -> dict[str, float]:
        """`health/diversity` on the fixed batch, with the weights the samples show."""
        with rng.fork(self.device):
            self.model.eval()
            try:
                with using(self.model, self.ema.average if self.ema is not None else None) \
                        as model, self._autocast():
                    return measure_diversity(model, self.fixed_batch)
            finally:
                self.model.train()

    @torch.no_grad()
    def save_samples(self) -> Path:
        """Grid of the fixed batch; RNG is forked so sampling never changes the training run."""
        with rng.fork(self.device):
            average = self.ema.average if self.ema is not None else None
            self.model.eval()
            try:
                with using(self.model, average) as model, self._autocast():
                    fakes = model.generate(self.fixed_batch)
                    columns = model.visuals(self.fixed_batch, fakes)
            finally:
                self.model.train()
        path = self.run_dir / runs.SAMPLES / f"{checkpoints.checkpoint_stem(self.state.step)}.png"
        self.metrics.samples(self.state.step, save_grid(path, columns), tuple(columns))
        return path

    def save_checkpoint(self) -> Path:
        """A checkpoint of the run as it stands (see `img2img.training.state.save`)."""
        self.state.health = self.watch.state_dict()
        self.state.elapsed = self.budget.used
        return save(self.run_dir, self.state, self.model, self.optimizers, self.scaler, self.ema,
                    self.record, world=self.processes.world, items=len(self.dataset),
                    keep=self.config.keep_checkpoints)

    def _stop_on_error(self, exc: Exception) -> None:
        """Between steps the state is sound: save it, then name the cause and how to resume.
        Within a step (or when saving is what failed) the error stands as it is."""
        sound = not self._in_step and self.processes.is_main and not isinstance(
            exc, (distributed.LostPeer, CheckpointError))
        if not sound:
            raise exc
        weights = self.save_checkpoint()
        cause = str(exc) if isinstance(exc, Img2ImgError) else f"{type(exc).__name__}: {exc}"
        error = type(exc) if isinstance(exc, Img2ImgError) else Img2ImgError
        if not cause.startswith("training stopped at step"):
            cause = f"training stopped at step {self.state.step}: {cause}"
        raise error(f"{cause}. Saved "
                    f"{weights.name}; continue with: img2img train {self.model.name} --resume "
                    f"{self.run_dir}") from exc
