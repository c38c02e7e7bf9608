"""Measuring a trained model on held-out data: PSNR, SSIM and L1 against targets for paired data,
the sliced Wasserstein distance between generated and real images for unpaired and labelled
data, and FID/KID on the FID Inception network when the user supplies its weights file
(`evaluation.fid`; nothing is downloaded). Used by `img2img eval` and the trainer's
`--eval-every`."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..data import open_dataset
from ..data.augment import AugmentRecipe
from ..data.ops import to_model_range
from ..errors import DataError
from ..model import Model
from .fid import distances
from .metrics import l1, psnr, ssim, swd

def primary_metric(model: Model) -> tuple[str, bool]:
    """The metric that picks the `best` checkpoint, and whether higher is better."""
    return ("psnr", True) if model.data in ("paired", "images") else ("swd", False)


def load_eval_set(model: Model, data: Path | None, limit: int | None = None, *,
                  a: Path | None = None, b: Path | None = None,
                  folders: list[Path] | None = None) -> dict[str, Tensor]:
    """Every held-out item at the model's training size (resize only: no crop, no flip), from the
    data's test split when it has one (see `open_dataset`). Labels (class or style
    sub-folders) are mapped to the run's own indices by name. The folders read are appended to
    `folders` when given (to say what was scored)."""
    size = model.spec.size
    dataset = open_dataset(model.data, data=data, a=a, b=b, channels=model.spec.channels,
                           recipe=AugmentRecipe(size, size, flip=False), split="test")
    if folders is not None:
        folders.extend(getattr(dataset, "roots", None) or (dataset.root,))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    items = [dataset[(i, i)] for i in range(count)]
    found = {k: torch.stack([torch.as_tensor(item[k]) for item in items]) for k in items[0]}
    if "label" in found:
        classes = tuple(getattr(dataset, "classes", ()))
        unknown = sorted(set(classes) - set(model.spec.classes))
        if unknown:
            kind = "classes" if model.data == "labelled" else "styles"
            raise DataError(f"{data}: {kind} {', '.join(unknown)} are not among the run's "
                            f"({', '.join(model.spec.classes) or 'none'})")
        to_model = torch.tensor([model.spec.classes.index(c) for c in classes])
        found["label"] = to_model[found["label"].long()]
    return found


def _batched(fn: Callable[..., Tensor], x: Tensor, batch_size: int, device: torch.device,
             labels: Tensor | None = None) -> Tensor:
    """`fn` over `x` in batches on `device`; with `labels`, each batch also gets its own."""
    out = []
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size].to(device)
        out.append((fn(chunk) if labels is None else
                    fn(chunk, labels[i:i + batch_size].to(device))).float().cpu())
    return torch.cat(out)


def _translate_all(model: Model, x: Tensor, labels: Tensor | None, batch_size: int,
                   device: torch.device, direction: str | None = None) -> Tensor:
    """`model.translate` over `x` in batches; a run trained with labels gets each item's label
    (the first label where the data has none)."""
    if not model.spec.classes:
        return _batched(lambda chunk: model.translate(chunk, direction), x, batch_size, device)
    if labels is None:
        labels = torch.zeros(len(x), dtype=torch.long)
    return _batched(lambda chunk, y: model.translate(chunk, direction, label=y), x, batch_size,
                    device, labels)


@torch.inference_mode()
def evaluate(model: Model, eval_set: dict[str, Tensor], *, batch_size: int = 8,
             features: Callable[[Tensor], Tensor] | None = None,
             counted: dict[str, int] | None = None) -> dict[str, float]:
    """Metrics of `model` (eval mode) on a held-out set from `load_eval_set`. With `features`
    (e.g. `fid.inception`), also FID and KID on them; `counted` then receives how many
    generated and real images they compared."""
    device = next(model.generators.parameters()).device
    model.eval()
    real = {k: to_model_range(v) if v.dtype == torch.uint8 else v for k, v in eval_set.items()}
    results: dict[str, float] = {}
    if model.data in ("paired", "images"):
        source, target = (real["a"], real["b"]) if model.data == "paired" else \
            (real["image"], real["image"])
        fake = _translate_all(model, source, real.get("label"), batch_size, device)
        results.update(psnr=float(psnr(fake, target).mean()), ssim=float(ssim(fake, target).mean()),
                       l1=float(l1(fake, target).mean()))
        pairs = [(fake, target)]
    elif model.data == "unpaired":
        pairs = []
        for direction, (src, dst) in (("a_to_b", ("a", "b")), ("b_to_a", ("b", "a"))):
            if direction in model.directions:
                fake = _translate_all(model, real[src], None, batch_size, device, direction)
                results[f"swd_{direction}"] = swd(fake, real[dst])["swd"]
                pairs.append((fake, real[dst]))
        results["swd"] = sum(results.values()) / max(len(results), 1)
    else:
        labels = real["label"]
        fake = _batched(lambda y: model.sample(y), labels, batch_size, device)
        results.update(swd=swd(fake, real["image"])["swd"])
        pairs = [(fake, real["image"])]
    if features is not None:
        generated = torch.cat([_batched(features, f, batch_size, device) for f, _ in pairs])
        reference = torch.cat([_batched(features, r, batch_size, device) for _, r in pairs])
        results.update(distances(generated, reference))
        if counted is not None:
            counted.update(generated=len(generated), reference=len(reference))
    return results
