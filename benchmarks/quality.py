"""Quality at a fixed wall-clock budget: the published recipe against the recommended one
(`--preset fast`), each trained for the same number of minutes, over several seeds, on tasks of
different character built from the bundled data (`--tasks`, or `all`):

* edges2photo (pix2pix): `datasets/faces_edges2photo`, edge map -> photo; 128 training pairs,
  the 16 test/ pairs held out.
* photo2edges (pix2pix): the same pairs reversed, photo -> edge map: thin lines on a flat
  ground.
* print2hand (pix2pix): `datasets/handwriting_print2hand`, printed -> handwritten glyph, grey
  64 px; each letter's 4th handwritten sample (`<letter>_3.png`, 26 pairs) is held out, the
  other 78 train (copied to a temporary folder: nothing is written into datasets/).
* grey2colour (cyclegan): `datasets/faces_grey2colour`, grey -> colour faces, unpaired.

Paired tasks are scored on their held-out pairs (PSNR, SSIM and L1 of the output against the
target) next to a flat image of the training targets' mean colour and the identity (the input
itself), and on print2hand next to the other writers' real glyphs of each held-out letter: what
a real drawing scores where many drawings are right (below the flat image on PSNR and SSIM on
the bundled glyphs, so those targets there ask for blank paper); the unpaired task by the
sliced Wasserstein distance (SWD, lower is better) between translated testA and real testB,
next to untranslated testA. Without --tasks, --models picks each model's face task (the
comparison before there were tasks).

Training runs through the real trainer with `--time-budget` (it stops within a step of the
budget with a checkpoint, its learning rate fitted to the budget as a user's run is);
evaluation loads that checkpoint with `img2img.load`, as `convert` would. Recipes alternate
within each seed (published first on even seeds, fast first on odd ones), so a change in
machine load hits both.

    python benchmarks/quality.py --tasks all --minutes 5 --seeds 3   # the comparison
    python benchmarks/quality.py --minutes 3 --ablation     # each candidate alone, pix2pix
    python benchmarks/quality.py --minutes 3 --ablation --base fast --tasks all  # on fast
    python benchmarks/quality.py --minutes 3 --ada          # the fast recipe with and without --ada
    python benchmarks/quality.py --smoke                    # 32 px, narrow networks: seconds
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    "L1 weight 500": {"lambda_l1": 500.0},
}
# --base fast: each candidate alone on top of the fast preset (the list: the L1 weight,
# the discriminator's capacity against the generator's, the width, DiffAugment, --ada, feature
# matching, and the schedule the time budget allows).
FAST_ABLATION = {
    "fast": {},
    "L1 weight 500 (the demo's)": {"lambda_l1": 500.0},
    "L1 weight 300": {"lambda_l1": 300.0},
    "L1 weight 10": {"lambda_l1": 10.0},
    "constant lr (no decay in the budget)": {"decay_epochs": 0},
    "wider (ngf = ndf = 32)": {"ngf": 32, "ndf": 32},
    "D twice as wide (ndf 32)": {"ndf": 32},
    "no DiffAugment": {"diff_augment": "none"},
    "--ada": {"ada": True},
    "2-scale D + feature matching 10": {"d_scales": 2, "feature_matching": 10.0},
}


def read_folder(folder: Path, size: int, limit: int | None = None, halves: bool = False,
                channels: int = 3, paths: list[Path] | None = None):
    """Images of `folder` (or the files `paths`) as float (N,C,size,size) in [-1, 1]; with
    `halves`, side-by-side files give (left, right) batches."""
    import torch

    from img2img.data import list_images, read_image
    from img2img.data.ops import resize, to_model_range

    paths = (list_images(folder) if paths is None else paths)[:limit]
    images = [to_model_range(torch.from_numpy(read_image(p, channels)).permute(2, 0, 1)[None])
              for p in paths]
    if not halves:
        return resize(torch.cat(images), size)
    width = images[0].shape[-1] // 2
    return (resize(torch.cat([x[..., :width] for x in images]), size),
            resize(torch.cat([x[..., width:] for x in images]), size))


# -- tasks: each a model, training data and a held-out split built from datasets/ ---------------
@dataclasses.dataclass(frozen=True)
class Task:
    """One translation task: the model that learns it, whether it is scored against held-out
    targets (paired: PSNR/SSIM/L1) or by the distribution of its outputs (unpaired: SWD), and
    whether its targets are thin lines on a flat ground (where SSIM must reach the flat
    image's: a blurred average of lines is not a drawing)."""

    name: str
    model: str
    paired: bool
    summary: str
    thin_lines: bool = False


TASKS = {t.name: t for t in (
    Task("edges2photo", "pix2pix", True, "faces_edges2photo: edge map -> face photo"),
    Task("photo2edges", "pix2pix", True, "faces_edges2photo reversed: face photo -> edge map "
         "(thin lines on a flat ground)", thin_lines=True),
    Task("print2hand", "pix2pix", True, "handwriting_print2hand: printed -> handwritten glyph, "
         "grey 64 px (thin strokes on paper); held out: each letter's 4th writer", thin_lines=True),
    Task("grey2colour", "cyclegan", False, "faces_grey2colour: grey face -> colour face"),
)}
FACE_TASK = {"pix2pix": "edges2photo", "cyclegan": "grey2colour"}  # --models, as before --tasks
HELD_OUT_WRITER = "3"  # print2hand: the letters' 4th handwritten sample is the test set


@dataclasses.dataclass
class TaskData:
    """A task made ready: the training settings (data folders, networks, image size), the
    held-out inputs and targets, (paired) the flat image of the training targets' mean and, where
    the data has them, other real targets of the same held-out inputs (print2hand: each training
    writer's own glyph of the held-out letter): what a real drawing scores, the ceiling of the
    pixel metrics where many targets are right."""

    settings: dict
    test_a: Any
    test_b: Any
    flat: Any = None
    others: tuple = ()


def task_data(task: str, args) -> TaskData:
    """The task's data, built once per process under a temporary folder (never in datasets/)."""
    return _task_data(task, args.size, args.load_size, args.limit, str(_workdir()))


@functools.lru_cache(maxsize=None)
def _workdir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="quality-tasks-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.lru_cache(maxsize=None)
def _task_data(task: str, size: int, load_size: int, limit: int | None, workdir: str
               ) -> TaskData:
    net = {"load_size": load_size, "crop_size": size}
    faces = DATASETS / "faces_edges2photo"
    if task in ("edges2photo", "photo2edges"):
        edges, photos = read_folder(faces / "test", size, limit, halves=True)
        _, train_photos = read_folder(faces / "train", size, halves=True)
        if task == "edges2photo":
            return TaskData({"data": faces / "train", "generator": f"unet-{size}", **net},
                            edges, photos, _flat(train_photos, photos))
        train_edges, _ = read_folder(faces / "train", size, halves=True)
        folder = _swap_halves(faces / "train", Path(workdir) / "photo2edges")
        return TaskData({"data": folder, "generator": f"unet-{size}", **net},
                        photos, edges, _flat(train_edges, edges))
    if task == "print2hand":
        glyph = min(size, 64)
        train, test = _glyph_split(DATASETS / "handwriting_print2hand",
                                   Path(workdir) / "print2hand")
        printed, hand = read_folder(test, glyph, limit, halves=True, channels=1)
        _, train_hand = read_folder(train, glyph, halves=True, channels=1)
        # Mirrored letters are other letters: no flips, as the handwriting preset.
        return TaskData({"data": train, "generator": f"unet-{glyph}", "channels": 1,
                         "flip": False, "load_size": round(glyph * load_size / size),
                         "crop_size": glyph}, printed, hand, _flat(train_hand, hand),
                        _other_writers(train, test, glyph, limit))
    root = DATASETS / "faces_grey2colour"
    return TaskData({"a": root / "trainA", "b": root / "trainB", "generator": "resnet-9", **net},
                    read_folder(root / "testA", size, limit),
                    read_folder(root / "testB", size, limit))


def _flat(train_targets, test_targets):
    return train_targets.mean((0, 2, 3), keepdim=True).expand_as(test_targets)


def _swap_halves(source: Path, out: Path) -> Path:
    """Side-by-side A|B files of `source` as `out`/a (their B halves) and `out`/b (their A
    halves): the same pairs, the other way round."""
    from img2img.data import list_images, read_image, write_image

    for path in list_images(source):
        image = read_image(path, 3)
        half = image.shape[1] // 2
        for side, part in (("a", image[:, half:]), ("b", image[:, :half])):
            (out / side).mkdir(parents=True, exist_ok=True)
            write_image(out / side / f"{path.stem}.png", part)
    return out


def _glyph_split(source: Path, out: Path) -> tuple[Path, Path]:
    """`<letter>_<n>.png` pairs: writer HELD_OUT_WRITER of every letter to `out`/test, the rest
    to `out`/train (copies; the split depends on the names only)."""
    for path in sorted(source.glob("*.png")):
        held_out = path.stem.rsplit("_", 1)[-1] == HELD_OUT_WRITER
        folder = out / ("test" if held_out else "train")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
    return out / "train", out / "test"


def _other_writers(train: Path, test: Path, size: int, limit: int | None) -> tuple:
    """Per training writer, its own handwritten glyph of each held-out letter (in the held-out
    order), for the writers who wrote every held-out letter."""
    from img2img.data import list_images

    letters = [path.stem.rsplit("_", 1)[0] for path in list_images(test)][:limit]
    writers = sorted({path.stem.rsplit("_", 1)[-1] for path in train.glob("*.png")})
    found = []
    for writer in writers:
        paths = [train / f"{letter}_{writer}.png" for letter in letters]
        if all(path.exists() for path in paths):
            found.append(read_folder(train, size, halves=True, channels=1, paths=paths)[1])
    return tuple(found)


def model_settings(model: str, args) -> dict:
    """The data and the published networks of `model`'s face task (as `task_data`), at the
    benchmark's size and width."""
    return task_settings(FACE_TASK[model], args)


def task_settings(task: str, args) -> dict:
    # Widths only when asked for: a recipe's own (the fast preset's) must not be overridden.
    width = {"ngf": args.width, "ndf": args.width} if args.width else {}
    return {**task_data(task, args).settings, **width}


def train(model: str, preset: str | None, settings: dict, args, runs_dir: Path,
          minutes: float, seed: int, task: str | None = None) -> tuple[Path, dict]:
    """Train `model` on `task` (default: the model's face task) through the real trainer with
    `--time-budget` (the learning rate fitted to the budget, as a user gets it); returns (run
    folder, facts). `settings` (an ablation's changes) override the preset the way typed flags
    do."""
    from img2img import catalog as installed_catalog
    from img2img.api import _resolve
    from img2img.training.trainer import Trainer

    task = task or FACE_TASK[model]
    catalog = installed_catalog()
    cls = catalog.model(model)
    typed = {"time_budget": f"{minutes * 60:g}s", "device": args.device,
             "max_steps": args.max_steps, "sample_every": 0, "checkpoint_every": 0,
             "log_every": 25, "runs_dir": runs_dir,
             "name": f"quality-{task}-{model}-{preset or 'published'}-{seed}-{time.time_ns()}",
             "workers": args.workers, "seed": seed, **task_settings(task, args), **settings}
    preset_used, options, config = _resolve(catalog, cls, preset, None, typed)
    trainer = Trainer(cls, options, config, preset=preset_used, progress=False)
    started = time.perf_counter()
    run_dir = trainer.fit()
    seconds = time.perf_counter() - started
    return run_dir, {"task": task, "model": model, "steps": trainer.state.step,
                     "epochs": round(trainer.state.step / trainer.steps_per_epoch(), 2),
                     "train_s": round(seconds, 1),
                     "s/step": round(seconds / max(trainer.state.step, 1), 3)}


def _translate(run_dir: Path, images, args, direction: str | None = None):
    import torch

    import img2img

    translator = img2img.load(run_dir, device=args.device)
    return torch.cat([translator.translate(images[i:i + 8], direction)
                      for i in range(0, len(images), 8)]).cpu()


def paired_test(args, task: str = "edges2photo"):
    """(held-out inputs, held-out targets, flat image of the training targets' mean colour)."""
    data = task_data(task, args)
    return data.test_a, data.test_b, data.flat


def unpaired_test(args, task: str = "grey2colour"):
    """(testA, testB)."""
    data = task_data(task, args)
    return data.test_a, data.test_b


def _paired_scores(fake, target) -> dict:
    """PSNR/SSIM/L1 against each held-out target in place, and the SWD of the outputs to the
    targets as a set: a plausible stroke a few pixels from where the held-out one lies costs
    pixel metrics more than blank paper does, but moves the outputs' patch statistics towards
    the targets' (print2hand)."""
    from img2img.evaluation.metrics import l1, psnr, ssim, swd

    return {"psnr": float(psnr(fake, target).mean()), "ssim": float(ssim(fake, target).mean()),
            "l1": float(l1(fake, target).mean()), "swd": swd(fake, target)["swd"]}


def score_pix2pix(fake, args, task: str = "edges2photo") -> dict:
    a, b, _ = paired_test(args, task)
    return {"test_pairs": len(a), **_paired_scores(fake, b)}


def score_cyclegan(fake, args, task: str = "grey2colour") -> dict:
    from img2img.evaluation.metrics import swd

    test_a, test_b = unpaired_test(args, task)
    return {"test_images": len(test_a), "swd": swd(fake, test_b)["swd"]}


def baselines_of(task: str, args) -> dict:
    """Paired: the flat image of the training targets' mean colour, the identity (the input
    itself) and, where the task has other real targets, their mean scores ("other real");
    unpaired: the untranslated inputs."""
    from img2img.evaluation.metrics import swd

    data = task_data(task, args)
    if TASKS[task].paired:
        found = {"flat": _paired_scores(data.flat, data.test_b),
                 "identity": _paired_scores(data.test_a, data.test_b)}
        if data.others:
            scores = [_paired_scores(other, data.test_b) for other in data.others]
            found["other real"] = {key: statistics.fmean(s[key] for s in scores)
                                   for key in scores[0]}
        return found
    return {"untranslated": {"swd": swd(data.test_a, data.test_b)["swd"]}}


def pix2pix_baselines(args) -> dict:
    return baselines_of("edges2photo", args)


def cyclegan_baselines(args) -> dict:
    return baselines_of("grey2colour", args)


def run_one(model: str, preset: str | None, settings: dict, args, runs_dir: Path,
            minutes: float, seed: int, task: str | None = None) -> tuple[dict, object]:
    task = task or FACE_TASK[model]
    run_dir, facts = train(model, preset, settings, args, runs_dir, minutes, seed, task)
    data = task_data(task, args)
    if TASKS[task].paired:
        fake = _translate(run_dir, data.test_a, args)
        return {**facts, **score_pix2pix(fake, args, task)}, fake
    fake = _translate(run_dir, data.test_a, args, "a_to_b")
    return {**facts, **score_cyclegan(fake, args, task)}, fake


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: list[dict], baselines: dict) -> list[dict]:
    """One row per (task, minutes, recipe): mean and seed-to-seed sd of every score, and (paired)
    the gains over the flat image: PSNR in dB, L1 saved, SSIM."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["minutes"], row["recipe"]), []).append(row)
    out = []
    for (task, minutes, recipe), found in groups.items():
        summary = {"task": task, "model": found[0]["model"], "minutes": minutes,
                   "recipe": recipe, "seeds": len(found),
                   "steps": round(statistics.fmean(r["steps"] for r in found))}
        paired = TASKS[task].paired
        for key in ("psnr", "ssim", "l1", "swd") if paired else ("swd",):
            summary[key], summary[f"{key} sd"] = _mean_sd([r[key] for r in found])
        if paired:
            flat = baselines[task]["flat"]
            summary["psnr gain"], summary["psnr gain sd"] = _mean_sd(
                [r["psnr"] - flat["psnr"] for r in found])
            summary["l1 saved"], summary["l1 saved sd"] = _mean_sd(
                [flat["l1"] - r["l1"] for r in found])
            summary["ssim over flat"], summary["ssim over flat sd"] = _mean_sd(
                [r["ssim"] - flat["ssim"] for r in found])
        out.append(summary)
    return out


def targets(summary: list[dict], baselines: dict | None = None) -> list[dict]:
    """The issue's targets per task and budget: the fast recipe's PSNR gain over the flat image
    and its L1 saving at least twice the published recipe's, its SWD at most 0.8x, each
    difference larger than the seed-to-seed spread (the larger sd of the two recipes); on the
    thin-line tasks its SSIM at or above the flat image's. Where a task has other real targets
    (`baselines`' "other real"), each pixel check also says what a real one scores: a target
    that real drawings miss too asks for blank paper, not for a better model."""
    checks = []
    ceilings = {task: _real_gains(found) for task, found in (baselines or {}).items()
                if "other real" in found}
    by = {(s["task"], s["minutes"], s["recipe"]): s for s in summary}
    for (task, minutes, recipe), fast in by.items():
        published = by.get((task, minutes, "published"))
        if recipe == "published" or published is None:
            continue
        name = task if recipe == "fast" else f"{task} [{recipe}]"
        pairs = ([("psnr gain", 2.0, "x published's gain"), ("l1 saved", 2.0, "x published's saving")]
                 if TASKS[task].paired else []) + [("swd", 0.8, "x published's SWD")]
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
            checks.append({"target": f"{name} {minutes:g} min: {key}", "limit":
                           f"{'>=' if key != 'swd' else '<='} {limit:g}{what}",
                           "measured": f"{shown} (diff {fast[key] - published[key]:+.3f}, "
                                       f"spread {spread:.3f}{_real(ceilings, task, key)})",
                           "met": bool(beats and abs(fast[key] - published[key]) > spread)})
        if TASKS[task].thin_lines:
            over = fast["ssim over flat"]
            checks.append({"target": f"{name} {minutes:g} min: ssim", "limit":
                           ">= the flat image's (a blurred average of lines is not a drawing)",
                           "measured": f"{fast['ssim']:.3f}, {over:+.3f} over flat (sd "
                                       f"{fast['ssim over flat sd']:.3f}"
                                       f"{_real(ceilings, task, 'ssim over flat')})",
                           "met": bool(over >= 0)})
    return checks


def _real_gains(baselines: dict) -> dict:
    """A task's other real targets scored as a recipe is: gains over the flat image."""
    flat, real = baselines["flat"], baselines["other real"]
    return {"psnr gain": real["psnr"] - flat["psnr"], "l1 saved": flat["l1"] - real["l1"],
            "ssim over flat": real["ssim"] - flat["ssim"]}


def _real(ceilings: dict, task: str, key: str) -> str:
    """"; another real target: X" where `task`'s other real targets have a `key` score."""
    found = ceilings.get(task, {})
    return f"; another real target: {found[key]:+.3f}" if key in found else ""


def save_grid(path: Path, columns: dict, upscale: int = 1) -> Path:
    """The columns side by side, each pixel shown as `upscale` x `upscale` (nearest), so thin
    lines stay sharp."""
    import numpy as np

    from img2img.data.images import grid, write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = grid(columns)
    if upscale > 1:
        image = np.repeat(np.repeat(image, upscale, axis=0), upscale, axis=1)
    write_image(path, image)
    print(f"wrote {path}", flush=True)
    return path


def chosen_tasks(args) -> list[str]:
    """--tasks (names, or all), else the face task of each of --models."""
    if args.tasks:
        names = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    else:
        names = [FACE_TASK[m] for m in args.models.split(",")]
    return names


def comparison(args, runs_dir: Path, recipes: dict = RECIPES
               ) -> tuple[list[dict], dict, list[Path]]:
    tasks = chosen_tasks(args)
    baselines = {task: baselines_of(task, args) for task in tasks}
    rows, fakes = [], {}
    for minutes in args.budgets:
        for seed in range(args.seed, args.seed + args.seeds):
            order = list(recipes) if seed % 2 == 0 else list(recipes)[::-1]
            for recipe in order:
                for task in tasks:
                    preset, settings = recipes[recipe]
                    row, fake = run_one(TASKS[task].model, preset, settings, args, runs_dir,
                                        minutes, seed, task)
                    row.update(recipe=recipe, minutes=minutes, seed=seed)
                    rows.append(row)
                    print(f"{task} {recipe} {minutes:g} min seed {seed}: "
                          f"{ {k: v for k, v in row.items() if k in ('steps', 'psnr', 'ssim', 'l1', 'swd')} }",
                          file=sys.stderr, flush=True)
                    if seed == args.seed:
                        fakes[(task, minutes, recipe)] = fake
    grids = []
    for task in tasks:
        data = task_data(task, args)
        for minutes in args.budgets:
            columns = {"input": data.test_a[:8],
                       **{recipe: fakes[(task, minutes, recipe)][:8] for recipe in recipes}}
            if TASKS[task].paired:
                columns["real"] = data.test_b[:8]
            name = f"quality-{task}-{minutes:g}min" + ("-ada" if recipes is ADA_RECIPES else "")
            # Shown at least 128 px a side: the 64 px glyphs twice over, nearest-neighbour.
            upscale = max(1, 128 // data.test_a.shape[-1])
            grids.append(save_grid(args.figures / f"{name}.png", columns, upscale))
    return rows, baselines, grids


def combined_recipe(prefixes: str, p) -> dict:
    """{"fast + A + B": ("fast", settings of A and B)}: the --base fast ablation candidates
    whose names start with the comma-separated `prefixes`, applied together."""
    wanted = [w.strip() for w in prefixes.split(",") if w.strip()]
    chosen = {}
    for prefix in wanted:
        found = [name for name in list(FAST_ABLATION)[1:] if name.startswith(prefix)]
        if len(found) != 1:
            p.error(f"--also: {prefix!r} names {len(found)} candidates, expected one of "
                    f"{', '.join(list(FAST_ABLATION)[1:])}")
        chosen[found[0]] = FAST_ABLATION[found[0]]
    name = " + ".join(["fast", *(n.split(" (")[0] for n in chosen)])
    return {name: ("fast", {k: v for settings in chosen.values() for k, v in settings.items()})}


def ada_verdict(summary: list[dict]) -> list[dict]:
    """Whether --ada beats the same recipe without it, per task and budget: each score's
    difference against the seed-to-seed spread (the larger sd of the two)."""
    checks = []
    by = {(s["task"], s["minutes"], s["recipe"]): s for s in summary}
    for (task, minutes, recipe), with_ada in by.items():
        without = by.get((task, minutes, "fast"))
        if recipe != "fast + ada" or without is None:
            continue
        for key, higher in ((("psnr", True), ("l1", False)) if TASKS[task].paired
                            else (("swd", False),)):
            diff = with_ada[key] - without[key]
            spread = max(with_ada[f"{key} sd"], without[f"{key} sd"])
            better = diff > 0 if higher else diff < 0
            checks.append({"target": f"{task} {minutes:g} min: {key} with --ada",
                           "limit": f"{'higher' if higher else 'lower'} beyond the seed spread",
                           "measured": f"{with_ada[key]:.4g} against {without[key]:.4g} "
                                       f"(diff {diff:+.4f}, spread {spread:.4f})",
                           "met": bool(better and abs(diff) > spread)})
    return checks


def ablation(args, runs_dir: Path) -> list[dict]:
    """Each candidate alone on top of the --base recipe (published, or the fast preset), on
    every paired task of --tasks (default: edges2photo), at the first budget."""
    rows = []
    minutes = args.budgets[0]
    preset, candidates = (None, ABLATION) if args.base == "published" else ("fast", FAST_ABLATION)
    if args.candidates:  # the base recipe (listed first) and those named
        wanted = [w.strip() for w in args.candidates.split(",")]
        candidates = {name: settings for i, (name, settings) in enumerate(candidates.items())
                      if i == 0 or any(name.startswith(w) for w in wanted)}
    # The smoke's 32 px crops are too small for a 3-layer PatchGAN at two scales.
    tiny = {"d_layers": 2} if args.smoke else {}
    tasks = [t for t in chosen_tasks(args) if TASKS[t].paired] if args.tasks else ["edges2photo"]
    for task in tasks:
        flat = baselines_of(task, args)["flat"]
        for name, settings in candidates.items():
            scores = []
            for seed in range(args.seed, args.seed + args.seeds):
                row, _ = run_one("pix2pix", preset, {**tiny, **settings}, args, runs_dir,
                                 minutes, seed, task)
                scores.append(row)
            psnr_gain = _mean_sd([r["psnr"] - flat["psnr"] for r in scores])
            l1_saved = _mean_sd([flat["l1"] - r["l1"] for r in scores])
            rows.append({"task": task, "candidate": name, "minutes": minutes,
                         "seeds": len(scores),
                         "steps": round(statistics.fmean(r["steps"] for r in scores)),
                         "psnr gain": psnr_gain[0], "psnr gain sd": psnr_gain[1],
                         "l1 saved": l1_saved[0], "l1 saved sd": l1_saved[1],
                         "ssim": statistics.fmean(r["ssim"] for r in scores),
                         "ssim over flat": statistics.fmean(r["ssim"] for r in scores)
                         - flat["ssim"],
                         "swd": statistics.fmean(r["swd"] for r in scores),
                         "flat swd": flat["swd"]})
            print(f"ablation {task} {name}: {rows[-1]}", file=sys.stderr, flush=True)
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
            row, _ = run_one(model, None, {}, args, runs_dir, minutes, seed, "grey2colour")
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
    p.add_argument("--tasks", default=None,
                   help="comma-separated tasks, or all: " + "; ".join(
                       f"{t.name} ({t.model}): {t.summary}" for t in TASKS.values()))
    p.add_argument("--models", default="pix2pix,cyclegan",
                   help="without --tasks: each model's face task (pix2pix: edges2photo, "
                        "cyclegan: grey2colour)")
    p.add_argument("--ablation", action="store_true",
                   help="instead: each candidate alone on top of the --base pix2pix recipe, "
                        "at the first budget, on the paired tasks of --tasks (default: "
                        "edges2photo)")
    p.add_argument("--base", choices=("published", "fast"), default="published",
                   help="with --ablation: the recipe the candidates change")
    p.add_argument("--candidates", default=None,
                   help="with --ablation: only the candidates whose names start with one of "
                        "these comma-separated prefixes (e.g. 'L1,no DiffAugment'), beside the "
                        "base recipe")
    p.add_argument("--also", default=None,
                   help="beside published and fast, a third recipe: the fast recipe with the "
                        "--base fast ablation candidates whose names start with these "
                        "comma-separated prefixes, together (e.g. 'constant lr,--ada'); its "
                        "targets are checked against the published recipe as fast's are")
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
    unknown = [t for t in chosen_tasks(args) if t not in TASKS]
    if unknown:
        p.error(f"--tasks: unknown {', '.join(unknown)}; expected all or some of "
                f"{', '.join(TASKS)}")
    quiet = benchlib.wait_for_quiet(args.wait_load)
    machine = benchlib.machine()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        if args.ablation:
            rows = ablation(args, runs_dir)
            benchlib.print_table(rows, ["task", "candidate", "steps", "psnr gain",
                                        "psnr gain sd", "l1 saved", "l1 saved sd", "ssim",
                                        "ssim over flat", "swd", "flat swd"],
                                 f"Ablation on the {args.base} recipe: pix2pix, "
                                 f"{args.budgets[0]:g} min, {args.size} px, {args.seeds} "
                                 "seed(s); gains over the flat mean-colour image")
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
        recipes = ADA_RECIPES if args.ada else RECIPES
        if args.also:
            recipes = {**recipes, **combined_recipe(args.also, p)}
        rows, baselines, grids = comparison(args, runs_dir, recipes)
    summary = summarise(rows, baselines)
    for task in chosen_tasks(args):
        found = [s for s in summary if s["task"] == task]
        title = f"{task} ({TASKS[task].model}): {TASKS[task].summary}; {args.size} px"
        if TASKS[task].paired:
            flat, identity = baselines[task]["flat"], baselines[task]["identity"]
            other = ([{"recipe": "another real target (mean)", **baselines[task]["other real"],
                       **_real_gains(baselines[task])}]
                     if "other real" in baselines[task] else [])
            benchlib.print_table(
                found + [{"recipe": "flat mean colour", **flat},
                         {"recipe": "identity (input)", **identity}, *other],
                ["minutes", "recipe", "seeds", "steps", "psnr", "psnr sd", "psnr gain", "ssim",
                 "ssim sd", "l1", "l1 sd", "l1 saved", "swd", "swd sd"],
                f"{title} (held-out pairs; higher PSNR/SSIM, lower L1 and SWD are better)")
        else:
            benchlib.print_table(
                found + [{"recipe": "untranslated input", **baselines[task]["untranslated"]}],
                ["minutes", "recipe", "seeds", "steps", "swd", "swd sd"],
                f"{title} (SWD of translated held-out inputs to held-out targets; lower is "
                "better)")
    checks = ada_verdict(summary) if args.ada else targets(summary, baselines)
    benchlib.finish(args, "quality", machine, quiet, checks, rows=rows,
                    summary=summary, baselines=baselines, grids=[str(g) for g in grids])
    return 0


if __name__ == "__main__":
    sys.exit(main())
