"""What a distillation bought, measured the same way for teacher and student: MACs and parameters
of one direction's generator, convert speed on this machine at the training size (images per
second, batch 1, rounds interleaved so a busy machine slows both alike), the student's agreement
with the teacher (PSNR of its output to the teacher's on held-out inputs) and, when the data has
a test split, both models' task metric (`img2img eval`'s)."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ..data.ops import to_model_range
from ..evaluation.evaluate import evaluate, load_eval_set
from ..evaluation.metrics import psnr
from ..model import Model
from ..networks.macs import count_macs, count_parameters
from .teacher import source_domain

HELD_OUT = ("test", "testA", "testB")  # the folders of a test split (see open_dataset)


def cost(model: Model) -> dict[str, int]:
    """MACs per image at the training size and parameters, of one direction's generator."""
    net = model.generators[model.directions[0]]
    spec = model.spec
    return {"macs": count_macs(net, (spec.channels, spec.size, spec.size)),
            "parameters": count_parameters(net)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def convert_speed(models: dict[str, Model], device: torch.device, seconds: float = 4.0,
                  rounds: int = 4) -> dict[str, float]:
    """Images per second of each model's first direction at its training size (batch 1),
    the median of `rounds` interleaved rounds of about `seconds / rounds / len(models)` each."""
    speeds: dict[str, list[float]] = {name: [] for name in models}
    inputs = {}
    for name, model in models.items():
        spec = model.spec
        inputs[name] = torch.rand(1, spec.channels, spec.size, spec.size, device=device) * 2 - 1
        model.eval().translate(inputs[name])  # warm-up: first-call allocations
    slot = seconds / rounds / len(models)
    for _ in range(rounds):
        for name, model in models.items():
            count, start = 0, time.perf_counter()
            while count < 2 or time.perf_counter() - start < slot:
                model.translate(inputs[name])
                count += 1
            _sync(device)
            speeds[name].append(count / (time.perf_counter() - start))
    return {name: statistics.median(found) for name, found in speeds.items()}


def held_out(student: Model, data: Any, limit: int, eval_data: Path | None = None
             ) -> tuple[dict[str, torch.Tensor], list[str], bool]:
    """The evaluation items (`eval_data`, else the training data's test split when it has
    one), the folders read, and whether they were held out from training."""
    folders: list[Path] = []
    if eval_data is not None:
        items = load_eval_set(student, eval_data, limit, folders=folders)
        return items, [str(p) for p in folders], True
    training = data.get("data"), data.get("a"), data.get("b")
    items = load_eval_set(student, training[0], limit, a=training[1], b=training[2],
                          folders=folders)
    return items, [str(p) for p in folders], any(p.name in HELD_OUT for p in folders)


@torch.inference_mode()
def agreement(student: Model, teacher: Model, items: dict[str, torch.Tensor],
              device: torch.device, batch_size: int = 8) -> dict[str, float]:
    """PSNR (dB) of the student's output to the teacher's, per direction and on average."""
    found = {}
    for direction in student.directions:
        source = items[source_domain(direction)]
        values = []
        for i in range(0, len(source), batch_size):
            x = source[i:i + batch_size].to(device)
            x = to_model_range(x) if x.dtype == torch.uint8 else x
            values.append(psnr(student.translate(x, direction).float(),
                               teacher.translate(x, direction).float()).cpu())
        found[f"psnr_{direction}"] = float(torch.cat(values).mean())
    found["psnr"] = statistics.mean(found.values())
    return found


def task_metrics(student: Model, teacher: Model, items: dict[str, torch.Tensor]
                 ) -> dict[str, dict[str, float]]:
    """`img2img eval`'s metrics of both models on the same held-out items."""
    return {"teacher": evaluate(teacher, items), "student": evaluate(student, items)}
