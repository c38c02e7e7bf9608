"""Benchmark: can cgan draw recognisable handwritten digits on a CPU in minutes?

Trains `cgan` on the bundled UCI digits (`datasets/digits`, 1797 real digits, 10 classes) at
32 px grey for a fixed wall-clock budget, then asks a small CNN trained on the real digits (its
held-out accuracy is printed) which digit each generated image shows. It prints the share of
generated digits recognised as the class they were drawn for (target: at least 90%), per class,
for the moving-average generator and the raw one, and the time taken; results go to JSON.

    python benchmarks/cgan_digits.py                  # 10 minutes of training
    python benchmarks/cgan_digits.py --steps 1000 --threads 1 --eval-every 100
    python benchmarks/cgan_digits.py --smoke          # seconds: checks the script runs

Takes the options every benchmark takes (see benchmarks/README.md): --smoke, --out (default
benchmarks/results/cgan_digits.json), --device, --threads, --wait-load, --passive-wait.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

import benchlib
import img2img
from img2img.data import LabelledDataset
from img2img.data.augment import AugmentRecipe
from img2img.data.ops import to_model_range
from img2img.training.ema import using
from img2img_cgan.model import ConditionalGAN

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
TARGET = 0.90


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = benchlib.parser("cgan_digits", __doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "datasets" / "digits")
    p.add_argument("--budget", type=float, default=600.0, help="training seconds")
    p.add_argument("--steps", type=int, default=None, help="train this many steps instead")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=int, default=16, help="--ngf and --ndf of the cgan")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--ema", type=float, default=0.99, help="generator average decay (0 = off)")
    p.add_argument("--lambda-ms", type=float, default=None,
                   help="cgan --lambda-ms (default: the model's)")
    p.add_argument("--per-class", type=int, default=100, help="generated digits per class")
    p.add_argument("--eval-every", type=int, default=0, help="also score every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 1 or args.budget <= 0:
        p.error("--steps and --budget must be positive")
    if args.smoke:
        args.steps, args.batch_size, args.width, args.per_class = 3, 8, 4, 4
    return args


# -- the judge: a small CNN trained on the real digits ------------------------------------------
def load_digits(folder: Path) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """All digits as (N,1,32,32) in [-1, 1], exactly as the cgan's loader prepares them."""
    dataset = LabelledDataset(folder, AugmentRecipe(SIZE, SIZE, flip=False), channels=1)
    items = [dataset[(i, 0)] for i in range(len(dataset))]
    images = to_model_range(torch.stack([item["image"] for item in items]))
    return images, torch.stack([item["label"] for item in items]), dataset.classes


def classifier(classes: int) -> nn.Module:
    """Two conv blocks at 16 px: the digits were drawn at 8x8, so 32 px holds no finer detail."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(nn.AvgPool2d(2), *block(1, 32), *block(32, 64), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(64 * 4 * 4, classes))


def shifted(images: torch.Tensor, generator: torch.Generator, most: int = 2) -> torch.Tensor:
    """Random translations of up to `most` px, so the judge does not hinge on exact position."""
    padded = nn.functional.pad(images, (most,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * most + 1, (2,), generator=generator).tolist()
    return padded[..., dy:dy + images.shape[-2], dx:dx + images.shape[-1]]


def train_judge(images, labels, classes: int, epochs: int, seed: int) -> tuple[nn.Module, float]:
    """Train on 4 of every 5 digits; return the net and its accuracy on the held-out fifth."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)
    held, train = order[::5], torch.cat([order[i::5] for i in range(1, 5)])
    net = classifier(classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        net.train()
        for batch in train[torch.randperm(len(train), generator=generator)].split(64):
            loss = nn.functional.cross_entropy(net(shifted(images[batch], generator)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(images[held]).argmax(1) == labels[held]).float().mean().item()
    return net, accuracy


def spread(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean distance between two images of the same class (up to 50 per class): how varied."""
    per_class = []
    for c in labels.unique():
        flat = images[labels == c][:50].flatten(1)
        per_class.append(torch.cdist(flat, flat).sum() / max(len(flat) * (len(flat) - 1), 1))
    return float(torch.stack(per_class).mean())


@torch.no_grad()
def score(model: ConditionalGAN, judge: nn.Module, per_class: int, seed: int,
          real_spread: float) -> dict:
    """Share of generated digits the judge recognises as the class they were drawn for, and
    their variety within a class relative to the real digits' (1 = as varied, 0 = one image)."""
    classes = model.num_classes
    torch.manual_seed(seed)
    fakes = model.sample(torch.arange(classes), per_class).float().cpu()
    wanted = torch.arange(classes).repeat_interleave(per_class)
    hits = judge(fakes).argmax(1) == wanted
    per = hits.view(classes, per_class).float().mean(1)
    return {"recognised": round(hits.float().mean().item(), 4),
            "variety": round(spread(fakes, wanted) / real_spread, 3),
            "per_class": {model.spec.classes[c]: round(per[c].item(), 3) for c in range(classes)}}


@contextlib.contextmanager
def evaluating(trainer: img2img.Trainer, average: bool):
    """The trainer's model in eval mode, with the averaged generator when asked (and kept)."""
    generators = trainer.ema.average if average and trainer.ema is not None else None
    trainer.model.eval()
    try:
        with using(trainer.model, generators) as model:
            yield model
    finally:
        trainer.model.train()


# -- training -----------------------------------------------------------------------------------
def make_trainer(args: argparse.Namespace) -> img2img.Trainer:
    config = img2img.TrainConfig(
        data=args.data, channels=1, load_size=SIZE, crop_size=SIZE, flip=False,
        batch_size=args.batch_size, lr=args.lr, beta1=0.5, beta2=0.999, gan_loss="hinge",
        ema=args.ema, epochs=1_000_000, decay_epochs=0, max_steps=1, workers=0, log_every=50,
        sample_every=0, checkpoint_every=0, keep_checkpoints=1, seed=args.seed,
        device=args.device, runs_dir=args.runs_dir, name="bench-cgan-digits")
    extra = {} if args.lambda_ms is None else {"lambda_ms": args.lambda_ms}
    options = ConditionalGAN.Options(ngf=args.width, ndf=args.width, **extra)
    return img2img.Trainer(ConditionalGAN, options, config, progress=False,
                           plugin={"name": "img2img_cgan"})


def run_chunk(trainer: img2img.Trainer, steps: int) -> float:
    """Train `steps` more steps; returns the seconds they took."""
    trainer.config = dataclasses.replace(trainer.config, max_steps=trainer.state.step + steps)
    started = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - started


def schedule(trainer: img2img.Trainer, total: int) -> None:
    """Constant learning rate for the first half of `total` steps, then linear decay to zero:
    the generator settles instead of oscillating between the classes' looks at the end."""
    per_epoch = trainer.steps_per_epoch()
    epochs = max(1, math.ceil(total / 2 / per_epoch))
    decay = max(0, math.ceil(total / per_epoch) - epochs)
    trainer.config = dataclasses.replace(trainer.config, epochs=epochs, decay_epochs=decay)


def train(trainer: img2img.Trainer, args: argparse.Namespace, judge: nn.Module,
          real_spread: float) -> tuple[float, list]:
    """Train for --steps, or for as many steps as the first ones say fit into --budget; returns
    the seconds spent and the learning curve (--eval-every)."""
    chunk = args.eval_every or 25
    spent, curve = 0.0, []
    total = args.steps
    state = trainer.state
    if total is None:
        spent = run_chunk(trainer, min(chunk, 20))
        total = max(state.step, int(args.budget / (spent / state.step)))
        print(f"  {spent / state.step:.2f} s/step: {total} steps fit into {args.budget:.0f} s",
              flush=True)
    schedule(trainer, total)
    while state.step < total:
        spent += run_chunk(trainer, min(chunk - state.step % chunk, total - state.step))
        if args.eval_every and state.step % args.eval_every == 0:
            point = {"step": state.step, "seconds": round(spent, 1)}
            for name, average in (("raw", False), ("ema", True)):
                with evaluating(trainer, average) as model:
                    found = score(model, judge, 20, args.seed, real_spread)
                point[name] = {k: found[k] for k in ("recognised", "variety")}
            curve.append(point)
            print(f"  step {point['step']:5d}  {spent:6.0f} s  recognised (variety): raw "
                  f"{point['raw']['recognised']:.0%} ({point['raw']['variety']:.2f}), ema "
                  f"{point['ema']['recognised']:.0%} ({point['ema']['variety']:.2f})", flush=True)
    return spent, curve


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.setup_torch(args.threads, args.passive_wait)
    quiet = benchlib.wait_for_quiet(args.wait_load)
    machine = benchlib.machine()
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    images, labels, classes = load_digits(args.data)
    judge, judge_accuracy = train_judge(images, labels, len(classes), 1 if args.smoke else 10,
                                        args.seed)
    judge_seconds = time.perf_counter() - started
    print(f"judge: small CNN on {len(images)} real digits, held-out accuracy "
          f"{judge_accuracy:.1%} ({judge_seconds:.0f} s)", flush=True)

    trainer = make_trainer(args)
    print(f"training cgan (width {args.width}, batch {args.batch_size}) for "
          f"{f'{args.steps} steps' if args.steps else f'{args.budget:.0f} s'} on {args.device} "
          f"with {torch.get_num_threads()} torch thread(s) into {trainer.run_dir}", flush=True)
    real_spread = spread(images, labels)
    seconds, curve = train(trainer, args, judge, real_spread)

    rows, scores = [], {}
    for name, average in (("ema", True), ("raw", False)):
        if average and trainer.ema is None:
            continue
        with evaluating(trainer, average) as model:
            scores[name] = score(model, judge, args.per_class, args.seed + 1, real_spread)
        rows.append({"generator": name, "recognised": scores[name]["recognised"],
                     "variety": scores[name]["variety"], "steps": trainer.state.step,
                     "train s": round(seconds, 1), "s/step": round(seconds / trainer.state.step, 3),
                     **scores[name]["per_class"]})
    best = next(iter(scores))
    recognised = scores[best]["recognised"]
    benchlib.print_table(rows, ["generator", "recognised", "variety", "steps", "train s", "s/step",
                                *classes],
                         f"cgan on digits: share of {len(classes) * args.per_class} generated "
                         "digits recognised as the requested class (overall, then per class)")
    print(f"\n{recognised:.1%} recognised ({best} generator); target {TARGET:.0%}: "
          f"{'met' if recognised >= TARGET else 'NOT met'}. Variety within a class: "
          f"{scores[best]['variety']:.2f} of the real digits'. Judge: {judge_accuracy:.1%} "
          f"held-out accuracy, {judge_seconds:.0f} s.", flush=True)
    benchlib.finish(
        args, "cgan_digits", machine, quiet, smoke=args.smoke, target=TARGET,
        recognised=recognised, generator=best, **scores, rows=rows, steps=trainer.state.step,
        train_seconds=round(seconds, 1), seconds_per_step=round(seconds / trainer.state.step, 3),
        judge_held_out_accuracy=round(judge_accuracy, 4), judge_seconds=round(judge_seconds, 1),
        run=str(trainer.run_dir), curve=curve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
