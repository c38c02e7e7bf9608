"""Conversion speed and peak memory: images per second of `img2img.inference.convert.convert` (what
`img2img convert` runs) on a folder of JPEG files, against a loop written the way the published
reference's test script works, for the pix2pix U-Net-256 and the CycleGAN ResNet-9 generators at
their published widths (random weights: speed does not depend on what was learned).

At 256 px both translate every file at its size. At 1024 px ours splits each image into
overlapping tiles (default 512, so memory stays bounded) and the reference runs the whole image
through the generator at once (its `--preprocess none`); the figure to look at there is memory.
Ours runs twice where the onnx extra is installed: with PyTorch (`ours`) and with ONNX Runtime
(`onnxruntime`, `convert --runtime onnxruntime`: the same decoding, tiling and encoding; the
export happens during the untimed warm-up), and a third time with `convert --precision auto`
(`ours-auto`: bf16 autocast where the CPU or GPU computes bf16 natively, else fp32; its PSNR
against the fp32 output is reported beside it), and a fourth time with the int8 graph `export
--int8` writes (`onnxruntime-int8`: calibrated on 8 other JPEGs of the same kind; it counts
towards the targets only at 35 dB PSNR or more from fp32). Each (model, size, variant) runs in
its own fresh process for its peak RSS; at 256 px the variants alternate over `--rounds`.

    python benchmarks/convert_speed.py               # about 15 minutes on a 2-core CPU
    python benchmarks/convert_speed.py --smoke       # tiny networks and images: seconds
"""
from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import benchlib

TARGET = 1.2  # ours / reference images per second at 256 px
# onnxruntime / reference images per second at 256 px, per model; at 1024 px (tiled) it must be
# no slower than ours with PyTorch
ONNX_TARGETS = {"pix2pix": 1.7, "cyclegan": 1.25}
GENERATORS = {"pix2pix": "unet-256", "cyclegan": "resnet-9"}


def _model(job: dict):
    import torch

    from img2img import catalog as default_catalog
    from img2img.model import ImageSpec

    torch.manual_seed(0)
    cls = default_catalog().model(job["model"])
    options = cls.Options(generator=job["generator"], ngf=job["width"], ndf=job["width"])
    return cls(options, spec=ImageSpec(3, job["train_size"])).to(job["device"]).eval()


def reference_convert(model, paths: list[Path], out: Path, device) -> None:
    """The reference test loop: a batch-1 loader that opens each file with PIL, converts to RGB,
    resizes to the load size (bicubic), ToTensor + Normalize(0.5, 0.5); the generator under
    torch.no_grad(); tensor2im ((x + 1) / 2 * 255, cast to uint8); PIL save. Our network in eval
    mode stands in for its generator (same layers; at batch 1 its train-mode batch norm computes
    the same per-image statistics). The reference saves PNG; this saves the input's format, as
    ours does, so both pay the same encoder (PIL's PNG encoder is slower than JPEG)."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms

    generator = model.generators[model.directions[0]]
    for path in paths:
        image = Image.open(path).convert("RGB")
        transform = transforms.Compose([
            transforms.Resize([image.height, image.width], transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
        real = transform(image).unsqueeze(0).to(device)
        with torch.no_grad():
            fake = generator(real)
        array = (np.transpose(fake[0].cpu().float().numpy(), (1, 2, 0)) + 1) / 2.0 * 255.0
        Image.fromarray(array.astype(np.uint8)).save(out / path.name)


def measure(job: dict) -> dict:
    """Warm up on the first file, then convert the folder; report images/s and peak memory."""
    import torch

    from img2img.inference.convert import convert
    from img2img.inference.translator import Translator

    device = benchlib.resolve_device(job["device"])
    job = {**job, "device": str(device)}
    model = _model(job)
    paths = sorted(Path(job["folder"]).glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        extra: dict = {}
        if job["variant"] in ("ours", "onnxruntime", "ours-auto", "onnxruntime-int8"):
            runtime = None
            if job["variant"] == "onnxruntime-int8":  # export --int8, convert --model FILE
                runtime, extra = _int8(model, job)
            if job["variant"] == "onnxruntime":  # convert --runtime onnxruntime
                from img2img.interop.onnx_runtime import OnnxGraph, OnnxRuntime

                runtime = OnnxRuntime(model, device)
                runtime.graphs[(model.directions[0], None)] = OnnxGraph(_exported(model, job),
                                                                        device)
            if job["variant"] == "ours-auto":  # convert --precision auto
                runtime, extra = _reduced_precision(model, paths[0], device)
            translator = Translator(model, Path("random-weights"), device, tile=job["tile"],
                                    runtime=runtime)
            batch = job["batch"] or (1 if device.type == "cpu" else 4)
            run = lambda files: convert(translator, [str(p) for p in files], out,
                                        batch_size=batch)
        else:
            run = lambda files: reference_convert(model, files, out, device)
        run(paths[:1])
        for stale in out.iterdir():
            stale.unlink()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = benchlib.timed(lambda: run(paths), device)
        written = len(list(out.iterdir()))
    if written != len(paths):
        raise RuntimeError(f"{job['variant']} wrote {written} of {len(paths)} images")
    return {**job, **extra, "images": len(paths), "seconds": round(seconds, 3),
            "images_per_s": len(paths) / seconds, "peak_rss_mb": benchlib.peak_rss_mb(),
            "gpu_peak_mb": benchlib.gpu_peak_mb(device)}


def _reduced_precision(model, path: Path, device) -> tuple[object, dict]:
    """`convert --precision auto`'s runtime, its type, and the PSNR of its output against fp32
    on `path` (untimed)."""
    import torch

    from img2img.data.decode import read_image
    from img2img.inference.translator import TorchRuntime, inference_dtype

    dtype = inference_dtype("auto", device)
    runtime = TorchRuntime(model, dtype)
    x = torch.from_numpy(read_image(path, 3)).permute(2, 0, 1)[None].float()
    x = x.div(127.5).sub(1).to(device)
    direction = model.directions[0]
    with torch.inference_mode():
        exact, reduced = TorchRuntime(model)(x, direction, None), runtime(x, direction, None)
    mse = float(((exact - reduced) / 2).pow(2).mean())
    psnr = round(10 * math.log10(1 / mse), 1) if mse > 0 else float("inf")
    return runtime, {"dtype": str(dtype or torch.float32).replace("torch.", ""),
                     "psnr_vs_fp32_db": psnr}


def _exported(model, job: dict) -> bytes:
    """The fp32 ONNX graph `convert --runtime onnxruntime` exports on first use (untimed),
    exported once per network and shared by the sizes and the int8 variant: the same weights
    (seed 0) give the same graph, and the export is most of a smoke run's time."""
    from img2img.interop.export import onnx_model

    cache = Path(job["folder"]).parent / (f"{job['model']}-{job['generator']}-{job['width']}-"
                                          f"{job['train_size']}.onnx")
    if not cache.exists():
        cache.write_bytes(onnx_model(model, model.directions[0], None)[0])
    return cache.read_bytes()


def _int8(model, job: dict) -> tuple[object, dict]:
    """What `export --int8` writes (calibrated on 8 other JPEGs of the same kind, checked on 4
    more) as the runtime `convert --model FILE.onnx` uses, and its PSNR from fp32 (untimed).
    Measured whatever its PSNR; the check counts it only at 35 dB or more."""
    from img2img.interop.exported import GraphRuntime
    from img2img.interop.onnx_runtime import OnnxGraph
    from img2img.interop.quantize import MIN_PSNR, folder_images, quantize_int8, split

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "calibration"
        benchlib.write_jpegs(folder, 12, job["train_size"], job["train_size"], seed=7)
        calibrate, check = split(folder_images(folder, 3, job["train_size"], 12), 8)
    data, score = quantize_int8(_exported(model, job), calibrate, check, min_psnr=0)
    runtime = GraphRuntime(OnnxGraph(data, benchlib.resolve_device(job["device"])),
                           "onnxruntime")
    score = round(score, 1)  # what the table shows decides
    return runtime, {"psnr_vs_fp32_db": score, "kept": score >= MIN_PSNR}


def _variants(requested: str) -> list[str]:
    """The variants asked for; the ONNX Runtime ones only where the onnx extra is installed."""
    variants = requested.split(",")
    if {"onnxruntime", "onnxruntime-int8"} & set(variants):
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            print("onnx extra not installed (pip install 'img2img[onnx]'): no onnxruntime rows",
                  file=sys.stderr)
            variants = [v for v in variants if not v.startswith("onnxruntime")]
    return variants


def _alternate(job: dict, variants: list[str], rounds: int, args) -> dict[str, list[dict]]:
    """Each variant once per round in a fresh process; the order rotates every round, so a
    change in the machine's load hits every variant."""
    found: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(rounds):
        for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
            print(f"  {job['model']} {job['size']} px {variant} (round {r + 1}/{rounds})",
                  file=sys.stderr, flush=True)
            found[variant].append(benchlib.isolated(measure, {**job, "variant": variant},
                                                    args.threads, args.passive_wait))
    return found


def _row(model: str, size: int, found: dict[str, list[dict]]) -> dict:
    row: dict = {"model": model, "size": size}
    for variant, results in found.items():
        images = sum(x["images"] for x in results)
        seconds = sum(x["seconds"] for x in results)
        row[f"{variant} img/s"] = images / seconds
        row[f"{variant} peak RSS MB"] = max(x["peak_rss_mb"] for x in results)
        gpu = [x["gpu_peak_mb"] for x in results if x["gpu_peak_mb"] is not None]
        row[f"{variant} GPU peak MB"] = max(gpu) if gpu else None
    row["speed ours/ref"] = benchlib.ratio(row["ours img/s"], row["reference img/s"])
    row["memory ours/ref"] = benchlib.ratio(row["ours peak RSS MB"], row["reference peak RSS MB"])
    if "onnxruntime" in found:
        row["speed onnxruntime/ref"] = benchlib.ratio(row["onnxruntime img/s"],
                                                      row["reference img/s"])
        row["speed onnxruntime/ours"] = benchlib.ratio(row["onnxruntime img/s"], row["ours img/s"])
    if "ours-auto" in found:
        row["speed ours-auto/ref"] = benchlib.ratio(row["ours-auto img/s"], row["reference img/s"])
        row["auto dtype"] = found["ours-auto"][0]["dtype"]
        row["auto PSNR vs fp32 dB"] = found["ours-auto"][0]["psnr_vs_fp32_db"]
    if "onnxruntime-int8" in found:
        row["speed int8/ref"] = benchlib.ratio(row["onnxruntime-int8 img/s"],
                                               row["reference img/s"])
        row["int8 PSNR vs fp32 dB"] = found["onnxruntime-int8"][0]["psnr_vs_fp32_db"]
        row["int8 kept"] = found["onnxruntime-int8"][0]["kept"]
    return row


def _checks(rows: list[dict], first_size: int) -> list[dict]:
    checks = []
    for row in rows:
        what = f"{row['model']} convert at {row['size']} px"
        if row["size"] == first_size:
            checks.append({"target": f"{what}, ours/reference img/s", "limit": TARGET,
                           "measured": row["speed ours/ref"]})
        if "speed onnxruntime/ref" in row and row["size"] == first_size:
            checks.append({"target": f"{what}, onnxruntime/reference img/s",
                           "limit": ONNX_TARGETS.get(row["model"], TARGET),
                           "measured": row["speed onnxruntime/ref"]})
        if "speed ours-auto/ref" in row and row["size"] == first_size:
            checks.append({"target": f"{what}, ours --precision auto ({row['auto dtype']}, "
                                     f"{row['auto PSNR vs fp32 dB']} dB from fp32)/reference "
                                     "img/s", "limit": ONNX_TARGETS.get(row["model"], TARGET),
                           "measured": row["speed ours-auto/ref"]})
        if "speed int8/ref" in row and row["size"] == first_size:
            kept = "" if row["int8 kept"] else ", under 35 dB: not counted"
            checks.append({"target": f"{what}, onnxruntime int8 (export --int8, "
                                     f"{row['int8 PSNR vs fp32 dB']} dB from fp32{kept})"
                                     "/reference img/s",
                           "limit": ONNX_TARGETS.get(row["model"], TARGET),
                           "measured": row["speed int8/ref"] if row["int8 kept"] else 0.0})
        if "speed onnxruntime/ours" in row and row["size"] != first_size:
            checks.append({"target": f"{what} (tiled), onnxruntime/ours (PyTorch) img/s",
                           "limit": 1.0, "measured": row["speed onnxruntime/ours"]})
    return [{**c, "met": c["measured"] >= c["limit"], "limit": f">= {c['limit']}"}
            for c in checks]


def main(argv: list[str] | None = None) -> int:
    p = benchlib.parser("convert_speed", __doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=16, help="images per run at 256 px")
    p.add_argument("--large-count", type=int, default=2, help="images per run at 1024 px")
    p.add_argument("--sizes", default="256,1024", help="image sizes (square JPEGs)")
    p.add_argument("--rounds", type=int, default=2, help="alternating runs per variant at 256 px")
    p.add_argument("--batch-size", type=int, default=0,
                   help="ours: images per batch (0 = the CLI default: 1 on a CPU, 4 on a GPU)")
    p.add_argument("--tile", type=int, default=512,
                   help="ours: tile size (the CLI's default is 1024; 512 makes 1024 px images "
                        "tiled, to measure tiling)")
    p.add_argument("--models", default="pix2pix,cyclegan", help="comma-separated subset")
    p.add_argument("--variants", default="reference,ours,onnxruntime,ours-auto,onnxruntime-int8",
                   help="comma-separated subset (reference and ours are needed for the ratios; "
                        "ours-auto is ours with convert --precision auto, onnxruntime-int8 a "
                        "graph from export --int8)")
    p.add_argument("--width", type=int, default=64, help="ngf = ndf (64 = published)")
    args = p.parse_args(argv)
    benchlib.setup_torch(args.threads)
    train_size, generators = 256, dict(GENERATORS)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.smoke:
        args.count, args.large_count, args.rounds, args.width, args.tile = 3, 1, 1, 8, 64
        sizes, train_size, generators = [32, 96], 32, {"pix2pix": "unet-32", "cyclegan": "resnet-9"}
    variants = _variants(args.variants)
    quiet = benchlib.wait_for_quiet(args.wait_load)
    machine = benchlib.machine()
    rows, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            count = args.count if size == sizes[0] else args.large_count
            folder = Path(tmp) / f"jpeg{size}"
            benchlib.write_jpegs(folder, count, size, size)
            for model in args.models.split(","):
                job = {"model": model, "generator": generators[model], "size": size,
                       "train_size": train_size, "folder": str(folder), "width": args.width,
                       "batch": args.batch_size, "tile": args.tile, "device": args.device}
                found = _alternate(job, variants, args.rounds if size == sizes[0] else 1, args)
                runs.extend(result for results in found.values() for result in results)
                rows.append(_row(model, size, found))
    columns = ["model", "size"] + [f"{v} img/s" for v in variants] + ["speed ours/ref"]
    if "onnxruntime" in variants:
        columns += ["speed onnxruntime/ref", "speed onnxruntime/ours"]
    if "ours-auto" in variants:
        columns += ["speed ours-auto/ref", "auto dtype", "auto PSNR vs fp32 dB"]
    if "onnxruntime-int8" in variants:
        columns += ["speed int8/ref", "int8 PSNR vs fp32 dB"]
    columns += [f"{v} peak RSS MB" for v in variants] + ["memory ours/ref"]
    if any(row["ours GPU peak MB"] is not None for row in rows):
        columns += [f"{v} GPU peak MB" for v in variants]
    benchlib.print_table(rows, columns, f"convert, device {args.device}, ours batch "
                                        f"{args.batch_size or 'CLI default'}, tile {args.tile}")
    checks = _checks(rows, sizes[0])
    benchlib.finish(args, "convert_speed", machine, quiet, checks, rows=rows, runs=runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
