"""Data-loader speed: training samples per second of the paired and unpaired datasets through the
DataLoader the trainer builds (its workers, sampler and worker set-up), including the trainer's
uint8 -> [-1, 1] conversion of each batch, against datasets written the way the published
reference's `AlignedDataset` and `UnalignedDataset` work, through a DataLoader with the same
worker count and batch size.

The folders hold generated photo-like JPEGs the size of the usual benchmark sets: paired files
are 512x256 side-by-side A|B images (two 256 px halves, as facades or edges2shoes), unpaired
folders hold 256x256 images (as horse2zebra). Recipe: load 286, random crop 256, random flip.
A sample is one (a, b) pair, i.e. two images.

    python benchmarks/loader_speed.py                # about 2 minutes on a 2-core CPU
    python benchmarks/loader_speed.py --smoke        # a few tiny images: seconds
"""
from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

import benchlib

TARGET = 2.0  # ours / reference samples per second


# -- the reference's datasets -----------------------------------------------------------------
def _reference_transform(load: int, crop: int, params: dict | None):
    """The reference `get_transform`: Resize([load, load], bicubic), a crop (RandomCrop, or the
    pair's shared crop), a flip (RandomHorizontalFlip, or the pair's shared one), ToTensor,
    Normalize((0.5,) * 3, (0.5,) * 3)."""
    from PIL import Image
    from torchvision import transforms

    steps = [transforms.Resize([load, load], transforms.InterpolationMode.BICUBIC)]
    if params is None:
        steps += [transforms.RandomCrop(crop), transforms.RandomHorizontalFlip()]
    else:
        x, y = params["crop_pos"]
        steps.append(transforms.Lambda(lambda img: img.crop((x, y, x + crop, y + crop))))
        if params["flip"]:
            steps.append(transforms.Lambda(lambda img: img.transpose(Image.FLIP_LEFT_RIGHT)))
    steps += [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    return transforms.Compose(steps)


class ReferenceAligned:
    """The reference `AlignedDataset`: open the A|B file with PIL, convert to RGB, split it in
    halves, draw one crop position and flip for the pair, transform both halves."""

    def __init__(self, paths: list[Path], load: int, crop: int):
        self.paths, self.load, self.crop = paths, load, crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        path = self.paths[index]
        ab = Image.open(path).convert("RGB")
        w, h = ab.size
        a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        top = random.randint(0, max(0, self.load - self.crop))
        left = random.randint(0, max(0, self.load - self.crop))
        params = {"crop_pos": (left, top), "flip": random.random() > 0.5}
        transform = _reference_transform(self.load, self.crop, params)
        return {"A": transform(a), "B": transform(b), "A_paths": str(path), "B_paths": str(path)}


class ReferenceUnaligned:
    """The reference `UnalignedDataset`: A in order, B drawn at random, each opened with PIL,
    converted to RGB and given its own random crop and flip."""

    def __init__(self, a_paths: list[Path], b_paths: list[Path], load: int, crop: int):
        self.a_paths, self.b_paths = a_paths, b_paths
        self.transform = _reference_transform(load, crop, None)

    def __len__(self) -> int:
        return max(len(self.a_paths), len(self.b_paths))

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        a_path = self.a_paths[index % len(self.a_paths)]
        b_path = self.b_paths[random.randint(0, len(self.b_paths) - 1)]
        a = self.transform(Image.open(a_path).convert("RGB"))
        b = self.transform(Image.open(b_path).convert("RGB"))
        return {"A": a, "B": b, "A_paths": str(a_path), "B_paths": str(b_path)}


# -- one measurement (child process) ----------------------------------------------------------
def _loaders(job: dict):
    import torch

    root, load, crop = Path(job["root"]), job["load"], job["crop"]
    if job["variant"] == "reference":
        if job["kind"] == "paired":
            dataset = ReferenceAligned(sorted((root / "paired").glob("*.jpg")), load, crop)
        else:
            dataset = ReferenceUnaligned(sorted((root / "trainA").glob("*.jpg")),
                                         sorted((root / "trainB").glob("*.jpg")), load, crop)
        loader = torch.utils.data.DataLoader(dataset, batch_size=job["batch"], shuffle=True,
                                             num_workers=job["workers"])
        device = benchlib.resolve_device(job["device"])
        return loader, lambda batch: (batch["A"].to(device), batch["B"].to(device))

    from img2img import catalog as default_catalog
    from img2img.training.trainer import TrainConfig, Trainer

    # The trainer's own loader and batch conversion; the model (narrow, so it builds in a moment)
    # only decides which dataset kind the trainer opens.
    cls = default_catalog().model("pix2pix" if job["kind"] == "paired" else "cyclegan")
    folders = ({"data": root / "paired"} if job["kind"] == "paired"
               else {"a": root / "trainA", "b": root / "trainB"})
    config = TrainConfig(**folders, batch_size=job["batch"], load_size=load, crop_size=crop,
                         workers=job["workers"], device=job["device"],
                         runs_dir=Path(job["runs"]))
    generator = f"unet-{crop}" if job["kind"] == "paired" else "resnet-6"
    trainer = Trainer(cls, cls.Options(generator=generator, ngf=4, ndf=4), config, progress=False)
    return trainer._loader(), lambda batch: trainer._to_device(batch).values()


def measure(job: dict) -> dict:
    """Iterate one epoch; time everything after the first `warmup` batches (worker start-up)."""
    import torch

    torch.manual_seed(0)
    random.seed(0)
    loader, prepare = _loaders(job)
    batches, started = 0, None
    for batch in loader:
        # What a training step needs before its forward pass, then one read of every value (the
        # model's first layer): the reference's floats in shared memory are paged in only then.
        for value in prepare(batch):
            value.sum()
        batches += 1
        if batches == job["warmup"]:
            started = time.perf_counter()
    seconds = time.perf_counter() - started
    samples = (batches - job["warmup"]) * job["batch"]
    return {**job, "samples": samples, "seconds": round(seconds, 3),
            "samples_per_s": samples / seconds, "peak_rss_mb": benchlib.peak_rss_mb()}


def write_folders(root: Path, count: int, size: int) -> None:
    benchlib.write_jpegs(root / "paired", count, size, 2 * size, seed=1)
    benchlib.write_jpegs(root / "trainA", count, size, size, seed=2)
    benchlib.write_jpegs(root / "trainB", count, size, size, seed=3)


def main(argv: list[str] | None = None) -> int:
    p = benchlib.parser("loader_speed", __doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=400, help="files per folder (one epoch)")
    p.add_argument("--image-size", type=int, default=256,
                   help="side of each image (paired files are twice as wide)")
    p.add_argument("--load-size", type=int, default=286)
    p.add_argument("--crop-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2, help="loader workers (trainer default 2)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size (published recipe: 1)")
    p.add_argument("--rounds", type=int, default=2, help="alternating runs per variant")
    args = p.parse_args(argv)
    benchlib.setup_torch(args.threads)
    warmup = 10
    if args.smoke:
        args.count, args.image_size, args.load_size, args.crop_size = 12, 40, 36, 32
        args.rounds, warmup = 1, 2
    quiet = benchlib.wait_for_quiet(args.wait_load)
    machine = benchlib.machine()
    rows, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        write_folders(Path(tmp), args.count, args.image_size)
        for kind in ("paired", "unpaired"):
            found = {"reference": [], "ours": []}
            for r in range(args.rounds):
                order = ("reference", "ours") if r % 2 == 0 else ("ours", "reference")
                for variant in order:
                    job = {"kind": kind, "variant": variant, "root": tmp, "load": args.load_size,
                           "crop": args.crop_size, "workers": args.workers,
                           "batch": args.batch_size, "warmup": warmup,
                           "runs": str(Path(tmp) / "runs"), "device": args.device}
                    print(f"  {kind} {variant} (round {r + 1}/{args.rounds})", file=sys.stderr,
                          flush=True)
                    result = benchlib.isolated(measure, job, args.threads,
                                               args.passive_wait)
                    found[variant].append(result)
                    runs.append(result)
            row = {"loader": kind}
            for variant, results in found.items():
                row[f"{variant} samples/s"] = (sum(x["samples"] for x in results)
                                               / sum(x["seconds"] for x in results))
            row["ours/ref"] = benchlib.ratio(row["ours samples/s"], row["reference samples/s"])
            rows.append(row)
    benchlib.print_table(rows, ["loader", "reference samples/s", "ours samples/s", "ours/ref"],
                         f"Loaders: {args.image_size} px JPEGs, load {args.load_size}, crop "
                         f"{args.crop_size}, flip, {args.workers} workers, batch "
                         f"{args.batch_size}")
    checks = [{"target": f"{row['loader']} loader ours/reference samples/s",
               "limit": f">= {TARGET}", "measured": row["ours/ref"],
               "met": row["ours/ref"] >= TARGET} for row in rows]
    benchlib.finish(args, "loader_speed", machine, quiet, checks, rows=rows, runs=runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
