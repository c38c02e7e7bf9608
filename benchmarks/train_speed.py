"""Training speed and peak memory: seconds per step, images per second and peak memory of one
CycleGAN and one Pix2Pix training step (published networks, 256 px, batch 1, and a larger batch),
ours (`Trainer.train_step`) against a step written the way the published reference code does it.

Each (model, batch, variant) runs in its own fresh process, so its peak RSS (ru_maxrss) is
its own; variants alternate across rounds so a load change on a shared machine hits both. The
first step of each process is a warm-up (and, for CycleGAN at batch 1, is where both variants'
gradients are saved and compared: same weights, same batch, so they must agree to float rounding).

    python benchmarks/train_speed.py                  # 256 px, batch 1 and 4 (about 15 minutes)
    python benchmarks/train_speed.py --size 128       # about 4x cheaper
    python benchmarks/train_speed.py --smoke          # 32 px, narrow networks: seconds

The one-sided section (`--one-sided-rounds`, 0 = skip) times our CycleGAN, CUT and FastCUT steps
at the same size, batch 1 and width, in alternating fresh processes, and reports CUT's and
FastCUT's step time and peak memory as ratios of our CycleGAN's (the CUT paper's own ratios,
0.24/0.40 s and 3.33/4.81 GB for CUT, 0.15/0.40 s and 2.25/4.81 GB for FastCUT, give the targets);
the reference-style CycleGAN step, which the paper's CycleGAN figures describe, is timed beside
them for context.

The health section (`--health-repeats`, 0 = skip) prices the training-health signals inside one
step of each model: every piece the trainer adds (the copy of the networks' buffers a skipped
step restores, the step guard's finiteness check with its one host synchronisation, the
discriminator-decision meter), timed alone on the state a real step left, plus what runs only on
log steps (gradient norms, the means, and every 5th healthy record a copy of the run to roll
back to) and on sample steps (output diversity), spread over the default --log-every 50 and
--sample-every 500. Target: at most 3% of the step time.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import benchlib

MODELS = ("cyclegan", "pix2pix")
TARGETS = {"cyclegan_time": 0.85, "cyclegan_memory": 0.5, "pix2pix_time": 1.0}
ONE_SIDED = ("cut", "fastcut")
# (step time, memory) as fractions of our CycleGAN's, from the CUT paper's ratios
ONE_SIDED_TARGETS = {"cut": (0.65, 0.75), "fastcut": (0.45, 0.55)}


# -- the reference's steps ------------------------------------------------------------------------
def reference_cyclegan_step(trainer, batch) -> None:
    """The reference `CycleGANModel.optimize_parameters()`: forward() runs G_A(A), G_B(G_A(A)),
    G_B(B), G_A(G_B(B)); backward_G adds the identity passes G_A(B), G_B(A) and D_A(fake_B),
    D_B(fake_A), sums every term and calls backward() once, so all six generator graphs are alive
    at the same time. Then both discriminators on pooled fakes, each loss 0.5 * (real + fake)."""
    import torch
    import torch.nn.functional as F

    model, optimizers, o = trainer.model, trainer.optimizers, trainer.model.options
    g_ab, g_ba = model.generators["a_to_b"], model.generators["b_to_a"]
    d_a, d_b = model.discriminators["a"], model.discriminators["b"]
    real_a, real_b = batch["a"], batch["b"]

    def lsgan(prediction, target: float):
        return F.mse_loss(prediction, torch.full_like(prediction, target))

    fake_b = g_ab(real_a)
    rec_a = g_ba(fake_b)
    fake_a = g_ba(real_b)
    rec_b = g_ab(fake_a)
    model.discriminators.requires_grad_(False)
    optimizers["g"].zero_grad(set_to_none=True)
    identity = o.lambda_cycle * o.lambda_identity
    loss_idt = 0.0
    if identity > 0:
        idt_b = g_ab(real_b)
        idt_a = g_ba(real_a)
        loss_idt = F.l1_loss(idt_b, real_b) * identity + F.l1_loss(idt_a, real_a) * identity
    loss_g = (lsgan(d_b(fake_b), 1.0) + lsgan(d_a(fake_a), 1.0)
              + F.l1_loss(rec_a, real_a) * o.lambda_cycle
              + F.l1_loss(rec_b, real_b) * o.lambda_cycle + loss_idt)
    loss_g.backward()
    optimizers["g"].step()
    model.discriminators.requires_grad_(True)
    optimizers["d"].zero_grad(set_to_none=True)
    for domain, real, fake in (("b", real_b, fake_b), ("a", real_a, fake_a)):
        critic = model.discriminators[domain]
        fake = model.pools[domain].query(fake)
        loss_d = (lsgan(critic(real), 1.0) + lsgan(critic(fake.detach()), 0.0)) * 0.5
        loss_d.backward()
    optimizers["d"].step()


def reference_pix2pix_step(trainer, batch) -> None:
    """The reference `Pix2PixModel.optimize_parameters()`: fake_B = G(A); update D first on
    (A, fake_B.detach()) and (A, B) with 0.5 * (fake + real) BCE-with-logits; then update G with
    the GAN term from the updated D plus 100 x L1."""
    import torch
    import torch.nn.functional as F

    model, optimizers = trainer.model, trainer.optimizers
    generator, critic = model.generators["a_to_b"], model.discriminators["b"]
    real_a, real_b = batch["a"], batch["b"]

    def bce(prediction, target: float):
        return F.binary_cross_entropy_with_logits(prediction, torch.full_like(prediction, target))

    fake_b = generator(real_a)
    model.discriminators.requires_grad_(True)
    optimizers["d"].zero_grad(set_to_none=True)
    fake_ab = torch.cat([real_a, fake_b], 1)
    loss_d = (bce(critic(fake_ab.detach()), 0.0)
              + bce(critic(torch.cat([real_a, real_b], 1)), 1.0)) * 0.5
    loss_d.backward()
    optimizers["d"].step()
    model.discriminators.requires_grad_(False)
    optimizers["g"].zero_grad(set_to_none=True)
    loss_g = bce(critic(fake_ab), 1.0) + F.l1_loss(fake_b, real_b) * model.options.lambda_l1
    loss_g.backward()
    optimizers["g"].step()


REFERENCE = {"cyclegan": reference_cyclegan_step, "pix2pix": reference_pix2pix_step}


# -- one measurement (child process) --------------------------------------------------------------
def _trainer(job: dict, workdir: Path):
    from img2img import catalog as default_catalog
    from img2img.testing import write_sample_images
    from img2img.training.trainer import TrainConfig, Trainer

    cls = default_catalog().model(job["model"])
    size, width = job["size"], job["width"]
    generator = f"unet-{size}" if job["model"] == "pix2pix" else "resnet-9"
    options = cls.Options(generator=generator, ngf=width, ndf=width, **job.get("options", {}))
    folders = write_sample_images(cls.data, workdir / "data", n=2, size=size)
    schedule = {**cls.training_defaults, "epochs": 1, "decay_epochs": 0}  # CUT has its own
    reference = job["variant"] == "reference"
    speed = PUBLISHED if reference else {"precision": job["precision"]}
    config = TrainConfig(**folders, **schedule, **speed,
                         batch_size=job["batch"], load_size=size, crop_size=size, workers=0,
                         device=job["device"], log_every=1,
                         sample_every=0, checkpoint_every=0, runs_dir=workdir / "runs",
                         name="bench")
    trainer = Trainer(cls, options, config, progress=False)
    if reference:
        trainer.optimizers = {name: published_adam(o) for name, o in trainer.optimizers.items()}
    return trainer


# The published configuration, on every device: fp32, NCHW tensors, eager networks (our trainer
# would give the reference channels-last on CUDA, and --precision / --compile if asked).
PUBLISHED = {"precision": "fp32", "channels_last": "off", "compile": False}


def published_adam(ours):
    """The reference's `torch.optim.Adam(params, lr, betas)`: torch's default implementation,
    not the fused one-kernel Adam our trainer uses on CUDA and CPUs."""
    import torch

    group = ours.param_groups[0]
    return torch.optim.Adam(group["params"], lr=group["lr"], betas=group["betas"])


def measure(job: dict) -> dict:
    """Build the model through the real Trainer, then time `steps` steps after one warm-up."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(job, Path(tmp))
        device = trainer.device
        generator = torch.Generator().manual_seed(1234)
        shape = (job["batch"], 3, job["size"], job["size"])
        batch = {k: (torch.rand(shape, generator=generator) * 2 - 1).to(device) for k in "ab"}
        if job["variant"] == "reference":
            step = lambda: REFERENCE[job["model"]](trainer, batch)
        else:
            step = lambda: trainer.train_step(batch)
        trainer.model.train()
        rss_setup = benchlib.rss_mb()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        first = benchlib.timed(step, device)
        if job.get("grads"):
            networks = {"generators": trainer.model.generators,
                        "discriminators": trainer.model.discriminators}
            torch.save({f"{part}.{name}": p.grad.detach().cpu()
                        for part, modules in networks.items()
                        for name, p in modules.named_parameters() if p.grad is not None},
                       job["grads"])
        times = [benchlib.timed(step, device) for _ in range(job["steps"])]
        return {**job, "first_step_s": round(first, 4), "step_s": [round(t, 4) for t in times],
                "rss_setup_mb": rss_setup, "peak_rss_mb": benchlib.peak_rss_mb(),
                "gpu_peak_mb": benchlib.gpu_peak_mb(device)}


def measure_health(job: dict) -> dict:
    """The health signals' cost per step, in ms, as the fraction of a step (see the module
    docstring): each piece timed alone (median of `repeats`) after a real step."""
    import statistics
    import time

    import torch

    from img2img.health import SignalMeter
    from img2img.training.settings import TrainConfig
    from img2img.training.watch import SPACING, take_snapshot

    def timed(fn) -> float:
        times = []
        for _ in range(job["repeats"]):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000

    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(job, Path(tmp))
        device, model = trainer.device, trainer.model
        generator = torch.Generator().manual_seed(1234)
        shape = (job["batch"], 3, job["size"], job["size"])
        batch = {k: (torch.rand(shape, generator=generator) * 2 - 1).to(device) for k in "ab"}
        model.train()
        trainer.train_step(batch)  # warm-up
        step_ms = statistics.median(benchlib.timed(lambda: trainer.train_step(batch), device)
                                    for _ in range(job["steps"])) * 1000
        seen = []
        model.adversary.observers.append(lambda *logits: seen.append(logits))
        logged = trainer.train_step(batch)  # leaves its gradients and logits to price
        nets = {"g": model.generators, "aux": model.auxiliary, "d": model.discriminators}
        gradients = {f"grad/{prefix}.{name}": [p.grad for p in net.parameters()]
                     for prefix, group in nets.items() for name, net in group.items()}
        meter = SignalMeter()
        per_step = {
            "buffers": timed(lambda: [b.clone() for b in model.buffers()]),
            "guard": timed(lambda: trainer.watch.flags(logged, gradients).tolist()),
            "decisions": timed(lambda: [meter.observe(*logits) for logits in seen]),
        }
        per_log = {
            "grad norms": timed(lambda: trainer._measure_gradients(nets, {})),
            "means": timed(lambda: meter.means() and trainer.watch.counts()),
            "rollback copy": timed(lambda: take_snapshot(
                model, trainer.optimizers, trainer.scaler, None, {})) / SPACING,
        }
        per_sample = {"diversity": timed(trainer._measure_diversity)}
        defaults = TrainConfig.__dataclass_fields__
        log_every = defaults["log_every"].default
        sample_every = defaults["sample_every"].default
        cost = (sum(per_step.values()) + sum(per_log.values()) / log_every
                + sum(per_sample.values()) / sample_every)
        return {"model": job["model"], "size": job["size"], "step ms": round(step_ms, 2),
                **{f"{k} ms": round(v, 3) for k, v in {**per_step, **per_log,
                                                       **per_sample}.items()},
                "health ms/step": round(cost, 3),
                "share": round(cost / (step_ms - cost), 4)}


def health_cost(args) -> tuple[list[dict], list[dict]]:
    rows = []
    for model in [m for m in args.models.split(",") if m] or list(MODELS):
        job = {"model": model, "size": args.size, "width": args.width, "batch": 1,
               "variant": "ours", "precision": args.precision, "device": args.device,
               "steps": max(args.steps, 3), "repeats": args.health_repeats}
        rows.append(benchlib.isolated(measure_health, job, args.threads, args.passive_wait))
    checks = [{"target": f"{r['model']}: health signals' cost",
               "limit": "<= 3% of the step (--log-every 50, --sample-every 500)",
               "measured": f"{r['share']:.2%} ({r['health ms/step']:.2f} ms of "
                           f"{r['step ms']:.0f} ms)",
               "met": r["share"] <= 0.03} for r in rows]
    return rows, checks


# -- the comparison (parent process) ------------------------------------------------------------
def gradient_difference(path_ref: Path, path_ours: Path) -> dict:
    import torch

    ref, ours = torch.load(path_ref), torch.load(path_ours)
    if ref.keys() != ours.keys():
        return {"same_parameters": False}
    worst_abs = max(float((ref[k] - ours[k]).abs().max()) for k in ref)
    scale = max(float(ref[k].abs().max()) for k in ref)
    worst_rel = max(float((ref[k] - ours[k]).abs().max() / ref[k].abs().max().clamp_min(1e-30))
                    for k in ref)
    return {"same_parameters": True, "tensors": len(ref), "max_abs_diff": worst_abs,
            "max_abs_grad": scale, "max_rel_diff_per_tensor": worst_rel}


def compare(args, model: str, batch: int, rounds: int, steps: int,
            workdir: Path) -> tuple[list, dict]:
    """Alternate the variants' processes for `rounds`; return their rows and the ratios."""
    variants = ["reference", "ours"]
    results: dict[str, list] = {v: [] for v in variants}
    grads = {}
    for r in range(rounds):
        for variant in variants if r % 2 == 0 else variants[::-1]:
            job = {"model": model, "variant": variant, "size": args.size, "batch": batch,
                   "steps": steps, "width": args.width, "device": args.device,
                   "precision": args.precision}
            if model == "cyclegan" and batch == 1 and r == 0:
                grads[variant] = workdir / f"grads_{variant}.pt"
                job["grads"] = str(grads[variant])
            print(f"  {model} batch {batch} {variant} (round {r + 1}/{rounds})", file=sys.stderr,
                  flush=True)
            results[variant].append(
                benchlib.isolated(measure, job, args.threads, args.passive_wait))
    rows, summary = [], {"model": model, "batch": batch}
    for variant, runs in results.items():
        times = [t for run in runs for t in run["step_s"]]
        seconds = benchlib.median(times)
        peak = max(run["peak_rss_mb"] for run in runs)
        setup = min(run["rss_setup_mb"] for run in runs)
        gpu = [run["gpu_peak_mb"] for run in runs if run["gpu_peak_mb"] is not None]
        row = {"model": model, "batch": batch, "variant": variant, "s/step": seconds,
               "images/s": batch / seconds, "peak RSS MB": peak,
               "step RSS MB": round(peak - setup, 1), "GPU peak MB": max(gpu) if gpu else None,
               "steps timed": len(times)}
        rows.append(row)
        summary[variant] = {**row, "step_s": times, "runs": runs}
    ref = rows[0]
    for row in rows[1:]:
        key = "" if row["variant"] == "ours" else f"{row['variant']}_"
        summary[f"{key}time_ratio"] = benchlib.ratio(row["s/step"], ref["s/step"])
        summary[f"{key}peak_rss_ratio"] = benchlib.ratio(row["peak RSS MB"], ref["peak RSS MB"])
        summary[f"{key}step_rss_ratio"] = benchlib.ratio(row["step RSS MB"], ref["step RSS MB"])
        if row["GPU peak MB"] is not None:
            summary[f"{key}gpu_peak_ratio"] = benchlib.ratio(row["GPU peak MB"],
                                                             ref["GPU peak MB"])
        if row["variant"] in grads:
            summary[f"{key}gradients"] = gradient_difference(grads["reference"],
                                                             grads[row["variant"]])
    return rows, summary


def verdicts(summaries: list[dict]) -> list[dict]:
    found = []
    for s in summaries:
        if s["batch"] != 1:
            continue
        if s["model"] == "cyclegan":
            memory_key = "gpu_peak_ratio" if "gpu_peak_ratio" in s else "peak_rss_ratio"
            found.append({"target": "cyclegan step time ours/reference", "limit": "<= 0.85",
                          "measured": s["time_ratio"],
                          "met": s["time_ratio"] <= TARGETS["cyclegan_time"]})
            found.append({"target": f"cyclegan {memory_key.replace('_', ' ')} ours/reference",
                          "limit": "<= 0.5", "measured": s[memory_key],
                          "met": s[memory_key] <= TARGETS["cyclegan_memory"]})
            found.append({"target": "cyclegan step-only RSS (peak - setup) ours/reference",
                          "limit": "(context)", "measured": s["step_rss_ratio"], "met": None})
            if "gradients" in s:
                g = s["gradients"]
                found.append({"target": "cyclegan gradient max |ours - reference|",
                              "limit": "float rounding", "measured": g.get("max_abs_diff"),
                              "met": g.get("max_rel_diff_per_tensor", 1) < 1e-3})
        if s["model"] == "pix2pix":
            found.append({"target": "pix2pix step time ours/reference", "limit": "<= 1.0",
                          "measured": s["time_ratio"],
                          "met": s["time_ratio"] <= TARGETS["pix2pix_time"]})
    return found


# -- CUT and FastCUT against our own CycleGAN -------------------------------------------------
def compare_one_sided(args, rounds: int, steps: int) -> tuple[list, dict]:
    """Our CycleGAN, CUT and FastCUT steps (ResNet-9 generators, PatchGANs, batch 1, the same
    size and width), and for context the reference-style CycleGAN step the paper measured
    against; each process alone, the order rotating every round; ratios to our CycleGAN."""
    recompute = {"recompute": True}
    entries = {"cyclegan": ("cyclegan", "ours", {}), "cut": ("cut", "ours", {}),
               "fastcut": ("fastcut", "ours", {}),
               "cut --recompute": ("cut", "ours", recompute),
               "fastcut --recompute": ("fastcut", "ours", recompute),
               "cyclegan reference": ("cyclegan", "reference", {})}
    names = list(entries)
    runs: dict[str, list] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            model, variant, options = entries[name]
            job = {"model": model, "variant": variant, "options": options,
                   "size": args.size, "batch": 1,
                   "steps": steps, "width": args.width, "device": args.device,
                   "precision": args.precision}
            print(f"  one-sided: {name} (round {r + 1}/{rounds})", file=sys.stderr, flush=True)
            runs[name].append(benchlib.isolated(measure, job, args.threads, args.passive_wait))
    rows = []
    for name in names:
        times = [t for run in runs[name] for t in run["step_s"]]
        peak = max(run["peak_rss_mb"] for run in runs[name])
        setup = min(run["rss_setup_mb"] for run in runs[name])
        gpu = [run["gpu_peak_mb"] for run in runs[name] if run["gpu_peak_mb"] is not None]
        rows.append({"model": name, "s/step": benchlib.median(times),
                     "peak RSS MB": peak, "step RSS MB": round(peak - setup, 1),
                     "GPU peak MB": max(gpu) if gpu else None, "steps timed": len(times)})
    by_name = {row["model"]: row for row in rows}

    def ratios_to(row: dict, base: dict) -> dict:
        return {"time_ratio": benchlib.ratio(row["s/step"], base["s/step"]),
                "peak_rss_ratio": benchlib.ratio(row["peak RSS MB"], base["peak RSS MB"]),
                "step_rss_ratio": benchlib.ratio(row["step RSS MB"], base["step RSS MB"]),
                **({"gpu_peak_ratio": benchlib.ratio(row["GPU peak MB"], base["GPU peak MB"])}
                   if row["GPU peak MB"] is not None else {})}

    one_sided = [name for name in names if entries[name][0] in ONE_SIDED]
    ratios = {m: ratios_to(by_name[m], by_name["cyclegan"]) for m in one_sided}
    to_reference = {m: ratios_to(by_name[m], by_name["cyclegan reference"])
                    for m in ("cyclegan", *one_sided)}
    return rows, {"rows": rows, "ratios": ratios, "to_reference": to_reference, "runs": runs}


def one_sided_verdicts(ratios: dict) -> list[dict]:
    """Time against the paper's ratio; memory as GPU peak on CUDA, else the step's own RSS
    (peak less what the process held before its first step: weights, libraries, data)."""
    found = []
    for model, r in ratios.items():  # "cut", "cut --recompute", ...: the model's targets
        time_limit, memory_limit = ONE_SIDED_TARGETS[model.split()[0]]
        memory_key = "gpu_peak_ratio" if "gpu_peak_ratio" in r else "step_rss_ratio"
        found.append({"target": f"{model} step time / our cyclegan's", "limit": f"<= {time_limit}",
                      "measured": r["time_ratio"], "met": r["time_ratio"] <= time_limit})
        found.append({"target": f"{model} {memory_key.replace('_', ' ')} / our cyclegan's",
                      "limit": f"<= {memory_limit}", "measured": r[memory_key],
                      "met": r[memory_key] <= memory_limit})
        found.append({"target": f"{model} whole-process peak RSS / our cyclegan's",
                      "limit": "(context)", "measured": r["peak_rss_ratio"], "met": None})
    return found


def main(argv: list[str] | None = None) -> int:
    p = benchlib.parser("train_speed", __doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256, help="image size (pix2pix uses unet-SIZE)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per process (after warm-up)")
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating reference/ours processes per variant at batch 1")
    p.add_argument("--large-batch", type=int, default=4, help="the larger batch (0 = skip)")
    p.add_argument("--large-steps", type=int, default=1, help="timed steps at the larger batch")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    p.add_argument("--width", type=int, default=64, help="ngf = ndf (64 = published)")
    p.add_argument("--precision", default="fp32", help="ours: fp32 (equal settings), auto, bf16")
    p.add_argument("--pix2pix-steps", type=int, default=12,
                   help="timed pix2pix steps per process at batch 1 (its steps are short)")
    p.add_argument("--health-repeats", type=int, default=20,
                   help="timings of each health-signal piece (0 = skip the health section)")
    p.add_argument("--one-sided-rounds", type=int, default=2,
                   help="rounds of our CycleGAN, CUT and FastCUT processes (0 = skip)")
    args = p.parse_args(argv)
    benchlib.setup_torch(args.threads)
    if args.smoke:
        args.size, args.steps, args.rounds, args.width = 32, 1, 1, 8
        args.pix2pix_steps = 1
        args.large_batch, args.large_steps = 2, 1
        args.one_sided_rounds = min(args.one_sided_rounds, 1)
        args.health_repeats = min(args.health_repeats, 2)
    quiet = benchlib.wait_for_quiet(args.wait_load)
    machine = benchlib.machine()
    rows, summaries = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for model in [m for m in args.models.split(",") if m]:  # "" = the one-sided part only
            first_steps = args.pix2pix_steps if model == "pix2pix" else args.steps
            for batch, rounds, steps in ((1, args.rounds, first_steps),
                                         (args.large_batch, 1, args.large_steps)):
                if batch < 1:
                    continue
                found, summary = compare(args, model, batch, rounds, steps, Path(tmp))
                rows += found
                summaries.append(summary)
    columns = ["model", "batch", "variant", "s/step", "images/s", "peak RSS MB", "step RSS MB",
               "GPU peak MB", "steps timed"]
    if rows:
        benchlib.print_table(rows, columns, f"Training step, {args.size} px, device {args.device}")
    ratio_rows = [{"model": s["model"], "batch": s["batch"], "variant": variant,
                   "time / ref": s[f"{key}time_ratio"],
                   "peak RSS / ref": s[f"{key}peak_rss_ratio"],
                   "step RSS / ref": s[f"{key}step_rss_ratio"],
                   "grad max abs diff": s.get(f"{key}gradients", {}).get("max_abs_diff")}
                  for s in summaries for variant, key in (("ours", ""),)]
    if ratio_rows:
        benchlib.print_table(ratio_rows, list(ratio_rows[0]), "Ratios (ours / reference, one run)")
    checks, one_sided = verdicts(summaries), {}
    if args.one_sided_rounds > 0:
        found, one_sided = compare_one_sided(args, args.one_sided_rounds, args.steps)
        benchlib.print_table(found, list(found[0]), f"One-sided models beside our CycleGAN, "
                             f"{args.size} px, batch 1, width {args.width}")
        benchlib.print_table([{"model": m, **r} for m, r in one_sided["ratios"].items()],
                             ["model", "time_ratio", "peak_rss_ratio", "step_rss_ratio"],
                             "Ratios (model / our CycleGAN, one run)")
        benchlib.print_table([{"model": m, **r} for m, r in one_sided["to_reference"].items()],
                             ["model", "time_ratio", "peak_rss_ratio", "step_rss_ratio"],
                             "Context: ratios to the reference-style CycleGAN step (one run)")
        checks += one_sided_verdicts(one_sided["ratios"])
    health = []
    if args.health_repeats > 0:
        health, found = health_cost(args)
        benchlib.print_table(health, list(health[0]), f"Health signals' cost per step, "
                             f"{args.size} px, batch 1, width {args.width}")
        checks += found
    benchlib.finish(args, "train_speed", machine, quiet, checks, rows=rows,
                    comparisons=summaries, one_sided=one_sided, health=health)
    return 0


if __name__ == "__main__":
    sys.exit(main())
