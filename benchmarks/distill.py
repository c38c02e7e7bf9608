"""`img2img distill` on the bundled paired data: a published-width pix2pix teacher (U-Net-128,
64 wide, trained here for --teacher-steps on `datasets/faces_edges2photo`) distilled into a
16-wide student in a quarter of the teacher's training time, then both measured alike: MACs,
convert images/s at 256 px (batch 1, rounds interleaved), PSNR of the student to the teacher
and of each to the real photos on the 16 held-out test pairs. Writes an input | teacher |
student grid to benchmarks/figures/distill_grid.png.

    python benchmarks/distill.py                    # the default run: a few minutes on 2 cores
    python benchmarks/distill.py --teacher-steps 2000
    python benchmarks/distill.py --smoke            # 32 px, narrow networks: seconds
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import benchlib

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
FIGURE = benchlib.HERE / "figures" / "distill_grid.png"


def _grid(teacher, student, data: Path, size: int, path: Path) -> None:
    import cv2
    import numpy as np
    import torch

    from img2img.distill.measure import held_out

    items, _, _ = held_out(student.model, {}, 4, data / "test")
    x = items["a"].float() / 127.5 - 1
    with torch.inference_mode():
        rows = [torch.cat([x, teacher.model.translate(x), student.model.translate(x)], 3)]
    image = torch.cat(list(torch.cat(rows)), 1)  # (C, 4H, 3W)
    image = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    print(f"wrote {path}")


def main() -> None:
    p = benchlib.parser("distill", __doc__.splitlines()[0])
    p.add_argument("--teacher-steps", type=int, default=600,
                   help="the teacher's training steps (batch 1)")
    p.add_argument("--width", type=int, default=16, help="the student's width")
    args = p.parse_args()
    started, quiet = benchlib.machine(), benchlib.wait_for_quiet(args.wait_load)
    benchlib.setup_torch(args.threads, args.passive_wait)
    print(benchlib.machine_line(started))
    import img2img
    from img2img.distill import distill

    data = DATASETS / "faces_edges2photo"
    size, ngf, steps = (32, 8, 4) if args.smoke else (128, 64, args.teacher_steps)
    width = 4 if args.smoke else args.width
    common = dict(device=args.device, workers=0, sample_every=0, checkpoint_every=0,
                  log_every=max(1, steps // 10), progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        clock = time.perf_counter()
        teacher_run = img2img.train("pix2pix", data=data / "train", generator=f"unet-{size}", ngf=ngf,
                                    ndf=ngf, load_size=size, crop_size=size, max_steps=steps,
                                    runs_dir=runs, name="teacher", **common)
        teacher_seconds = time.perf_counter() - clock
        clock = time.perf_counter()
        student_run, record = distill(teacher_run, runs / "student", width=width,
                                      minutes=teacher_seconds / 4 / 60, eval_limit=16,
                                      eval_data=data / "test",
                                      **common)
        distill_seconds = time.perf_counter() - clock
        teacher = img2img.load(teacher_run, device=args.device)
        student = img2img.load(student_run, device=args.device)
        if not args.smoke:  # at the training size, before the speed test resizes the specs
            _grid(teacher, student, data, size, FIGURE)
        # Speed at 256 px, the size the targets name (the networks take any multiple of theirs).
        from img2img.distill.measure import convert_speed
        from img2img.model import ImageSpec
        import dataclasses
        at_256 = {}
        for name, loaded in (("teacher", teacher), ("student", student)):
            model = loaded.model
            model.spec = dataclasses.replace(model.spec, size=32 if args.smoke else 256)
            at_256[name] = model
        speeds = convert_speed(at_256, student.device, seconds=2 if args.smoke else 8)
    task = record.get("task", {})
    t_psnr = task.get("teacher", {}).get("psnr")
    s_psnr = task.get("student", {}).get("psnr")
    rows = [{"model": who, "generator": record[who]["generator"], "width": record[who]["ngf"],
             "MACs": record[who]["macs"], "parameters": record[who]["parameters"],
             "images/s at 256 px": round(speeds[who], 3),
             "task PSNR dB": task.get(who, {}).get("psnr")} for who in ("teacher", "student")]
    benchlib.print_table(rows, list(rows[0]), "Teacher and student")
    speedup = speeds["student"] / speeds["teacher"]
    checks = [
        {"target": "MACs ratio", "limit": ">= 8x", "measured": record["macs_ratio"],
         "met": record["macs_ratio"] >= 8},
        {"target": "convert images/s ratio at 256 px", "limit": ">= 5x",
         "measured": round(speedup, 2), "met": speedup >= 5},
        {"target": "student task PSNR vs teacher's", "limit": "within 1 dB",
         "measured": None if s_psnr is None else round(s_psnr - t_psnr, 2),
         "met": s_psnr is not None and s_psnr >= t_psnr - 1},
        {"target": "distillation training time / teacher's", "limit": "<= 0.25",
         "measured": round(record["training"]["seconds"] / teacher_seconds, 3),
         "met": record["training"]["seconds"] <= teacher_seconds / 4},
    ]
    print(f"student PSNR to the teacher: {record['agreement']['psnr']:.2f} dB on "
          f"{record['agreement']['items']} held-out pairs; teacher trained "
          f"{teacher_seconds:.0f} s, the student {record['training']['seconds']:.0f} s "
          f"({record['training']['steps']} steps; with measuring {distill_seconds:.0f} s)")
    benchlib.finish(args, "distill", started, quiet, checks, record=record,
                    speed_256={k: round(v, 3) for k, v in speeds.items()},
                    teacher_seconds=round(teacher_seconds, 1),
                    distill_seconds=round(distill_seconds, 1))


if __name__ == "__main__":
    main()
