"""What `img2img distill` trains before it trains: the student's options (architecture, width from
`--width` or a `--macs` budget) and the training settings taken over from the teacher's run (its
data, size, channels, augmentation), with every check a user can fail made here, before any run
folder exists: a teacher that cannot teach, a student that is not smaller or does not fit the
teacher's size, a data folder the teacher's run does not name, an output folder that exists."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, Img2ImgError, SettingsError
from ..networks.factory import GENERATORS, build_generator
from ..networks.macs import count_macs, format_count
from ..runs import checkpoints, folders as runs
from .model import Distillation, Options, resolve_options
from .teacher import Teacher, load_teacher

DEFAULT_WIDTH = 16
DEFAULT_STEPS = 2000  # when the teacher's step count is unknown (an imported checkpoint)
# Settings of the teacher's run a student keeps: it sees the same images the same way.
KEPT = ("data", "a", "b", "load_size", "flip", "color_jitter", "batch_size")


@dataclasses.dataclass(frozen=True)
class Plan:
    """A checked distillation: the teacher, the student's options and training settings."""

    teacher: Teacher
    options: Options
    training: dict[str, Any]
    teacher_steps: int | None
    teacher_eval_data: Path | None = None  # the teacher run's --eval-data, if it had one


def plan(teacher_ref: str | Path, out: Path, *, width: int | None = None,
         macs: float | None = None, generator: str | None = None, data: Path | None = None,
         max_steps: int | None = None, catalog: Any = None, **training: Any) -> Plan:
    """The checked plan for distilling `teacher_ref` into a new run at `out`."""
    if width is not None and macs is not None:
        raise SettingsError("--width and --macs both choose the student's width: give one")
    if out.exists():
        raise Img2ImgError(f"-o {out} already exists; choose a new folder for the student run")
    teacher = load_teacher(Path(teacher_ref).absolute(), catalog)
    model = teacher.model
    if generator is not None and generator not in GENERATORS:
        raise SettingsError(f"--generator {generator}: choose one of {', '.join(GENERATORS)}")
    base = resolve_options(Options(teacher=str(teacher.weights.absolute()),
                                   generator=generator or "teacher", features="none"))
    _check_fits(base.generator, model.spec.size, teacher)
    teacher_macs = count_macs(model.generators[model.directions[0]],
                              (model.spec.channels, model.spec.size, model.spec.size))
    if macs is not None:
        width = widest_within(base, model.spec.channels, model.spec.size, macs)
        if macs >= teacher_macs:
            raise SettingsError(f"--macs {format_count(macs)} is not below the teacher's "
                                f"{format_count(teacher_macs)} MACs per image; a student "
                                "must cost less")
    width = DEFAULT_WIDTH if width is None else width
    teacher_width = getattr(model.options, "ngf", None)
    same_kind = base.generator == getattr(model.options, "generator", None)
    if same_kind and teacher_width is not None and width >= teacher_width:
        raise SettingsError(f"--width {width} is not smaller than the teacher's ({teacher_width} "
                            f"wide); a student must be narrower")
    student_macs = _macs(base, width, model.spec.channels, model.spec.size)
    if student_macs >= teacher_macs:
        raise SettingsError(f"a {base.generator} student {width} wide costs "
                            f"{format_count(student_macs)} MACs per image, not fewer than the "
                            f"teacher's {format_count(teacher_macs)}; choose a smaller --width")
    options = resolve_options(dataclasses.replace(base, ngf=width, features="auto"))
    steps = _teacher_steps(teacher)
    settings = {**_kept_settings(teacher, data), "channels": model.spec.channels,
                "crop_size": model.spec.size, "runs_dir": out.parent, "name": out.name,
                "max_steps": max_steps or max(1, (steps or DEFAULT_STEPS * 4) // 4),
                "epochs": 10**6, "decay_epochs": 0, **training}
    settings["load_size"] = max(settings.get("load_size", 0), model.spec.size)
    return Plan(teacher, options, settings, steps, _recorded(teacher).get("eval_data"))


def _check_fits(kind: str, size: int, teacher: Teacher) -> None:
    family, _, number = kind.partition("-")
    multiple = int(number) if family == "unet" else 4
    if size % multiple:
        raise SettingsError(f"--generator {kind} needs images whose sides are a multiple of "
                            f"{multiple}; the teacher {teacher.weights} was trained at {size} "
                            f"px: choose a U-Net of at most unet-{size & -size} or a ResNet")


def _macs(options: Options, width: int, channels: int, size: int) -> int:
    net = build_generator(options.generator, channels, channels, ngf=width, norm=options.norm,
                          dropout=False, upsample=options.upsample)
    return count_macs(net, (channels, size, size))


def widest_within(options: Options, channels: int, size: int, budget: float) -> int:
    """The widest student whose MACs per image at `size` px stay within `budget`."""
    # MACs grow with the square of the width: start from a guess, then step to the exact one.
    at_8 = _macs(options, 8, channels, size)
    width = max(1, int(8 * (budget / at_8) ** 0.5))
    while width > 1 and _macs(options, width, channels, size) > budget:
        width -= 1
    while _macs(options, width + 1, channels, size) <= budget:
        width += 1
    if _macs(options, width, channels, size) > budget:
        raise SettingsError(f"--macs {format_count(budget)}: even a 1-wide {options.generator} "
                            f"costs {format_count(_macs(options, 1, channels, size))} per image")
    return width


def _teacher_steps(teacher: Teacher) -> int | None:
    try:
        meta = checkpoints.read_metadata(teacher.weights)
    except CheckpointError:
        return None  # a reference file
    step = meta.get("step")
    return int(step) if isinstance(step, int) and step > 0 else None


def _recorded(teacher: Teacher) -> dict[str, Any]:
    """The training settings the teacher's run recorded (none for a reference .pth)."""
    try:
        return runs.read_config(checkpoints.run_dir_of(teacher.weights)).get("training", {})
    except CheckpointError:
        return {}


def _kept_settings(teacher: Teacher, data: Path | None) -> dict[str, Any]:
    """The teacher run's data and augmentation settings (`--data` replaces its data)."""
    recorded = _recorded(teacher)
    kept = {k: recorded[k] for k in KEPT if recorded.get(k) is not None}
    if data is not None:
        kept = {k: v for k, v in kept.items() if k not in ("data", "a", "b")}
        kept["data"] = Path(data)
    if not any(k in kept for k in ("data", "a", "b")):
        raise SettingsError(f"the teacher {teacher.weights} records no training data (an "
                            "imported or reference checkpoint): give --data DIR")
    for key in ("data", "a", "b"):
        if key in kept and not Path(kept[key]).exists():
            where = "--data" if data is not None else f"the teacher's training {key}"
            raise SettingsError(f"{where} {kept[key]} does not exist; give --data DIR")
    return kept


__all__ = ["Distillation", "Plan", "plan", "widest_within"]
