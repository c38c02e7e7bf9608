"""Quality at a fixed wall-clock budget: trains pix2pix on the bundled paired set
`datasets/faces_edges2photo` (train/ side-by-side edges|photo, 128 px halves) for `--minutes`,
then reports PSNR, SSIM and L1 on the held-out test/ pairs; trains cyclegan likewise on
`datasets/faces_grey2colour` (trainA grey faces, trainB colour faces) and reports the sliced
Wasserstein distance (SWD, lower is better) between translated testA and real testB, next to the
SWD of untranslated testA (what doing nothing scores) and of real trainB (what real images score).

Training runs through the real trainer and stops the way Ctrl-C stops it (after the current step,
with a checkpoint); evaluation loads that checkpoint with `img2img.load`, as `convert` would.

    python benchmarks/quality.py                     # 5 minutes per model, published networks
    python benchmarks/quality.py --minutes 20 --models pix2pix
    python benchmarks/quality.py --smoke             # 32 px, narrow networks, 3 steps: seconds
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchlib

DATASETS = Path(__file__).resolve().parent.parent / "datasets"


def read_folder(folder: Path, size: int, limit: int | None = None, halves: bool = False):
    """Images of `folder` as float (N,3,size,size) in [-1, 1]; with `halves`, side-by-side files
    give (left, right) batches."""
    import torch

    from img2img.data import list_images, read_image
    from img2img.ops import resize, to_model_range

    paths = list_images(folder)[:limit]
    images = [to_model_range(torch.from_numpy(read_image(p, 3)).permute(2, 0, 1)[None])
              for p in paths]
    if not halves:
        return resize(torch.cat(images), size)
    width = images[0].shape[-1] // 2
    return (resize(torch.cat([x[..., :width] for x in images]), size),
            resize(torch.cat([x[..., width:] for x in images]), size))


def train(model: str, options: dict, data: dict, args, runs_dir: Path) -> tuple[Path, dict]:
    """Train through the real trainer until the budget is spent; returns (run folder, facts)."""
    from img2img import catalog as default_catalog
    from img2img.trainer import TrainConfig, Trainer

    cls = default_catalog().model(model)
    config = TrainConfig(**data, **cls.training_defaults, epochs=100000, decay_epochs=0,
                         load_size=args.load_size, crop_size=args.size, device=args.device,
                         max_steps=args.max_steps, sample_every=0, checkpoint_every=0,
                         log_every=25, runs_dir=runs_dir, name=f"quality-{model}",
                         workers=args.workers, seed=args.seed)
    trainer = Trainer(cls, cls.Options(**options), config, progress=False)
    # At the deadline, stop exactly as a user's Ctrl-C does: after the step, with a checkpoint.
    deadline = threading.Timer(args.minutes * 60, os.kill, (os.getpid(), signal.SIGINT))
    started = time.perf_counter()
    deadline.start()
    try:
        run_dir = trainer.fit()
    finally:
        deadline.cancel()
    seconds = time.perf_counter() - started
    return run_dir, {"model": model, "steps": trainer.step, "epochs": round(
        trainer.step / trainer.steps_per_epoch(), 2), "train_s": round(seconds, 1),
        "s/step": round(seconds / max(trainer.step, 1), 3), "options": options}


def evaluate_pix2pix(run_dir: Path, args) -> dict:
    import torch

    import img2img
    from img2img.metrics import l1, psnr, ssim

    translator = img2img.load(run_dir, device=args.device)
    a, b = read_folder(DATASETS / "faces_edges2photo" / "test", args.size, args.limit, halves=True)
    fake = torch.cat([translator.translate(a[i:i + 8]) for i in range(0, len(a), 8)]).cpu()
    _, train_b = read_folder(DATASETS / "faces_edges2photo" / "train", args.size, halves=True)
    mean_photo = train_b.mean(0, keepdim=True).expand_as(b)
    return {"test_pairs": len(a), "psnr": float(psnr(fake, b).mean()),
            "ssim": float(ssim(fake, b).mean()), "l1": float(l1(fake, b).mean()),
            "mean_photo_psnr": float(psnr(mean_photo, b).mean()),
            "mean_photo_ssim": float(ssim(mean_photo, b).mean())}


def evaluate_cyclegan(run_dir: Path, args) -> dict:
    import torch

    import img2img
    from img2img.metrics import swd

    translator = img2img.load(run_dir, device=args.device)
    root = DATASETS / "faces_grey2colour"
    test_a = read_folder(root / "testA", args.size, args.limit)
    test_b = read_folder(root / "testB", args.size, args.limit)
    train_b = read_folder(root / "trainB", args.size, args.limit)
    fake_b = torch.cat([translator.translate(test_a[i:i + 8], "a_to_b")
                        for i in range(0, len(test_a), 8)]).cpu()
    return {"test_images": len(test_a), "swd": swd(fake_b, test_b)["swd"],
            "swd_untranslated": swd(test_a, test_b)["swd"],
            "swd_real_trainB": swd(train_b, test_b)["swd"]}


def main(argv: list[str] | None = None) -> int:
    p = benchlib.parser("quality", __doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    p.add_argument("--models", default="pix2pix,cyclegan", help="comma-separated subset")
    p.add_argument("--size", type=int, default=128, help="crop size (the sets are 128 px)")
    p.add_argument("--load-size", type=int, default=142, help="resize before the random crop")
    p.add_argument("--width", type=int, default=64, help="ngf = ndf (64 = published)")
    p.add_argument("--workers", type=int, default=2, help="loader workers (trainer default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="also stop after this many steps")
    p.add_argument("--limit", type=int, default=None, help="evaluate on at most N test images")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="keep the run folders here (default: a temporary folder)")
    args = p.parse_args(argv)
    benchlib.setup_torch(args.threads, args.passive_wait)
    if args.smoke:
        args.minutes, args.size, args.load_size, args.width = 0.5, 32, 36, 8
        args.max_steps, args.limit, args.workers = 3, 4, 0
    quiet = benchlib.wait_for_quiet(args.wait_load)
    machine = benchlib.machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        width = {"ngf": args.width, "ndf": args.width}
        if "pix2pix" in args.models.split(","):
            run_dir, facts = train("pix2pix", {"generator": f"unet-{args.size}", **width},
                                   {"data": DATASETS / "faces_edges2photo" / "train"}, args,
                                   runs_dir)
            rows.append({**facts, **evaluate_pix2pix(run_dir, args)})
        if "cyclegan" in args.models.split(","):
            root = DATASETS / "faces_grey2colour"
            run_dir, facts = train("cyclegan", {"generator": "resnet-9", **width},
                                   {"a": root / "trainA", "b": root / "trainB"}, args, runs_dir)
            rows.append({**facts, **evaluate_cyclegan(run_dir, args)})
    title = f"Quality after {args.minutes:g} min of training per model, {args.size} px"
    for row in rows:
        if row["model"] == "pix2pix":
            benchlib.print_table([row], ["model", "steps", "epochs", "s/step", "psnr", "ssim", "l1",
                                         "mean_photo_psnr", "mean_photo_ssim"],
                                 f"{title}: pix2pix on faces_edges2photo test/ "
                                 f"({row['test_pairs']} pairs; higher is better)")
        else:
            benchlib.print_table([row], ["model", "steps", "epochs", "s/step", "swd",
                                         "swd_untranslated", "swd_real_trainB"],
                                 f"{title}: cyclegan on faces_grey2colour, SWD to testB "
                                 f"({row['test_images']} images; lower is better)")
    benchlib.finish(args, "quality", machine, quiet, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
