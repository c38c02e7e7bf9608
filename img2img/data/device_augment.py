"""Augmentation batched on the training device (kornia), for `--augment-on device`: the CPU
recipe's geometric jitter, random crop and flip done on whole batches, and a paired random
resized crop. Images of a pair share one random draw; both are resampled as images (bilinear),
never as masks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia import augmentation as K

from .augment import elastic_field

__all__ = ["DeviceAugment", "PairedAugment"]


class PairedAugment(torch.nn.Module):
    """Device-side augmentation of a pair with one random draw per sample: a random resized crop
    to `crop_size` and (if `flip`) a horizontal flip, identical for `a` and `b`.

    Both inputs are treated as images ("input" keys, bilinear), never as masks, which kornia
    would resample nearest-neighbour. The defaults (scale 0.8..1, square) are close to the
    load-286/crop-256 recipe of pix2pix. Inputs: float (B,C,H,W), C may differ between a and b.
    """

    def __init__(self, crop_size: int | tuple[int, int], scale: tuple[float, float] = (0.8, 1.0),
                 ratio: tuple[float, float] = (1.0, 1.0), flip: bool = True) -> None:
        super().__init__()
        size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        steps = [K.RandomResizedCrop(size, scale=scale, ratio=ratio)]
        if flip:
            steps.append(K.RandomHorizontalFlip())
        self.augment = K.AugmentationSequential(*steps, data_keys=["input", "input"])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
            raise ValueError(f"a pair must share batch and image size: {tuple(a.shape)} vs {tuple(b.shape)}")
        out_a, out_b = self.augment(a, b)
        return out_a, out_b


class DeviceAugment(torch.nn.Module):
    """The CPU recipe's geometric jitter, random crop and flip, done batched on the training
    device instead: the loader only resizes to `load_size`, and each sample here gets the
    `AugmentRecipe` zoom / rotation / shear / elastic warp (same meaning and strength, edges
    replicated), a `crop_size` crop (no resampling: the crop keeps the pixel scale) and a flip.
    Images of a paired batch share their draw; unpaired images each get their own.
    Inputs: float (B,C,H,W) at load_size."""

    def __init__(self, load_size: int, crop_size: int, flip: bool, *, scale_jitter: float = 0.0,
                 rotate: float = 0.0, shear: float = 0.0, elastic: float = 0.0) -> None:
        super().__init__()
        area = (crop_size / load_size) ** 2
        self.pad = elastic_field(load_size, elastic)[2] if elastic > 0 else 0

        def sequence(inputs: int) -> K.AugmentationSequential:
            steps = _warp_steps(load_size, scale_jitter, rotate, shear, elastic, self.pad)
            steps.append(K.RandomResizedCrop((crop_size, crop_size), scale=(area, area),
                                             ratio=(1.0, 1.0)))
            if flip:
                steps.append(K.RandomHorizontalFlip())
            return K.AugmentationSequential(*steps, data_keys=["input"] * inputs)

        self.single, self.pair = sequence(1), sequence(2)

    def forward(self, batch: dict[str, torch.Tensor], paired: bool) -> dict[str, torch.Tensor]:
        out = dict(batch)
        images = [k for k, v in batch.items() if v.dim() == 4]
        # The elastic field is only even in strength away from its edges: warp a replicate-padded
        # image and crop back (the warp steps end with the centre crop), as the CPU recipe does.
        padded = {k: F.pad(batch[k], (self.pad,) * 4, mode="replicate") if self.pad else batch[k]
                  for k in images}
        if paired and len(images) == 2:
            first, second = images
            out[first], out[second] = self.pair(padded[first], padded[second])
        else:
            for key in images:
                out[key] = self.single(padded[key])
        return out


def _warp_steps(size: int, scale_jitter: float, rotate: float, shear: float, elastic: float,
                pad: int) -> list[K.AugmentationBase2D]:
    """kornia steps for `AugmentRecipe`'s geometric jitter on size + 2 * pad images."""
    steps: list[K.AugmentationBase2D] = []
    if scale_jitter or rotate or shear:
        steps.append(K.RandomAffine(degrees=(-rotate, rotate),
                                    scale=(1 - scale_jitter, 1 + scale_jitter),
                                    shear=(-shear, shear) if shear else None,
                                    padding_mode="border", p=1.0))
    if elastic > 0:
        alpha, sigma, _ = elastic_field(size, elastic)
        # kornia measures displacement in normalised coordinates: 2 units span the padded side.
        alpha = alpha * 2 / (size + 2 * pad)
        steps += [K.RandomElasticTransform(kernel_size=(2 * pad + 1,) * 2, sigma=(sigma, sigma),
                                           alpha=(alpha, alpha), padding_mode="border", p=1.0),
                  K.CenterCrop(size)]
    return steps
