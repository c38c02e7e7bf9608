"""FID and KID as published numbers compute them: the TensorFlow FID Inception-v3 (the 2015-12-05
weights pytorch-fid, torch-fidelity, clean-fid and torchmetrics use), torch-fidelity's port of it
and its FID / KID formulas, loaded from a weights file the user provides (nothing is downloaded).
`protocol()` says what was measured, for the evaluation record. Needs the `fid` extra."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import Img2ImgError

EXTRA = "pip install 'img2img[fid]'"
WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth")
HELP = (f"FID and KID need the FID Inception weights on disk (img2img never downloads them): on "
        f"a machine with internet save {WEIGHTS_URL} (pytorch-fid's "
        "pt_inception-2015-12-05-6726825d.pth holds the same weights), then "
        f"{EXTRA} and pass --inception-weights FILE")
LAYER = "2048"  # the pool3 features FID and KID are defined on
SIZE = 299
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # torch-fidelity's defaults, as its KID reports


class FidError(Img2ImgError):
    """FID/KID cannot run: the extra is missing or the weights file is absent or wrong (a usage
    error: exit code 2)."""

    exit_code = 2


def _library() -> Any:
    try:
        import torch_fidelity
    except ImportError:
        raise FidError(f"--inception-weights: FID/KID need torch-fidelity: {EXTRA}") from None
    return torch_fidelity


def _extractor_class() -> type:
    """torch-fidelity's FID Inception network (tests put a small stand-in here)."""
    _library()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3


def _check_file(weights: Path) -> None:
    """The file exists and holds plain tensors (read with weights_only, so a file that would run
    code when unpickled is refused before the library reads it)."""
    if not weights.is_file():
        raise FidError(f"--inception-weights {weights}: no such file. {HELP}")
    try:
        torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # every failure means the same to the user: not the weights file
        raise FidError(f"--inception-weights {weights} is not a PyTorch weights file "
                       f"({type(exc).__name__}); expected {WEIGHTS}. {HELP}") from None


def inception(weights: str | Path, device: torch.device) -> Callable[[Tensor], Tensor]:
    """A function from (B,C,H,W) images in [-1, 1] to their (B, 2048) FID Inception features.

    Images are quantised to 8-bit RGB first (grey repeated to three channels), the input the
    network was published for and what the saved files would hold; the network itself resizes
    to 299x299 with TensorFlow 1.x's bilinear interpolation, as published FID numbers do."""
    weights = Path(weights)
    extractor_class = _extractor_class()
    _check_file(weights)
    try:
        net = extractor_class("inception-v3-compat", [LAYER],
                              feature_extractor_weights_path=str(weights))
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FidError(f"--inception-weights {weights} is not the FID Inception-v3 network "
                       f"({first[:120]}); expected {WEIGHTS}. {HELP}") from None
    net = net.eval().to(device)

    def extract(x: Tensor) -> Tensor:
        pixels = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        with torch.no_grad():
            features = net(pixels.expand(-1, 3, -1, -1).contiguous())
        return (features[0] if isinstance(features, (tuple, list)) else features).float()

    extract.weights = weights  # type: ignore[attr-defined]
    return extract


def distances(generated: Tensor, reference: Tensor, kid_subsets: int = KID_SUBSETS
              ) -> dict[str, float]:
    """FID and KID between two feature sets (N, D) of at least two items each, computed by
    torch-fidelity as its own `calculate_metrics` does (KID on subsets of up to 1000)."""
    if min(len(generated), len(reference)) < 2:
        raise FidError("FID needs at least two images on each side (a covariance of one is "
                       "undefined)")
    _library()
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    generated, reference = generated.double().cpu(), reference.double().cpu()
    fid = fid_statistics_to_metric(fid_features_to_statistics(generated),
                                   fid_features_to_statistics(reference), verbose=False)
    subset = min(KID_SUBSET_SIZE, len(generated), len(reference))
    kid = kid_features_to_metric(generated, reference, kid_subsets=kid_subsets,
                                 kid_subset_size=subset, verbose=False)
    return {"fid": float(next(iter(fid.values()))), "kid": float(kid[KEY_METRIC_KID_MEAN])}


def protocol(extract: Callable[[Tensor], Tensor], generated: int, reference: int,
             folders: list[str] | None = None) -> dict[str, Any]:
    """What an FID/KID number in the evaluation record means: network, weights, input,
    resize, feature layer, how many images on each side and where the real ones came from."""
    weights = getattr(extract, "weights", None)
    return {
        "library": f"torch-fidelity {_version('torch-fidelity')}",
        "network": "Inception-v3, TensorFlow FID weights (2015-12-05)",
        "weights": str(weights) if weights is not None else None,
        "weights_sha256": _sha256(weights) if weights is not None else None,
        "input": "generated and real images at the model's size, rounded to 8-bit RGB "
                 "(grey repeated to 3 channels)",
        "resize": f"{SIZE}x{SIZE} bilinear, TensorFlow 1.x-compatible (by the network)",
        "feature_layer": f"{LAYER} (pool3)",
        "generated_images": generated,
        "real_images": reference,
        "real_folders": list(folders or []),
        "kid": {"subsets": KID_SUBSETS, "subset_size": min(KID_SUBSET_SIZE, generated,
                                                           reference),
                "kernel": "polynomial (x.y/d + 1)^3"},
    }


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
