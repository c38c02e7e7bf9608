"""`img2img distill` on the bundled data, both kinds: a published-width teacher trained here
(paired: pix2pix U-Net-128, 64 wide, 128 px, on `datasets/faces_edges2photo`; unpaired: CycleGAN
ResNet-9, 64 wide, on `datasets/faces_grey2colour`) distilled into a 16-wide student in a quarter
of the teacher's training time, then both measured alike: MACs, convert images/s at 256 px
(batch 1, rounds interleaved), and the task metric on the held-out test split (paired: PSNR to the
real photos; unpaired: SWD to the real held-out targets). The student's `export --int8` graph is
stacked on top: its PSNR from the fp32 student (the export's own quality check) and its ONNX
Runtime images/s at 256 px in the same interleaved rounds. Writes an input | teacher | student
grid per kind to benchmarks/figures/distill_grid_<kind>.png.

    python benchmarks/distill.py                    # both kinds: about 25 minutes on 2 cores
    python benchmarks/distill.py --kinds paired --teacher-preset fast --teacher-steps 1500
    python benchmarks/distill.py --smoke            # 32 px, narrow networks: seconds
"""
from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import benchlib

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
FIGURES = benchlib.HERE / "figures"


@dataclasses.dataclass(frozen=True)
class Case:
    """One kind of data: the teacher's model and network, where it trains and is scored, and
    the task metric the targets compare (higher or lower is better)."""

    model: str
    generator: str
    size: int
    train: Path
    test: Path
    metric: str
    higher_is_better: bool


CASES = {
    "paired": Case("pix2pix", "unet-128", 128, DATASETS / "faces_edges2photo" / "train",
                   DATASETS / "faces_edges2photo" / "test", "psnr", True),
    "unpaired": Case("cyclegan", "resnet-9", 64, DATASETS / "faces_grey2colour",
                     DATASETS / "faces_grey2colour", "swd", False),
}


def _grid(teacher, student, case: Case, path: Path) -> None:
    import cv2
    import numpy as np
    import torch

    from img2img.distill.measure import held_out
    from img2img.distill.teacher import source_domain

    items, _, _ = held_out(student.model, {}, 4, case.test)
    direction = student.model.directions[0]
    x = items[source_domain(direction)].float() / 127.5 - 1
    with torch.inference_mode():
        rows = torch.cat([x, teacher.model.translate(x, direction),
                          student.model.translate(x, direction)], 3)
    image = torch.cat(list(rows), 1)  # (C, 4H, 3W)
    image = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    print(f"wrote {path}")


def _int8(student, work: Path):
    """The student's `export --int8` graph: (an ONNX Runtime session or None, what the export's
    quality check said)."""
    import onnxruntime as ort

    from img2img.errors import Img2ImgError
    from img2img.interop.export import Int8, export_model

    path = work / "student-int8.onnx"
    try:
        contract = export_model(student, path, int8=Int8())
    except Img2ImgError as refused:
        return None, f"refused: {refused}"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    import torch

    options.intra_op_num_threads = torch.get_num_threads()  # as many as the torch models use
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), \
        contract.quality


def _speeds(calls: dict, seconds: float, rounds: int = 4) -> dict[str, float]:
    """Images/s of each call (batch 1), the median of interleaved rounds."""
    found: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm-up
    slot = seconds / rounds / len(calls)
    for _ in range(rounds):
        for name, call in calls.items():
            count, start = 0, time.perf_counter()
            while count < 2 or time.perf_counter() - start < slot:
                call()
                count += 1
            found[name].append(count / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in found.items()}


def run_case(kind: str, args, runs: Path) -> dict:
    import numpy as np
    import torch

    import img2img
    from img2img.distill import distill

    case = CASES[kind]
    size, ngf, steps = (32, 8, 4) if args.smoke else (case.size, 64, args.teacher_steps)
    generator = case.generator.replace("128", "32") if args.smoke else case.generator
    width = 4 if args.smoke else args.width
    common = dict(device=args.device, workers=0, sample_every=0, checkpoint_every=0,
                  log_every=max(1, steps // 10), progress=False)
    print(f"\n== {kind}: {case.model} {generator}, {ngf} wide, {size} px, {steps} teacher steps, "
          f"{args.teacher_preset or 'published'} recipe", flush=True)
    clock = time.perf_counter()
    teacher_run = img2img.train(case.model, preset=args.teacher_preset, data=case.train,
                                generator=generator, ngf=ngf, ndf=ngf, load_size=size,
                                crop_size=size, max_steps=steps,
                                runs_dir=runs, name=f"teacher-{kind}", **common)
    teacher_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    student_run, record = distill(teacher_run, runs / f"student-{kind}", width=width,
                                  minutes=teacher_seconds / 4 / 60, eval_limit=16,
                                  eval_data=case.test, **common)
    distill_seconds = time.perf_counter() - clock
    teacher = img2img.load(teacher_run, device=args.device)
    student = img2img.load(student_run, device=args.device)
    if not args.smoke:  # at the training size, before the speed test resizes the specs
        _grid(teacher, student, case, FIGURES / f"distill_grid_{kind}.png")
    session, int8_quality = _int8(student, runs)
    print(f"student export --int8: {int8_quality}", flush=True)
    # Speed at 256 px, the size the targets name (the networks take any multiple of theirs).
    side = 32 if args.smoke else 256
    x = torch.rand(1, 3, side, side) * 2 - 1
    calls = {}
    with torch.inference_mode():
        for who, loaded in (("teacher", teacher), ("student", student)):
            model = loaded.model.eval()
            direction = model.directions[0]
            calls[who] = lambda m=model, d=direction: m.translate(x, d)
        if session is not None:
            name, array = session.get_inputs()[0].name, x.numpy().astype(np.float32)
            calls["student int8"] = lambda: session.run(None, {name: array})
        speeds = _speeds(calls, seconds=2 if args.smoke else 12)
    task = record.get("task", {})
    metric = {who: task.get(who, {}).get(case.metric) for who in ("teacher", "student")}
    rows = [{"model": who, "generator": record[who]["generator"], "width": record[who]["ngf"],
             "MACs": record[who]["macs"], "parameters": record[who]["parameters"],
             f"images/s at {side} px": round(speeds[who], 3),
             f"task {case.metric}": metric[who]} for who in ("teacher", "student")]
    if "student int8" in speeds:
        rows.append({**rows[1], "model": "student, export --int8 (ONNX Runtime)",
                     f"images/s at {side} px": round(speeds["student int8"], 3),
                     f"task {case.metric}": None})
    benchlib.print_table(rows, list(rows[0]), f"{kind}: teacher and student")
    speedup = speeds["student"] / speeds["teacher"]
    t, s = metric["teacher"], metric["student"]
    if case.higher_is_better:
        quality = {"target": f"{kind}: student held-out PSNR vs teacher's", "limit": "within 1 dB",
                   "measured": None if s is None else round(s - t, 2),
                   "met": s is not None and s >= t - 1}
    else:
        quality = {"target": f"{kind}: student held-out SWD / teacher's", "limit": "<= 1.10",
                   "measured": None if s is None else round(s / t, 3),
                   "met": s is not None and s <= 1.10 * t}
    checks = [
        {"target": f"{kind}: MACs ratio", "limit": ">= 8x", "measured": record["macs_ratio"],
         "met": record["macs_ratio"] >= 8},
        {"target": f"{kind}: convert images/s ratio at {side} px", "limit": ">= 5x",
         "measured": round(speedup, 2), "met": speedup >= 5},
        quality,
        {"target": f"{kind}: distillation training time / teacher's", "limit": "<= 0.25",
         "measured": round(record["training"]["seconds"] / teacher_seconds, 3),
         "met": record["training"]["seconds"] <= teacher_seconds / 4},
    ]
    if "student int8" in speeds:
        stacked = speeds["student int8"] / speeds["teacher"]
        checks.append({"target": f"{kind}: student int8 images/s / teacher's (stacked, "
                                 "reported)", "limit": "-", "measured": round(stacked, 2),
                       "met": None})
    print(f"{kind}: student PSNR to the teacher {record['agreement']['psnr']:.2f} dB on "
          f"{record['agreement']['items']} held-out inputs; teacher trained "
          f"{teacher_seconds:.0f} s, the student {record['training']['seconds']:.0f} s "
          f"({record['training']['steps']} steps; with measuring {distill_seconds:.0f} s)",
          flush=True)
    return {"checks": checks, "record": record, "int8": int8_quality,
            f"speed_{side}": {k: round(v, 3) for k, v in speeds.items()},
            "teacher_seconds": round(teacher_seconds, 1),
            "distill_seconds": round(distill_seconds, 1)}


def main() -> None:
    p = benchlib.parser("distill", __doc__.splitlines()[0])
    p.add_argument("--kinds", default="paired,unpaired",
                   help="comma-separated: paired (pix2pix), unpaired (CycleGAN)")
    p.add_argument("--teacher-steps", type=int, default=600,
                   help="each teacher's training steps (batch 1)")
    p.add_argument("--teacher-preset", default=None, metavar="NAME",
                   help="the teachers' recipe (e.g. fast), kept at the published width 64 "
                        "(default: the published recipe)")
    p.add_argument("--width", type=int, default=16, help="the student's width")
    args = p.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(CASES))
    if unknown or not kinds:
        p.error(f"--kinds: expected some of {', '.join(CASES)}, got {args.kinds!r}")
    started, quiet = benchlib.machine(), benchlib.wait_for_quiet(args.wait_load)
    benchlib.setup_torch(args.threads, args.passive_wait)
    print(benchlib.machine_line(started))
    with tempfile.TemporaryDirectory() as tmp:
        found = {kind: run_case(kind, args, Path(tmp)) for kind in kinds}
    checks = [check for kind in kinds for check in found[kind].pop("checks")]
    benchlib.finish(args, "distill", started, quiet, checks, **found)


if __name__ == "__main__":
    main()
