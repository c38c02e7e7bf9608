"""`--temporal-weight W`: a generator loss that asks every model to commute with small random
warps of its input, G(T(x)) close to T(G(x)) (Eilertsen, Mantiuk and Unger, "Single-frame
Regularization for Temporally Stable CNNs", CVPR 2019). A video frame is, to a good
approximation, its neighbour moved by a few pixels; a generator that answers a moved input with
its moved output redraws less differently from frame to frame, so a model trained on stills
flickers less on video. No video data is needed.

T is drawn per image and per step: a shift of up to `shift` px, a rotation of up to `rotate`
degrees and a zoom by up to `zoom` either way, about the image centre (bilinear, reflected at
the borders). The loss is the mean absolute difference between G(T(x)) and T(G(x)) over the
pixels T keeps inside the image, times W, logged as `g/temporal`. It is added by the trainer,
after the model's own generator terms, for every direction the model translates in, so every
model gets it without changing its code; it costs two more generator passes per direction and
step. The input of direction `x_to_y` is the batch's `x` (`a` for pix2pix, `a` and `b` for
CycleGAN), or `image` for models trained on one folder."""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model import Model


def random_warps(n: int, height: int, width: int, *, shift: float, rotate: float, zoom: float,
                 device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """(n, 2, 3) affine matrices for `F.affine_grid` (normalised coordinates): each maps an
    output pixel to where it samples the input, a small rotation, zoom and shift."""
    def uniform(limit: float) -> Tensor:
        return (torch.rand(n, generator=generator, device=device) * 2 - 1) * limit

    angle = uniform(math.radians(rotate))
    scale = 1 + uniform(zoom)
    # Shifts in pixels, in the normalised coordinates affine_grid uses (2 / side per pixel).
    tx, ty = uniform(shift) * 2 / width, uniform(shift) * 2 / height
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    aspect = height / width  # rotate in pixel space, not in the stretched normalised one
    return torch.stack([torch.stack([cos, -sin * aspect, tx], 1),
                        torch.stack([sin / aspect, cos, ty], 1)], 1)


def warp(images: Tensor, matrices: Tensor) -> Tensor:
    grid = F.affine_grid(matrices.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def inside(matrices: Tensor, height: int, width: int, dtype: torch.dtype) -> Tensor:
    """(n, 1, H, W): 1 where the warp samples from inside the image, else 0 (reflected
    borders are left out of the loss)."""
    ones = torch.ones(matrices.shape[0], 1, height, width, device=matrices.device, dtype=dtype)
    grid = F.affine_grid(matrices.to(dtype), list(ones.shape), align_corners=False)
    return (F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False) > 0.999).to(dtype)


def source_key(direction: str, batch: Mapping[str, Tensor]) -> str | None:
    """The batch entry a direction translates: `x` of `x_to_y`, else `image`, else `a`."""
    source = direction.split("_to_")[0]
    for key in (source, "image", "a"):
        if isinstance(batch.get(key), Tensor) and batch[key].dim() == 4:
            return key
    return None


class TemporalLoss:
    """The `--temporal-weight` term (see the module's docstring); `weight` 0 turns it off."""

    def __init__(self, weight: float, shift: float = 4.0, rotate: float = 2.0,
                 zoom: float = 0.04):
        self.weight, self.shift, self.rotate, self.zoom = weight, shift, rotate, zoom

    def __call__(self, model: Model, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        terms = []
        labels = batch.get("label") if model.spec.classes else None
        for direction in model.directions:
            key = source_key(direction, batch)
            if key is None:
                continue
            x = batch[key]
            n, _, height, width = x.shape
            matrices = random_warps(n, height, width, shift=self.shift, rotate=self.rotate,
                                    zoom=self.zoom, device=x.device)
            moved_output = warp(model.translate(x, direction, **_label(labels)), matrices)
            output_of_moved = model.translate(warp(x, matrices), direction, **_label(labels))
            mask = inside(matrices, height, width, moved_output.dtype)
            difference = (output_of_moved - moved_output).abs() * mask
            terms.append(difference.sum() / (mask.sum() * moved_output.shape[1]).clamp_min(1))
        if not terms:
            return {}
        return {"temporal": self.weight * torch.stack(terms).mean()}


def _label(labels: Tensor | None) -> dict[str, Tensor]:
    return {} if labels is None else {"label": labels}
