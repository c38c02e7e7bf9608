"""Several outputs per input at a fixed wall-clock budget: the same model without noise, with a
noise input (`--noise-dim 8`) alone, and with the noise and the mode-seeking term at two weights
(`--mode-seeking 0.03`, the guide's recommendation for every model, and 0.5, pix2pix's earlier
one, or the `--weights` given), each trained for the same number of seconds, over seeds.

pix2pix trains on the bundled paired faces (`datasets/faces_edges2photo`), cyclegan on the
unpaired faces (`datasets/faces_grey2colour`), with quality.py's data, networks and training
(the real trainer, stopped at the deadline as Ctrl-C stops it). On the held-out inputs:

* diversity: for each input, 8 outputs from noise seeds 0..7 (`Translator.variants`), the mean
  L1 over their 28 pairs, averaged over inputs (images in [-1, 1]); and the same pairwise mean
  of the run's own discriminator features (its last hidden layer, `features(x)[-2]`; a
  conditional discriminator gets the input beside each output). A model without noise has one
  output per input: 0.
* quality: the output `convert` gives without --seed (zero noise, which half of the training
  steps give every image, so the model's own losses fit it as they fit a model without
  noise): PSNR and L1
  against the real photo (paired), or the sliced Wasserstein distance to real testB (unpaired,
  lower is better). The same scores of seed 0's output (one random draw) are reported beside it
  (`psnr_seed0`, `l1_seed0`, `swd_seed0`).

Targets, for each mode-seeking weight: diversity (L1) at least 10x that of noise alone, while
quality is no more than 0.3 dB PSNR (paired) or 10% SWD (unpaired) worse than without noise. A
grid of variants of 4 held-out inputs (input, the output without a seed, then seeds 0..3, with
the recommended weight where it ran, else the first) goes to --figures.

Ablations: `--weights` picks the mode-seeking weights; `--ablate-target-terms` runs each weight
beside the same with the model's `target_terms` (pix2pix's L1) kept on the steps with drawn
noise too, instead of the baselines; `--zero-noise-rate` changes the share of zero-noise steps.

    python benchmarks/diversity.py --seconds 120              # 3 seeds, both models
    python benchmarks/diversity.py --seconds 60 --seeds 1 --models pix2pix --weights 1
    python benchmarks/diversity.py --weights 1 --ablate-target-terms
    python benchmarks/diversity.py --smoke                    # 32 px, narrow networks: seconds
"""
from __future__ import annotations

import contextlib
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

import benchlib
import quality

BASELINES = {"no noise": {}, "noise": {"noise_dim": 8}}  # name -> training settings (flags)
RECOMMENDED = 0.03  # the guide's --mode-seeking, for every built-in model
WEIGHTS = (RECOMMENDED, 0.5)  # compared by default: the recommended weight, pix2pix's earlier one


KEPT = "_keep_target_terms"  # a config setting: the model's target terms on every step
KEPT_NAME = ", target terms on every step"


def configs_for(weights, ablate: bool = False) -> dict[str, dict]:
    """The baselines, then noise with the mode-seeking term at each weight; with `ablate`,
    instead, each weight as it is and with the model's `target_terms` kept on the steps with
    drawn noise too (as before they were left out there)."""
    weighted = {f"noise + mode seeking {w:g}": {"noise_dim": 8, "mode_seeking": w}
                for w in weights}
    if not ablate:
        return {**BASELINES, **weighted}
    return {**weighted, **{name + KEPT_NAME: {**settings, KEPT: True}
                           for name, settings in weighted.items()}}


@contextlib.contextmanager
def target_terms_kept(model: str, keep: bool):
    """Within the block, `model`'s class lists no target terms (all stay on every step)."""
    from img2img import catalog

    cls = catalog().model(model)
    before = cls.__dict__.get("target_terms")
    if keep:
        cls.target_terms = ()
    try:
        yield
    finally:
        if keep and before is None:
            del cls.target_terms  # inherited again
        elif keep:
            cls.target_terms = before


DRAWS = 8  # outputs per input for the diversity figures
PAIRED = "pix2pix"


def held_out(model: str, args):
    """(inputs, what the quality score compares with) of the held-out set."""
    if model == PAIRED:
        a, b, _ = quality.paired_test(args)
        return a, b
    test_a, test_b = quality.unpaired_test(args)
    return test_a, test_b


def _features(discriminator, condition, images):
    x = images if discriminator_channels(discriminator) == images.shape[1] else \
        __import__("torch").cat([condition, images], dim=1)
    return discriminator.features(x)[-2]


def discriminator_channels(net) -> int:
    import torch

    return next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


def diversity(translator, inputs, direction) -> dict:
    """Mean pairwise L1 of DRAWS outputs per input, in pixels and in discriminator features."""
    import torch

    if not translator.noise_dim:
        return {"diversity_l1": 0.0, "diversity_d": 0.0}
    model = translator.model
    discriminator = next(iter(model.discriminators.values()))
    pixels, features = [], []
    with torch.inference_mode():
        for x in inputs.split(1):
            outs = torch.cat([translator.translate(x, direction, noise=translator.noise(s))
                              for s in range(DRAWS)])
            feats = _features(discriminator, x.expand(DRAWS, -1, -1, -1), outs)
            for i, j in itertools.combinations(range(DRAWS), 2):
                pixels.append(float((outs[i] - outs[j]).abs().mean()))
                features.append(float((feats[i] - feats[j]).abs().mean()))
    return {"diversity_l1": statistics.fmean(pixels), "diversity_d": statistics.fmean(features)}


def run_one(model: str, config: str, args, runs_dir: Path, seed: int):
    import torch

    import img2img

    settings = dict(args.configs[config])
    with target_terms_kept(model, settings.pop(KEPT, False)):
        run_dir, facts = quality.train(model, None, settings, args, runs_dir, args.seconds / 60,
                                       seed)
    translator = img2img.load(run_dir, device=args.device)
    direction = None if model == PAIRED else "a_to_b"
    inputs, _ = held_out(model, args)

    def scores(noise):
        with torch.inference_mode():
            fake = torch.cat([translator.translate(inputs[i:i + 8], direction, noise=noise)
                              for i in range(0, len(inputs), 8)]).cpu()
        return quality.score_pix2pix(fake, args) if model == PAIRED else \
            quality.score_cyclegan(fake, args)

    row = {"config": config, "seed": seed, **facts, **scores(None)}  # as convert, no --seed
    if translator.noise_dim:
        row.update({f"{key}_seed0": value for key, value in scores(translator.noise(0)).items()
                    if key in ("psnr", "l1", "swd")})
    row.update(diversity(translator, inputs[:args.diversity_inputs], direction))
    return row, translator


def summarise(rows: list[dict]) -> list[dict]:
    keys = ("steps", "psnr", "l1", "swd", "psnr_seed0", "l1_seed0", "swd_seed0",
            "diversity_l1", "diversity_d")
    out = []
    for (model, config), group in itertools.groupby(rows, key=lambda r: (r["model"], r["config"])):
        group = list(group)
        row = {"model": model, "config": config, "seeds": len(group)}
        for key in keys:
            values = [r[key] for r in group if key in r]
            if values:
                row[key] = round(statistics.fmean(values), 4)
                row[f"{key}_sd"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
        out.append(row)
    return out


def targets(summary: list[dict], configs: dict[str, dict]) -> list[dict]:
    checks = []
    for model in dict.fromkeys(r["model"] for r in summary):
        by = {r["config"]: r for r in summary if r["model"] == model}
        if "noise" not in by:
            continue  # --ablate-target-terms: no baselines, no targets
        plain, noise = by["no noise"], by["noise"]
        for config in (c for c in configs if "mode seeking" in c and c in by
                       and KEPT_NAME not in c):
            ms = by[config]
            ratio = ms["diversity_l1"] / max(noise["diversity_l1"], 1e-9)
            checks.append({"target": f"{model}, {config}: diversity / noise alone's",
                           "limit": ">= 10", "measured": round(ratio, 2), "met": ratio >= 10})
            if model == PAIRED:
                drop = plain["psnr"] - ms["psnr"]
                checks.append({"target": f"{model}, {config}: PSNR lost (dB)", "limit": "<= 0.3",
                               "measured": round(drop, 3), "met": drop <= 0.3})
            else:
                worse = ms["swd"] / plain["swd"] - 1
                checks.append({"target": f"{model}, {config}: SWD worse", "limit": "<= 10%",
                               "measured": f"{100 * worse:.1f}%", "met": worse <= 0.10})
    return checks


def variant_grid(translator, model: str, args) -> Path:
    """4 held-out inputs (rows): the input, the output without a seed (zero noise), then the
    outputs of noise seeds 0..3."""
    inputs, _ = held_out(model, args)
    direction = None if model == PAIRED else "a_to_b"
    x = inputs[:4]
    columns = {"input": x, "no seed": translator.translate(x, direction).cpu()}
    for seed in range(4):
        columns[f"seed {seed}"] = translator.translate(x, direction,
                                                       noise=translator.noise(seed)).cpu()
    return quality.save_grid(args.figures / f"diversity-{model}.png", columns)


def main(argv: list[str] | None = None) -> int:
    p = benchlib.parser("diversity", __doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=120.0, help="training budget per run")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    p.add_argument("--models", default="pix2pix,cyclegan", help="comma-separated subset")
    p.add_argument("--size", type=int, default=64, help="crop size (the sets are 128 px)")
    p.add_argument("--load-size", type=int, default=72, help="resize before the random crop")
    p.add_argument("--width", type=int, default=16, help="ngf = ndf")
    p.add_argument("--workers", type=int, default=1, help="loader workers")
    p.add_argument("--max-steps", type=int, default=None, help="also stop after this many steps")
    p.add_argument("--limit", type=int, default=None, help="evaluate on at most N test images")
    p.add_argument("--diversity-inputs", type=int, default=8,
                   help="held-out inputs the diversity is measured on")
    p.add_argument("--figures", type=Path, default=benchlib.HERE / "figures",
                   help="where the grid of variants goes")
    p.add_argument("--weights", default=",".join(f"{w:g}" for w in WEIGHTS),
                   help="comma-separated mode-seeking weights to compare with the baselines "
                        "(the grid uses the first)")
    p.add_argument("--zero-noise-rate", type=float, default=None,
                   help="ablation: the share of training steps given zero noise (default: "
                        "img2img.networks.noise.ZERO_NOISE_RATE)")
    p.add_argument("--ablate-target-terms", action="store_true",
                   help="instead of the baselines: each weight beside the same with the model's "
                        "target terms (pix2pix's L1) kept on the steps with drawn noise")
    args = p.parse_args(argv)
    try:
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        p.error(f"--weights: expected comma-separated numbers, got {args.weights!r}")
    if not weights or min(weights) <= 0:
        p.error("--weights: give one or more weights above 0")
    args.configs = configs_for(weights, args.ablate_target_terms)
    configs = list(args.configs)
    # The grid shows the first config of an ablation, else the recommended weight where it
    # ran, else the first weighted config.
    grid = f"noise + mode seeking {RECOMMENDED:g}"
    if args.ablate_target_terms:
        grid = configs[0]
    elif grid not in configs:
        grid = configs[len(BASELINES)]
    if args.zero_noise_rate is not None:
        from img2img.networks import noise
        noise.ZERO_NOISE_RATE = args.zero_noise_rate
    if args.smoke:
        args.seconds, args.seeds, args.size, args.load_size, args.width = 4, 1, 32, 36, 4
        args.limit, args.diversity_inputs, args.figures = 4, 2, benchlib.RESULTS / "figures"
    benchlib.setup_torch(args.threads, args.passive_wait)
    quiet = benchlib.wait_for_quiet(args.wait_load)
    started = benchlib.machine()
    print(benchlib.machine_line(started), flush=True)
    rows, grids = [], []
    with tempfile.TemporaryDirectory(prefix="img2img-diversity-") as tmp:
        for model in args.models.split(","):
            for seed in range(args.seeds):
                # Alternate the order per seed, so a change in machine load hits every config.
                order = configs if seed % 2 == 0 else configs[::-1]
                for config in order:
                    row, translator = run_one(model, config, args, Path(tmp), seed)
                    rows.append({**row, "model": model})
                    print({k: v for k, v in row.items() if k != "model"}, flush=True)
                    if seed == 0 and config == grid:
                        grids.append(str(variant_grid(translator, model, args)))
    rows.sort(key=lambda r: (r["model"], configs.index(r["config"]), r["seed"]))
    summary = summarise(rows)
    benchlib.print_table(summary, ["model", "config", "seeds", "steps", "psnr", "psnr_sd", "l1",
                                   "swd", "swd_sd", "psnr_seed0", "swd_seed0", "diversity_l1",
                                   "diversity_l1_sd", "diversity_d"],
                         "Diversity and quality at equal wall-clock")
    benchlib.finish(args, "diversity", started, quiet, targets(summary, args.configs), rows=rows,
                    summary=summary, figures=grids)
    return 0


if __name__ == "__main__":
    sys.exit(main())
