"""Quality at a fixed wall-clock budget: the published recipe against the recommended one
(`--preset fast`), each trained for the same number of minutes, over several seeds.

pix2pix trains on the bundled paired set `datasets/faces_edges2photo` (train/ side-by-side
edges|photo, 128 px halves) and is scored on the 16 held-out test/ pairs: PSNR, SSIM and L1 of
the output against the real photo, next to a flat image of the training photos' mean colour and
the identity (the edge map itself). cyclegan trains on `datasets/faces_grey2colour` (trainA grey
faces, trainB colour faces) and is scored by the sliced Wasserstein distance (SWD, lower is
better) between translated testA and real testB, next to untranslated testA.

Training runs through the real trainer with the recipe's preset and stops the way Ctrl-C stops
it (after the current step, with a checkpoint); evaluation loads that checkpoint with
`img2img.load`, as `convert` would. Recipes alternate within each seed (published first on even
seeds, fast first on odd ones), so a change in machine load hits both.

    python benchmarks/quality.py --minutes 5,20 --seeds 3   # the comparison, both models
    python benchmarks/quality.py --minutes 3 --ablation     # each candidate alone, pix2pix
    python benchmarks/quality.py --minutes 3 --ada          # the fast recipe with and without --ada
    python benchmarks/quality.py --smoke                    # 32 px, narrow networks: seconds
"""
from __future__ import annotations

import functools
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchlib

DATASETS = Path(__file__).resolve().parent.parent / "datasets"

RECIPES = {"published": (None, {}), "fast": ("fast", {})}  # recipe -> (preset, settings)
# --ada: the recommended recipe with and without adaptive discriminator augmentation.
ADA_RECIPES = {"fast": ("fast", {}), "fast + ada": ("fast", {"ada": True})}

# Each candidate of the fast recipe on its own, on top of the published pix2pix recipe.
ABLATION = {
    "published": {},
    "resize-conv upsampling": {"upsample": "resize"},
    "DiffAugment (color,translation,cutout)": {"diff_augment": "color,translation,cutout"},
    "narrow (ngf = ndf = 16)": {"ngf": 16, "ndf": 16},
    "lr 1e-3 + 100 warm-up steps": {"lr": 1e-3, "warmup_steps": 100},
    "generator average (ema 0.995)": {"ema": 0.995},
    "2-scale D + feature matching 10": {"d_scales": 2, "feature_matching": 10.0},
    "hinge loss + spectral norm": {"gan_loss": "hinge", "spectral_norm": True},
    "TTUR (D lr 4e-4)": {"lr_d": 4e-4},
}


def read_folder(folder: Path, size: int, limit: int | None = None, halves: bool = False):
    """Images of `folder` as float (N,3,size,size) in [-1, 1]; with `halves`, side-by-side files
    give (left, right) batches."""
    import torch

    from img2img.data import list_images, read_image
    from img2img.data.ops import resize, to_model_range

    paths = list_images(folder)[:limit]
    images = [to_model_range(torch.from_numpy(read_image(p, 3)).permute(2, 0, 1)[None])
              for p in paths]
    if not halves:
        return resize(torch.cat(images), size)
    width = images[0].shape[-1] // 2
    return (resize(torch.cat([x[..., :width] for x in images]), size),
            resize(torch.cat([x[..., width:] for x in images]), size))


def model_settings(model: str, args) -> dict:
    """The data and the published networks at the benchmark's size and width."""
    # Widths only when asked for: a recipe's own (the fast preset's) must not be overridden.
    width = {"ngf": args.width, "ndf": args.width} if args.width else {}
    if model == "pix2pix":
        return {"data": DATASETS / "faces_edges2photo" / "train",
                "generator": f"unet-{args.size}", **width}
    root = DATASETS / "faces_grey2colour"
    return {"a": root / "trainA", "b": root / "trainB", "generator": "resnet-9", **width}


def train(model: str, preset: str | None, settings: dict, args, runs_dir: Path,
          minutes: float, seed: int) -> tuple[Path, dict]:
    """Train through the real trainer until the budget is spent; returns (run folder, facts).
    `settings` (the benchmark's data and networks, an ablation's changes) override the preset
    the way typed flags do."""
    from img2img import catalog as installed_catalog
    from img2img.api import _resolve
    from img2img.training.trainer import Trainer

    catalog = installed_catalog()
    cls = catalog.model(model)
    typed = {"epochs": 100000, "decay_epochs": 0, "load_size": args.load_size,
             "crop_size": args.size, "device": args.device, "max_steps": args.max_steps,
             "sample_every": 0, "checkpoint_every": 0, "log_every": 25, "runs_dir": runs_dir,
             "name": f"quality-{model}-{preset or 'published'}-{seed}-{time.time_ns()}",
             "workers": args.workers, "seed": seed,
             **model_settings(model, args), **settings}
    preset_used, options, config = _resolve(catalog, cls, preset, None, typed)
    trainer = Trainer(cls, options, config, preset=preset_used, progress=False)
    # At the deadline, stop exactly as a user's Ctrl-C does: after the step, with a checkpoint.
    deadline = threading.Timer(minutes * 60, os.kill, (os.getpid(), signal.SIGINT))
    started = time.perf_counter()
    deadline.start()
    try:
        run_dir = trainer.fit()
    finally:
        deadline.cancel()
    seconds = time.perf_counter() - started
    return run_dir, {"model": model, "steps": trainer.state.step, "epochs": round(
        trainer.state.step / trainer.steps_per_epoch(), 2), "train_s": round(seconds, 1),
        "s/step": round(seconds / max(trainer.state.step, 1), 3)}


def _translate(run_dir: Path, images, args, direction: str | None = None):
    import torch

    import img2img

    translator = img2img.load(run_dir, device=args.device)
    return torch.cat([translator.translate(images[i:i + 8], direction)
                      for i in range(0, len(images), 8)]).cpu()


def paired_test(args):
    """(test edges, test photos, flat image of the training photos' mean colour), read once."""
    return _paired_test(args.size, args.limit)


@functools.lru_cache(maxsize=None)
def _paired_test(size: int, limit: int | None):
    a, b = read_folder(DATASETS / "faces_edges2photo" / "test", size, limit, halves=True)
    _, train_b = read_folder(DATASETS / "faces_edges2photo" / "train", size, halves=True)
    return a, b, train_b.mean((0, 2, 3), keepdim=True).expand_as(b)


def score_pix2pix(fake, args) -> dict:
    from img2img.evaluation.metrics import l1, psnr, ssim

    a, b, _ = paired_test(args)
    return {"test_pairs": len(a), "psnr": float(psnr(fake, b).mean()),
            "ssim": float(ssim(fake, b).mean()), "l1": float(l1(fake, b).mean())}


def pix2pix_baselines(args) -> dict:
    from img2img.evaluation.metrics import l1, psnr, ssim

    a, b, flat = paired_test(args)
    return {"flat": {"psnr": float(psnr(flat, b).mean()), "ssim": float(ssim(flat, b).mean()),
                     "l1": float(l1(flat, b).mean())},
            "identity": {"psnr": float(psnr(a, b).mean()), "ssim": float(ssim(a, b).mean()),
                         "l1": float(l1(a, b).mean())}}


def unpaired_test(args):
    """(testA, testB), read once."""
    return _unpaired_test(args.size, args.limit)


@functools.lru_cache(maxsize=None)
def _unpaired_test(size: int, limit: int | None):
    root = DATASETS / "faces_grey2colour"
    return read_folder(root / "testA", size, limit), read_folder(root / "testB", size, limit)


def score_cyclegan(fake, args) -> dict:
    from img2img.evaluation.metrics import swd

    test_a, test_b = unpaired_test(args)
    return {"test_images": len(test_a), "swd": swd(fake, test_b)["swd"]}


def cyclegan_baselines(args) -> dict:
    from img2img.evaluation.metrics import swd

    test_a, test_b = unpaired_test(args)
    return {"untranslated": {"swd": swd(test_a, test_b)["swd"]}}


def run_one(model: str, preset: str | None, settings: dict, args, runs_dir: Path,
            minutes: float, seed: int) -> tuple[dict, object]:
    run_dir, facts = train(model, preset, settings, args, runs_dir, minutes, seed)
    if model == "pix2pix":
        a, _, _ = paired_test(args)
        fake = _translate(run_dir, a, args)
        return {**facts, **score_pix2pix(fake, args)}, fake
    test_a, _ = unpaired_test(args)
    fake = _translate(run_dir, test_a, args, "a_to_b")
    return {**facts, **score_cyclegan(fake, args)}, fake


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: list[dict], baselines: dict) -> list[dict]:
    """One row per (model, minutes, recipe): mean and seed-to-seed sd of every score, and the
    gains over the baseline (PSNR gain in dB over the flat image; L1 as a fraction of the flat
    image's L1 saved; SWD as is)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["minutes"], row["recipe"]), []).append(row)
    out = []
    for (model, minutes, recipe), found in groups.items():
        summary = {"model": model, "minutes": minutes, "recipe": recipe, "seeds": len(found),
                   "steps": round(statistics.fmean(r["steps"] for r in found))}
        keys = ("psnr", "ssim", "l1") if model == "pix2pix" else ("swd",)
        for key in keys:
            summary[key], summary[f"{key} sd"] = _mean_sd([r[key] for r in found])
        if model == "pix2pix":
            flat = baselines["pix2pix"]["flat"]
            summary["psnr gain"], summary["psnr gain sd"] = _mean_sd(
                [r["psnr"] - flat["psnr"] for r in found])
            summary["l1 saved"], summary["l1 saved sd"] = _mean_sd(
                [flat["l1"] - r["l1"] for r in found])
        out.append(summary)
    return out


def targets(summary: list[dict]) -> list[dict]:
    """The issue's targets at each budget: the fast recipe's PSNR gain over the flat image and
    its L1 saving at least twice the published recipe's, its SWD at most 0.8x, each difference
    larger than the seed-to-seed spread (the larger sd of the two recipes)."""
    checks = []
    by = {(s["model"], s["minutes"], s["recipe"]): s for s in summary}
    for (model, minutes, recipe), fast in by.items():
        published = by.get((model, minutes, "published"))
        if recipe != "fast" or published is None:
            continue
        pairs = ([("psnr gain", 2.0, "x published's gain"), ("l1 saved", 2.0, "x published's saving")]
                 if model == "pix2pix" else [("swd", 0.8, "x published's SWD")])
        for key, limit, what in pairs:
            ratio = benchlib.ratio(fast[key], published[key])
            spread = max(fast[f"{key} sd"], published[f"{key} sd"])
            if key == "swd":
                beats = ratio <= limit
            else:  # a gain: positive, and at least `limit` times the published one if that is
                beats = fast[key] > 0 and fast[key] >= limit * max(published[key], 0.0)
            # A ratio to a published gain that is not positive says nothing: show both values.
            shown = (f"{ratio:.2f}x" if key == "swd" or published[key] > 0 else
                     f"{fast[key]:+.3f} against {published[key]:+.3f}")
            checks.append({"target": f"{model} {minutes:g} min: {key}", "limit":
                           f"{'>=' if key != 'swd' else '<='} {limit:g}{what}",
                           "measured": f"{shown} (diff {fast[key] - published[key]:+.3f}, "
                                       f"spread {spread:.3f})",
                           "met": bool(beats and abs(fast[key] - published[key]) > spread)})
    return checks


def save_grid(path: Path, columns: dict) -> Path:
    from img2img.data.images import grid, write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, grid(columns))
    print(f"wrote {path}", flush=True)
    return path


def comparison(args, runs_dir: Path, recipes: dict = RECIPES
               ) -> tuple[list[dict], dict, list[Path]]:
    models = args.models.split(",")
    baselines = {}
    if "pix2pix" in models:
        baselines["pix2pix"] = pix2pix_baselines(args)
    if "cyclegan" in models:
        baselines["cyclegan"] = cyclegan_baselines(args)
    rows, fakes = [], {}
    for minutes in args.budgets:
        for seed in range(args.seed, args.seed + args.seeds):
            order = list(recipes) if seed % 2 == 0 else list(recipes)[::-1]
            for recipe in order:
                for model in models:
                    preset, settings = recipes[recipe]
                    row, fake = run_one(model, preset, settings, args, runs_dir, minutes, seed)
                    row.update(recipe=recipe, minutes=minutes, seed=seed)
                    rows.append(row)
                    print(f"{model} {recipe} {minutes:g} min seed {seed}: "
                          f"{ {k: v for k, v in row.items() if k in ('steps', 'psnr', 'l1', 'swd')} }",
                          file=sys.stderr, flush=True)
                    if seed == args.seed:
                        fakes[(model, minutes, recipe)] = fake
    grids = []
    for model in models:
        for minutes in args.budgets:
            source, target = (paired_test(args)[:2] if model == "pix2pix" else unpaired_test(args))
            columns = {"input": source[:8],
                       **{recipe: fakes[(model, minutes, recipe)][:8] for recipe in recipes}}
            if model == "pix2pix":
                columns["real"] = target[:8]
            name = f"quality-{model}-{minutes:g}min" + ("-ada" if recipes is ADA_RECIPES else "")
            grids.append(save_grid(args.figures / f"{name}.png", columns))
    return rows, baselines, grids


def ada_verdict(summary: list[dict]) -> list[dict]:
    """Whether --ada beats the same recipe without it, per model and budget: each score's
    difference against the seed-to-seed spread (the larger sd of the two)."""
    checks = []
    by = {(s["model"], s["minutes"], s["recipe"]): s for s in summary}
    for (model, minutes, recipe), with_ada in by.items():
        without = by.get((model, minutes, "fast"))
        if recipe != "fast + ada" or without is None:
            continue
        for key, higher in ((("psnr", True), ("l1", False)) if model == "pix2pix"
                            else (("swd", False),)):
            diff = with_ada[key] - without[key]
            spread = max(with_ada[f"{key} sd"], without[f"{key} sd"])
            better = diff > 0 if higher else diff < 0
            checks.append({"target": f"{model} {minutes:g} min: {key} with --ada",
                           "limit": f"{'higher' if higher else 'lower'} beyond the seed spread",
                           "measured": f"{with_ada[key]:.4g} against {without[key]:.4g} "
                                       f"(diff {diff:+.4f}, spread {spread:.4f})",
                           "met": bool(better and abs(diff) > spread)})
    return checks


def ablation(args, runs_dir: Path) -> list[dict]:
    rows = []
    flat = pix2pix_baselines(args)["flat"]
    minutes = args.budgets[0]
    # The smoke's 32 px crops are too small for a 3-layer PatchGAN at two scales.
    tiny = {"d_layers": 2} if args.smoke else {}
    for name, settings in ABLATION.items():
        scores = []
        for seed in range(args.seed, args.seed + args.seeds):
            row, _ = run_one("pix2pix", None, {**tiny, **settings}, args, runs_dir, minutes, seed)
            scores.append(row)
        psnr_gain = _mean_sd([r["psnr"] - flat["psnr"] for r in scores])
        l1_saved = _mean_sd([flat["l1"] - r["l1"] for r in scores])
        rows.append({"candidate": name, "minutes": minutes, "seeds": len(scores),
                     "steps": round(statistics.fmean(r["steps"] for r in scores)),
                     "psnr gain": psnr_gain[0], "psnr gain sd": psnr_gain[1],
                     "l1 saved": l1_saved[0], "l1 saved sd": l1_saved[1],
                     "ssim": statistics.fmean(r["ssim"] for r in scores)})
        print(f"ablation {name}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


# -- CUT beside CycleGAN (--one-sided) ----------------------------------------------------------
ONE_SIDED = ("cyclegan", "cut")


def one_sided(args, runs_dir: Path) -> list[dict]:
    """CycleGAN and CUT with their published settings (ResNet-9, PatchGAN, lsgan; CUT's PatchNCE
    and identity term) on faces_grey2colour for the same wall-clock budget and seeds, the order
    alternating by seed; SWD of translated testA to testB, lower is better."""
    rows = []
    minutes = args.budgets[0]
    for seed in range(args.seed, args.seed + args.seeds):
        for model in ONE_SIDED if seed % 2 == 0 else ONE_SIDED[::-1]:
            row, _ = run_one(model, None, {}, args, runs_dir, minutes, seed)
            rows.append({**row, "minutes": minutes, "seed": seed})
            print(f"one-sided {model} seed {seed}: steps {row['steps']} swd {row['swd']:.2f}",
                  file=sys.stderr, flush=True)
    return rows


def one_sided_summary(rows: list[dict], untranslated: float) -> list[dict]:
    out = []
    for model in ONE_SIDED:
        found = [r for r in rows if r["model"] == model]
        swd, sd = _mean_sd([r["swd"] for r in found])
        out.append({"model": model, "seeds": len(found),
                    "steps": round(statistics.fmean(r["steps"] for r in found)),
                    "s/step": round(statistics.fmean(r["s/step"] for r in found), 3),
                    "swd": swd, "swd sd": sd})
    return out + [{"model": "untranslated testA", "swd": untranslated}]


def main(argv: list[str] | None = None) -> int:
    p = benchlib.parser("quality", __doc__.split("\n\n")[0])
    p.add_argument("--minutes", default="5", help="training budget(s) per run, comma-separated")
    p.add_argument("--seeds", type=int, default=3, help="seeds per recipe (mean and spread)")
    p.add_argument("--seed", type=int, default=0, help="the first seed")
    p.add_argument("--models", default="pix2pix,cyclegan", help="comma-separated subset")
    p.add_argument("--ablation", action="store_true",
                   help="instead: each candidate of the fast recipe alone on top of the "
                        "published pix2pix recipe, at the first budget")
    p.add_argument("--one-sided", action="store_true",
                   help="instead: CUT beside CycleGAN on faces_grey2colour, same budget (the "
                        "first) and seeds, published settings; SWD")
    p.add_argument("--ada", action="store_true",
                   help="instead: the fast recipe with and without --ada, both models, same "
                        "budgets and seeds")
    p.add_argument("--size", type=int, default=128, help="crop size (the sets are 128 px)")
    p.add_argument("--load-size", type=int, default=142, help="resize before the random crop")
    p.add_argument("--width", type=int, default=None,
                   help="ngf = ndf for every recipe (default: each recipe's own; published: 64)")
    p.add_argument("--workers", type=int, default=2, help="loader workers (trainer default)")
    p.add_argument("--max-steps", type=int, default=None, help="also stop after this many steps")
    p.add_argument("--limit", type=int, default=None, help="evaluate on at most N test images")
    p.add_argument("--figures", type=Path, default=benchlib.RESULTS,
                   help="where the side-by-side sample grids go")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="keep the run folders here (default: a temporary folder)")
    args = p.parse_args(argv)
    benchlib.setup_torch(args.threads, args.passive_wait)
    if args.smoke:
        args.minutes, args.size, args.load_size, args.width = "0.5", 32, 36, 8
        args.max_steps, args.limit, args.workers, args.seeds = 3, 4, 0, 1
        if args.figures == benchlib.RESULTS:
            args.figures = args.out.parent
    args.budgets = [float(m) for m in str(args.minutes).split(",")]
    quiet = benchlib.wait_for_quiet(args.wait_load)
    machine = benchlib.machine()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        if args.ablation:
            rows = ablation(args, runs_dir)
            benchlib.print_table(rows, ["candidate", "steps", "psnr gain", "psnr gain sd",
                                        "l1 saved", "l1 saved sd", "ssim"],
                                 f"Ablation: pix2pix, {args.budgets[0]:g} min, {args.size} px, "
                                 f"{args.seeds} seed(s); gains over the flat mean-colour image")
            benchlib.finish(args, "quality", machine, quiet, ablation=rows)
            return 0
        if args.one_sided:
            rows = one_sided(args, runs_dir)
            found = one_sided_summary(rows, cyclegan_baselines(args)["untranslated"]["swd"])
            benchlib.print_table(found, ["model", "seeds", "steps", "s/step", "swd", "swd sd"],
                                 f"CUT beside CycleGAN: faces_grey2colour, {args.budgets[0]:g} "
                                 f"min each, {args.size} px; SWD of translated testA to testB "
                                 f"(lower is better)")
            benchlib.finish(args, "quality", machine, quiet, one_sided=rows,
                            one_sided_summary=found)
            return 0
        rows, baselines, grids = comparison(args, runs_dir,
                                            ADA_RECIPES if args.ada else RECIPES)
    summary = summarise(rows, baselines)
    for model in args.models.split(","):
        found = [s for s in summary if s["model"] == model]
        if model == "pix2pix":
            flat, identity = baselines[model]["flat"], baselines[model]["identity"]
            benchlib.print_table(
                found + [{"recipe": "flat mean colour", **flat},
                         {"recipe": "identity (edges)", **identity}],
                ["minutes", "recipe", "seeds", "steps", "psnr", "psnr sd", "psnr gain", "ssim",
                 "ssim sd", "l1", "l1 sd", "l1 saved"],
                f"pix2pix on faces_edges2photo test/ ({args.size} px; higher PSNR/SSIM, lower L1 "
                f"is better)")
        else:
            benchlib.print_table(
                found + [{"recipe": "untranslated testA", **baselines[model]["untranslated"]}],
                ["minutes", "recipe", "seeds", "steps", "swd", "swd sd"],
                f"cyclegan on faces_grey2colour, SWD of translated testA to testB ({args.size} px;"
                f" lower is better)")
    checks = ada_verdict(summary) if args.ada else targets(summary)
    benchlib.finish(args, "quality", machine, quiet, checks, rows=rows,
                    summary=summary, baselines=baselines, grids=[str(g) for g in grids])
    return 0


if __name__ == "__main__":
    sys.exit(main())
