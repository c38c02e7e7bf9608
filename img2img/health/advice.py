"""What to try when a health signal fires, tied to that signal: the verdict, the divergence
monitor and the step guard all phrase their suggestions here. Given the run's `config.json`,
advice names the flag with a value and leaves out what the run already does."""
from __future__ import annotations

from typing import Any, Mapping

from .keys import D_ACC_FAKE, D_ACC_REAL, DIVERSITY, GRAD_PREFIX, R_T, SKIPPED

# Pseudo-signals that are not single keys of metrics.jsonl.
D_LOSS = "d-loss-near-zero"  # the discriminator's loss near zero while the generator's climbs
NON_FINITE = "non-finite"    # a logged loss or gradient norm was NaN or infinite

Config = Mapping[str, Any]


def _training(config: Config | None) -> Mapping[str, Any]:
    return (config or {}).get("training") or {}


def _options(config: Config | None) -> Mapping[str, Any]:
    return (config or {}).get("options") or {}


def lower_d_lr(config: Config | None) -> str:
    training = _training(config)
    lr = training.get("lr_d") or training.get("lr")
    if not lr:
        return "a lower discriminator learning rate (--lr-d, e.g. half of --lr)"
    return f"a lower discriminator learning rate: --lr-d {lr / 2:g} (now {lr:g})"


def lower_lr(config: Config | None) -> str:
    lr = _training(config).get("lr")
    if not lr:
        return "a lower learning rate (--lr)"
    return f"a lower learning rate: --lr {lr / 2:g} (now {lr:g})"


def ada(config: Config | None) -> list[str]:
    if _training(config).get("ada"):
        return []
    return ["--ada: augmentation of what the discriminator sees, as much as its r_t says it needs"]


def diff_augment(config: Config | None) -> list[str]:
    if str(_training(config).get("diff_augment") or "none") not in ("none", ""):
        return []
    return ["--diff-augment color,translation,cutout, so the discriminator cannot memorise "
            "the training images"]


def spectral_norm(config: Config | None) -> list[str]:
    options = _options(config)
    if config is None:
        return ["spectral norm in the discriminator (--spectral-norm, where the model has it)"]
    if options.get("spectral_norm") is False:
        return ["--spectral-norm, which bounds how fast the discriminator can sharpen"]
    return []


def precision(config: Config | None) -> list[str]:
    if _training(config).get("precision") == "fp16":
        return ["--precision bf16 (or fp32): fp16's range overflows where bf16's does not"]
    return []


def smaller_lambda(term: str, config: Config | None) -> str:
    """A smaller weight for the generator term `term` (e.g. "cycle_a"), naming the model's
    --lambda-* option when one matches the term's name."""
    root = term.split("_")[0]
    for name, value in _options(config).items():
        weight = name[len("lambda_"):] if name.startswith("lambda_") else None
        if weight and (root.startswith(weight) or weight.startswith(root)):
            flag = "--" + name.replace("_", "-")
            if isinstance(value, (int, float)) and value > 0:
                return f"a smaller weight for g/{term}: {flag} {value / 2:g} (now {value:g})"
            return f"a smaller weight for g/{term} ({flag})"
    return f"a smaller weight for g/{term} (the model's --lambda-* option)"


def _for_loss_or_gradient(signal: str, config: Config | None) -> list[str]:
    if signal.startswith("d/") or signal.startswith(GRAD_PREFIX + "d."):
        return [lower_d_lr(config), *spectral_norm(config)]
    if signal.startswith("g/") and not signal[2:].startswith("gan"):
        return [smaller_lambda(signal[2:], config), lower_lr(config)]
    return [lower_lr(config), *precision(config)]


def suggestions(signal: str, config: Config | None = None) -> list[str]:
    """What to try for `signal` (a key of metrics.jsonl, or D_LOSS / NON_FINITE), most likely
    first; never empty."""
    if signal in (D_ACC_REAL, D_ACC_FAKE):
        found = [lower_d_lr(config), *diff_augment(config), *ada(config)]
    elif signal == R_T:
        found = [*ada(config), *diff_augment(config), lower_d_lr(config)]
    elif signal == D_LOSS:
        found = [*spectral_norm(config), lower_d_lr(config), *diff_augment(config)]
    elif signal.startswith(DIVERSITY):
        modes = (["mode seeking: a larger --lambda-ms"]
                 if "lambda_ms" in _options(config) else [])
        found = [*modes, *diff_augment(config), *ada(config), lower_d_lr(config)]
    elif signal in (SKIPPED, NON_FINITE):
        found = [lower_lr(config), *precision(config)]
    else:
        found = _for_loss_or_gradient(signal, config)
    return found
