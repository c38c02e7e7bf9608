"""Image-quality metrics that need no download: PSNR, SSIM and L1 for paired results, the sliced
Wasserstein distance (SWD) between Laplacian-pyramid patch sets for unpaired ones (Karras et al.
2018). FID and KID are `evaluation.fid` (the published network, through torch-fidelity).
Images are (B,C,H,W) floats in [-1, 1] unless a docstring says otherwise."""
from __future__ import annotations

import math

import kornia
import torch
from torch import Tensor


def _unit(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image peak signal-to-noise ratio in dB, on [0, 1] intensities; (B,)."""
    mse = (_unit(x) - _unit(y)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def ssim(x: Tensor, y: Tensor, window: int = 11) -> Tensor:
    """Per-image mean structural similarity (Gaussian window, sigma 1.5); (B,)."""
    window = min(window, (min(x.shape[-2:]) // 2) * 2 - 1)
    return kornia.metrics.ssim(_unit(x), _unit(y), window, max_val=1.0).flatten(1).mean(1)


def l1(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean absolute difference on [0, 1] intensities; (B,)."""
    return (_unit(x) - _unit(y)).abs().flatten(1).mean(1)


# -- sliced Wasserstein distance --------------------------------------------------------------
def _pyramid_patches(images: Tensor, levels: int, patch: int, per_image: int,
                     generator: torch.Generator) -> list[Tensor]:
    """Random `patch`x`patch` descriptors from each Laplacian level: [(N, C*patch*patch)]."""
    pyramid = kornia.geometry.transform.build_laplacian_pyramid(_unit(images), levels)
    found = []
    for level in pyramid:
        h, w = level.shape[-2:]
        if h < patch or w < patch:
            break
        unfolded = torch.nn.functional.unfold(level, patch)  # (B, C*p*p, L)
        picks = torch.randint(unfolded.shape[-1], (images.shape[0], per_image),
                              generator=generator)
        chosen = torch.gather(unfolded, 2, picks[:, None, :].expand(-1, unfolded.shape[1], -1))
        found.append(chosen.permute(0, 2, 1).reshape(-1, unfolded.shape[1]))
    return found


def _normalise(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    # Both sets are standardised by their joint statistics, per descriptor dimension, so the
    # distance measures differences in structure rather than overall scale.
    both = torch.cat([a, b])
    mean, std = both.mean(0), both.std(0).clamp_min(1e-8)
    return (a - mean) / std, (b - mean) / std


def sliced_wasserstein(a: Tensor, b: Tensor, directions: int = 512,
                       generator: torch.Generator | None = None) -> Tensor:
    """SWD between two point sets (N, D) and (M, D): mean over random unit directions of the 1-D
    Wasserstein-1 distance between the projections (quantiles matched when N != M)."""
    generator = generator or torch.Generator().manual_seed(0)
    proj = torch.randn(a.shape[1], directions, generator=generator, dtype=a.dtype)
    proj = proj / proj.norm(dim=0, keepdim=True)
    pa, pb = (a @ proj).sort(0).values, (b @ proj).sort(0).values
    n = max(pa.shape[0], pb.shape[0])
    q = (torch.arange(n, dtype=a.dtype) + 0.5) / n
    qa = pa[(q * pa.shape[0]).long().clamp(max=pa.shape[0] - 1)]
    qb = pb[(q * pb.shape[0]).long().clamp(max=pb.shape[0] - 1)]
    return (qa - qb).abs().mean()


def swd(fake: Tensor, real: Tensor, levels: int = 4, patch: int = 7, per_image: int = 128,
        seed: int = 0) -> dict[str, float]:
    """Sliced Wasserstein distance between two image sets per Laplacian level (x1e3, lower is
    better) and their mean. Works on any image size; no pretrained network."""
    generator = torch.Generator().manual_seed(seed)
    fake_sets = _pyramid_patches(fake.cpu(), levels, patch, per_image, generator)
    real_sets = _pyramid_patches(real.cpu(), levels, patch, per_image, generator)
    result = {}
    for i, (f, r) in enumerate(zip(fake_sets, real_sets)):
        f, r = _normalise(f.double(), r.double())
        result[f"swd_level{i}"] = 1e3 * float(sliced_wasserstein(f, r, generator=generator))
    result["swd"] = sum(result.values()) / max(len(result), 1)
    return result


def summary(values: dict[str, list[float]]) -> dict[str, float]:
    """Mean of each per-image metric list, NaN-free."""
    return {k: (sum(v) / len(v) if v else math.nan) for k, v in values.items()}
