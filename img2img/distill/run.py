"""`distill(teacher, out)`: plan the student (`plan`), train it through the shared trainer as an
ordinary run of the `distill` model (for `--max-steps`, or as many steps as fit in `--minutes`,
measured on a first short stretch and continued by exact resume), then measure teacher and
student alike (`measure`) and record it all in the student run's `distill.json`."""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..data.atomic import write_text
from ..errors import Interrupted
from ..networks.macs import format_count
from ..runs import checkpoints
from ..training.devices import resolve_device
from ..training.settings import resolve_settings
from ..training.trainer import Trainer
from . import measure
from .model import Distillation
from .plan import Plan, plan

RECORD = "distill.json"
CALIBRATION_STEPS = 10  # the first stretch of a --minutes run, timed to size the rest
PLUGIN = {"name": "img2img", "distribution": "img2img", "version": checkpoints.img2img_version()}


def distill(teacher: str | Path, out: str | Path, *, width: int | None = None,
            macs: float | None = None, generator: str | None = None,
            data: str | Path | None = None, max_steps: int | None = None,
            minutes: float | None = None, device: str = "auto",
            eval_data: str | Path | None = None, eval_limit: int = 64,
            progress: bool | None = None, catalog: Any = None,
            **training: Any) -> tuple[Path, dict[str, Any]]:
    """Distil the run (checkpoint, or reference .pth) `teacher` into a new student run at `out`;
    returns the run folder and what `distill.json` records. Agreement and the task metric are
    measured on `eval_data` (held-out data in the training layout; default: the teacher run's
    --eval-data, else the data's test split, else its training images). `training` may set
    other training settings by name (`batch_size`, `workers`, `seed`, `log_every` ...)."""
    out = Path(out)
    chosen = plan(teacher, out, width=width, macs=macs, generator=generator,
                  data=None if data is None else Path(data), max_steps=max_steps,
                  catalog=catalog, device=device, **training)
    print(f"Distilling {chosen.teacher.weights} ({chosen.options.teacher_model}) into a "
          f"{chosen.options.generator} student {chosen.options.ngf} wide: {out}",
          file=sys.stderr)
    started = time.perf_counter()
    run_dir, steps = _train(chosen, minutes, progress)
    seconds = time.perf_counter() - started
    if eval_data is None:
        eval_data = chosen.teacher_eval_data
    record = _measure(chosen, run_dir, device, None if eval_data is None else Path(eval_data),
                      eval_limit)
    record["training"] = {"steps": steps, "seconds": round(seconds, 1),
                          "teacher_steps": chosen.teacher_steps}
    write_text(run_dir / RECORD, json.dumps(record, indent=2) + "\n")
    return run_dir, record


def _train(chosen: Plan, minutes: float | None, progress: bool | None) -> tuple[Path, int]:
    """Train the student: all steps, or within `minutes`; returns the run and its steps."""
    total = chosen.training["max_steps"]
    first = min(total, CALIBRATION_STEPS) if minutes is not None else total
    options, config = resolve_settings(Distillation, None, None, **{
        **dataclasses.asdict(chosen.options), **chosen.training, "max_steps": first})
    started = time.perf_counter()
    trainer = Trainer(Distillation, options, config, plugin=PLUGIN, progress=progress)
    print(f"Run folder: {trainer.run_dir}", file=sys.stderr)
    _fit(trainer)
    if minutes is not None and first < total:
        per_step = (time.perf_counter() - started) / first
        left = minutes * 60 - (time.perf_counter() - started)
        more = min(total - first, int(left / per_step))
        if more > 0:
            trainer = Trainer.resume(Distillation, trainer.run_dir, plugin=PLUGIN,
                                     progress=progress, max_steps=first + more)
            _fit(trainer)
    return trainer.run_dir, trainer.state.step


def _fit(trainer: Trainer) -> None:
    run_dir = trainer.fit()
    if trainer.interrupted:
        stopped_by = signal.Signals(trainer.stop_signal)
        raise Interrupted(f"distillation stopped by {stopped_by.name} at step "
                          f"{trainer.state.step}; the checkpoint is saved: continue with: "
                          f"img2img train distill --resume {run_dir}",
                          exit_code=128 + stopped_by.value)


def _measure(chosen: Plan, run_dir: Path, device: str, eval_data: Path | None,
             eval_limit: int) -> dict[str, Any]:
    """Teacher and student, side by side: cost, speed, agreement, task metric."""
    torch_device = resolve_device(device)
    weights = checkpoints.resolve_checkpoint(run_dir)
    student = checkpoints.model_from_checkpoint(Distillation, weights, torch_device)
    teacher = chosen.teacher.model.to(torch_device).eval()
    costs = {"teacher": measure.cost(teacher), "student": measure.cost(student)}
    speeds = measure.convert_speed({"teacher": teacher, "student": student}, torch_device)
    items, folders, is_held_out = measure.held_out(student, chosen.training, eval_limit,
                                                   eval_data)
    found = measure.agreement(student, teacher, items, torch_device)
    record: dict[str, Any] = {
        "teacher": {"run": str(chosen.teacher.weights), "sha256": chosen.teacher.sha256,
                    "model": chosen.options.teacher_model,
                    "generator": getattr(teacher.options, "generator", None),
                    "ngf": getattr(teacher.options, "ngf", None), **costs["teacher"],
                    "images_per_second": round(speeds["teacher"], 3)},
        "student": {"run": str(run_dir), "generator": chosen.options.generator,
                    "ngf": chosen.options.ngf, **costs["student"],
                    "images_per_second": round(speeds["student"], 3)},
        "size": student.spec.size, "device": str(torch_device),
        "macs_ratio": round(costs["teacher"]["macs"] / costs["student"]["macs"], 2),
        "parameter_ratio": round(costs["teacher"]["parameters"]
                                 / costs["student"]["parameters"], 2),
        "speedup": round(speeds["student"] / speeds["teacher"], 2),
        "agreement": {**{k: round(v, 3) for k, v in found.items()}, "items": _count(items),
                      "held_out": is_held_out, "data": folders},
    }
    if is_held_out:  # the task's own metric means something on held-out data only
        record["task"] = {who: {k: round(v, 4) for k, v in metrics.items()}
                          for who, metrics in measure.task_metrics(student, teacher,
                                                                   items).items()}
    return record


def _count(items: dict[str, torch.Tensor]) -> int:
    return len(next(iter(items.values())))


def summary(record: dict[str, Any]) -> list[str]:
    """The lines `img2img distill` prints: both models' cost and speed, then agreement."""
    lines = []
    for who in ("teacher", "student"):
        found = record[who]
        lines.append(f"{who:<8} {found['generator']} {found['ngf']} wide: "
                     f"{format_count(found['macs'])} MACs, "
                     f"{format_count(found['parameters'])} parameters, "
                     f"{found['images_per_second']:.2f} images/s at {record['size']} px "
                     f"({record['device']})")
    agreement = record["agreement"]
    where = "held-out" if agreement["held_out"] else "training (no test split)"
    lines.append(f"student: {record['macs_ratio']}x fewer MACs, {record['speedup']}x the "
                 f"teacher's speed; PSNR to the teacher {agreement['psnr']:.2f} dB on "
                 f"{agreement['items']} {where} images")
    for who, metrics in record.get("task", {}).items():
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        lines.append(f"task metric, {who}: {shown}")
    return lines
