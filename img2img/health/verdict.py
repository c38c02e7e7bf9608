"""The health verdict of a run, read from its `metrics.jsonl` and `config.json`: whether and
when the discriminator overpowered the generator, whether the outputs collapsed, which steps
were skipped or rolled back, and any non-finite value, each with what to try. Pure reading and
judging; `render` turns a Verdict into text or HTML."""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import CheckpointError
from . import advice
from .divergence import ROLLBACK, DivergenceMonitor
from .keys import D_ACC_FAKE, D_ACC_REAL, DIVERSITY, PREFIX, R_T, ROLLBACKS, SKIPPED

# As `img2img.runs` names them; read here with json so the verdict depends on no run module.
CONFIG = "config.json"
METRICS = "metrics.jsonl"

D_ACC_HIGH = 0.95     # D right about 19 images in 20, real and fake alike: G is learning nothing
R_T_HIGH = 0.9        # r_t = 2 x accuracy on real - 1 when no logit sits on the threshold
NEAR_ZERO = 0.1       # D loss below a tenth of its value at chance
SUSTAINED = 5         # records in a row: one log interval of a confident D is not a verdict
SPAN = 0.05           # ... covering 5% of the run's steps too, however short --log-every is
COLLAPSE_BELOW = 0.05  # outputs 20x less different than their inputs (or nearly identical)

# The discriminator's real + fake loss and the generator's adversarial loss when D is undecided
# (logit at the threshold), per GAN kind, as `img2img.networks.Adversary` computes them. wgan-gp has none:
# its critic is unbounded, and an optimal critic is what WGAN wants, so it cannot overpower.
D_AT_CHANCE = {"vanilla": math.log(2), "lsgan": 0.25, "hinge": 2.0}
G_AT_CHANCE = {"vanilla": math.log(2), "lsgan": 0.25, "hinge": 0.0}

OVERPOWERED = "discriminator overpowered"
COLLAPSED = "outputs collapsed"
SKIPPED_STEPS = "skipped steps"
ROLLED_BACK = "rollbacks"
NON_FINITE = "non-finite values"


@dataclass(frozen=True)
class Finding:
    """One problem: what (`problem`, one of the names above), from which logged step, what was
    seen, the signal (a metrics key) that showed it, and what to try for that signal."""

    problem: str
    step: int
    detail: str
    signal: str
    suggestions: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    run: Path
    findings: tuple[Finding, ...]
    records: int                 # training log records judged
    steps: tuple[int, int]       # the first and last logged step
    notes: tuple[str, ...] = ()  # what could not be judged, and why
    series: Mapping[str, list[tuple[int, float]]] = field(default_factory=dict)  # health/*

    @property
    def healthy(self) -> bool:
        return not self.findings


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _load_records(path: Path) -> list[dict[str, Any]]:
    lines = [(i, line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if line.strip()]
    records = []
    for i, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == lines[-1][0]:
                break  # the last line of a run that was killed mid-write
            raise CheckpointError(f"{path} line {i} is not JSON ({exc.msg})") from None
        if isinstance(record, dict):
            records.append(record)
    return records


def read_run(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(config, records) of a run folder; CheckpointError naming the folder if it is not a run
    or has logged no training step yet."""
    run = Path(run)
    if not (run / CONFIG).is_file():
        what = "is not a run folder" if run.is_dir() else "does not exist"
        raise CheckpointError(f"{run} {what} (no {CONFIG})")
    try:
        config = json.loads((run / CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{run / CONFIG} is not valid JSON: {exc}") from None
    if not (run / METRICS).is_file():
        raise CheckpointError(f"{run} has no {METRICS}: the run has not logged a step yet")
    records = _load_records(run / METRICS)
    if not any(_is_training(r) for r in records):
        raise CheckpointError(f"{run / METRICS} holds no training record yet; try again after "
                              "the first --log-every steps")
    return config, records


def _is_training(record: Mapping[str, Any]) -> bool:
    return any(key.startswith(("g/", "d/")) for key in record)


def _kind(config: Mapping[str, Any]) -> str:
    return str((config.get("training") or {}).get("gan_loss") or "vanilla")


def _dedupe(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _loss_evidence(record: Mapping[str, Any], kind: str) -> str | None:
    """"D loss x while G's adversarial loss y" when the discriminator's real + fake loss (per
    discriminator) is near zero and the generator's adversarial terms are above chance."""
    d_terms = {k[2:]: v for k, v in record.items() if k.startswith("d/") and _number(v)
               and k[2:].rsplit("_", 1)[-1] in ("real", "fake")}
    gan = [v for k, v in record.items() if k.startswith("g/gan") and _number(v)]
    if kind not in D_AT_CHANCE or not d_terms or not gan:
        return None
    judged = len({k.rpartition("_")[0] for k in d_terms})  # "a_real" -> D "a"
    d_loss, g_loss = sum(d_terms.values()) / judged, sum(gan) / len(gan)
    if d_loss < NEAR_ZERO * D_AT_CHANCE[kind] and g_loss > G_AT_CHANCE[kind]:
        return (f"the discriminator's loss was {d_loss:.3g} (at chance {D_AT_CHANCE[kind]:.3g}) "
                f"while the generator's adversarial loss was {g_loss:.3g}")
    return None


def _overpowered_evidence(record: Mapping[str, Any], kind: str) -> tuple[str, str] | None:
    """(signal, what was seen) if this record shows an overpowering discriminator: from its
    accuracies if logged, else from r_t, else from the losses."""
    real, fake = record.get(D_ACC_REAL), record.get(D_ACC_FAKE)
    if _number(real) and _number(fake):
        if real >= D_ACC_HIGH and fake >= D_ACC_HIGH:
            return D_ACC_REAL, (f"the discriminator was right about {real:.0%} of real and "
                                f"{fake:.0%} of fake images (>= {D_ACC_HIGH:.0%} both)")
        return None
    r_t = record.get(R_T)
    if _number(r_t):
        if r_t >= R_T_HIGH:
            return R_T, f"r_t was {r_t:.2f} (>= {R_T_HIGH}): D is sure of every real image"
        return None
    found = _loss_evidence(record, kind)
    return None if found is None else (advice.D_LOSS, found)


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """[start, end) of each maximal run of True in `flags`."""
    found, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            found.append((start, i))
            start = None
    return found


def _overpowered(train: list[dict[str, Any]], config: Mapping[str, Any],
                 sustained: int) -> Finding | None:
    kind = _kind(config)
    if kind == "wgan-gp":
        return None  # see D_AT_CHANCE: an optimal critic is WGAN's aim
    evidence = [_overpowered_evidence(r, kind) for r in train]
    steps = [0, *(int(r["step"]) for r in train)]  # steps[i]: where record i's interval began
    long = [(a, b) for a, b in _runs([e is not None for e in evidence])
            if b - a >= sustained and steps[b] - steps[a] >= SPAN * steps[-1]]
    if not long:
        return None
    start, end = long[0]
    signal, seen = evidence[start]
    until = "to the last record" if end == len(train) else f"until step {train[end - 1]['step']}"
    total = sum(b - a for a, b in long)
    detail = (f"{seen}, for {end - start} records in a row {until}"
              + (f" ({total} records in all)" if total > end - start else ""))
    return Finding(OVERPOWERED, int(train[start]["step"]), detail, signal,
                   _dedupe(advice.suggestions(signal, config)))


def _diversity_keys(records: list[dict[str, Any]]) -> list[str]:
    keys = {k for r in records for k in r if k == DIVERSITY or k.startswith(DIVERSITY + ".")}
    return sorted(keys)


def _collapsed(records: list[dict[str, Any]], config: Mapping[str, Any]) -> list[Finding]:
    """A run of two or more logged diversities below COLLAPSE_BELOW, or a low last one."""
    findings = []
    for key in _diversity_keys(records):
        points = [(int(r["step"]), float(r[key])) for r in records
                  if _number(r.get(key)) and _number(r.get("step"))]
        low = [v < COLLAPSE_BELOW for _, v in points]
        runs = [(a, b) for a, b in _runs(low) if b - a >= 2 or b == len(points)]
        if not runs:
            continue
        start, end = runs[0]
        values = ", ".join(f"{v:.3g}" for _, v in points[start:end][:5])
        findings.append(Finding(
            COLLAPSED, points[start][0],
            f"{key} was {values} (below {COLLAPSE_BELOW}; about 1 means outputs differ as much "
            f"as their inputs): the generator gives nearly the same output whatever the input",
            key, _dedupe(advice.suggestions(key, config))))
    return findings


def _increases(train: list[dict[str, Any]], key: str) -> list[tuple[int, int]]:
    """(step, how many more) for each record where the cumulative count `key` rose."""
    found, before = [], 0
    for record in train:
        value = record.get(key)
        if _number(value):
            if value > before:
                found.append((int(record["step"]), int(value - before)))
            before = value
    return found


def _listed(steps: list[tuple[int, int]]) -> str:
    shown = ", ".join(str(step) for step, _ in steps[:8])
    return shown + (f" and {len(steps) - 8} more" if len(steps) > 8 else "")


def _skipped(train: list[dict[str, Any]], config: Mapping[str, Any]) -> Finding | None:
    rises = _increases(train, SKIPPED)
    if not rises:
        return None
    total = sum(n for _, n in rises)
    return Finding(SKIPPED_STEPS, rises[0][0],
                   f"{total} step(s) skipped for a non-finite loss or gradient, in the log "
                   f"interval(s) ending at step(s) {_listed(rises)}", SKIPPED,
                   _dedupe(advice.suggestions(SKIPPED, config)))


def _what_diverged(train: list[dict[str, Any]]) -> str | None:
    """The key that most often set off a rollback when the records are replayed through the
    divergence monitor, or None (the trainer may have dropped the divergent records)."""
    monitor, seen = DivergenceMonitor(max_rollbacks=len(train)), Counter()
    for record in train:
        decision = monitor.check(record)
        if decision.action == ROLLBACK:
            seen.update(decision.signals)
    return seen.most_common(1)[0][0] if seen else None


def _rolled_back(train: list[dict[str, Any]], config: Mapping[str, Any]) -> Finding | None:
    rises = _increases(train, ROLLBACKS)
    if not rises:
        return None
    signal = _what_diverged(train)
    cause = (f"; {signal} ran away from its recent history" if signal
             else "; the divergent records were not kept")
    total = sum(n for _, n in rises)
    return Finding(ROLLED_BACK, rises[0][0],
                   f"{total} rollback(s) to the last healthy checkpoint after divergence, by "
                   f"step(s) {_listed(rises)}{cause}", signal or ROLLBACKS,
                   _dedupe(advice.suggestions(signal or ROLLBACKS, config)))


def _non_finite(records: list[dict[str, Any]], config: Mapping[str, Any]) -> Finding | None:
    for record in records:
        bad = [k for k, v in record.items() if _number(v) and not math.isfinite(v)]
        if bad:
            signal = bad[0]
            return Finding(NON_FINITE, int(record.get("step", 0)),
                           f"{', '.join(bad)} logged as {record[signal]}", signal,
                           _dedupe([*advice.suggestions(signal, config),
                                    *advice.suggestions(advice.NON_FINITE, config)]))
    return None


def _notes(records: list[dict[str, Any]], config: Mapping[str, Any]) -> tuple[str, ...]:
    notes = []
    if _kind(config) == "wgan-gp":
        notes.append("an overpowering discriminator is not judged for wgan-gp: an optimal "
                     "critic is what WGAN wants")
    if not any(k.startswith(PREFIX) for r in records for k in r):
        notes.append("no health/* signals in this log (a run from before img2img logged "
                     "them): judged from the losses alone")
    if not _diversity_keys(records):
        notes.append("output diversity was not logged, so collapse is not judged")
    return tuple(notes)


def _series(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    found: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key.startswith(PREFIX) and _number(value) and "step" in record:
                found.setdefault(key, []).append((int(record["step"]), float(value)))
    return found


def judge(records: list[dict[str, Any]], config: Mapping[str, Any] | None = None,
          run: Path = Path("."), sustained: int = SUSTAINED) -> Verdict:
    """The verdict on a run's log records (training and evaluation lines, in file order).

    Discriminator overpowered: `sustained` training records in a row (and SPAN of the steps)
    where D's accuracy is >= D_ACC_HIGH on real and on fake, or, without accuracies, r_t >=
    R_T_HIGH, or, without either, D's loss < NEAR_ZERO x its chance value while G's
    adversarial loss is above chance. Collapsed: diversity < COLLAPSE_BELOW twice in a row or
    at the last sample. Skipped steps, rollbacks: their cumulative counts rose. Non-finite:
    any logged NaN or inf."""
    config = config or {}
    train = [r for r in records if _is_training(r) and _number(r.get("step"))]
    found = [_overpowered(train, config, sustained), *_collapsed(records, config),
             _skipped(train, config), _rolled_back(train, config), _non_finite(records, config)]
    findings = tuple(sorted((f for f in found if f is not None), key=lambda f: f.step))
    steps = (int(train[0]["step"]), int(train[-1]["step"])) if train else (0, 0)
    notes = _notes(records, config) if train else ("no training record was logged",)
    return Verdict(Path(run), findings, len(train), steps, notes, _series(records))


def judge_run(run: Path) -> Verdict:
    """Read the run folder `run` and judge it (CheckpointError if it is not a run)."""
    config, records = read_run(run)
    return judge(records, config, run)
