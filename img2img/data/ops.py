"""Batched image ops on (B,C,H,W) tensors that run on the training device: value-range conversion,
channel matching, padding to a network's size multiple, resizing, and paired augmentation.
Model-range tensors are float in [-1, 1]; uint8 appears only at the edges (loading, saving)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia import augmentation as K
from kornia import color

from .augment import elastic_field

__all__ = [
    "to_model_range", "to_unit_range", "to_uint8", "match_channels", "pad_to_multiple", "unpad",
    "resize", "PairedAugment",
]


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] (B,C,H,W) -> float [-1, 1]."""
    if x.dtype == torch.uint8:
        return x.float().mul_(1 / 127.5).sub_(1.0)  # in place on the new float tensor: one pass less
    if not x.is_floating_point():
        raise TypeError(f"expected a uint8 or floating point tensor, got {x.dtype}")
    return x * 2.0 - 1.0


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (generators overshoot a little)."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8 [0, 255], rounded to nearest."""
    return (to_unit_range(x.float()) * 255.0).round().to(torch.uint8)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(B,C,H,W) with C in {1, 3} -> (B,channels,H,W): RGB to grey by luminance, grey replicated.

    Safe on [-1, 1] data as well as [0, 1]: the luminance weights sum to 1, so the conversion
    commutes with the affine map between the two ranges.
    """
    have = x.shape[-3]
    if have == channels:
        return x
    if have == 3 and channels == 1:
        return color.rgb_to_grayscale(x)
    if have == 1 and channels == 3:
        return color.grayscale_to_rgb(x)
    raise ValueError(f"cannot convert {have} channels to {channels}: only 1 <-> 3 is supported")


Padding = tuple[int, int, int, int]


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, Padding]:
    """Pad (B,C,H,W) on the right and bottom so H and W are multiples of `multiple`.

    Returns (padded, padding) with padding in F.pad order (left, right, top, bottom); `unpad`
    undoes it. mode is "reflect", "replicate" or "constant" (zeros). Reflection works for pads
    larger than the image: it is applied in steps, and a 1-pixel side is replicated.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}")
    height, width = x.shape[-2:]
    padding = (0, -width % multiple, 0, -height % multiple)
    if padding == (0, 0, 0, 0):
        return x, padding
    if mode != "reflect":
        return F.pad(x, padding, mode=mode), padding
    return _reflect_right_bottom(x, padding[1], padding[3]), padding


def _reflect_right_bottom(x: torch.Tensor, right: int, bottom: int) -> torch.Tensor:
    # F.pad's reflect needs pad < size, so grow in steps; each step at most doubles the size less one.
    while right > 0 or bottom > 0:
        height, width = x.shape[-2:]
        step_r, step_b = min(right, width - 1), min(bottom, height - 1)
        if (right and not step_r) or (bottom and not step_b):
            # A single row or column has nothing to reflect: repeat it once, then reflect again.
            step_r, step_b = (1 if right and not step_r else 0), (1 if bottom and not step_b else 0)
            x = F.pad(x, (0, step_r, 0, step_b), mode="replicate")
        else:
            x = F.pad(x, (0, step_r, 0, step_b), mode="reflect")
        right, bottom = right - step_r, bottom - step_b
    return x


def unpad(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Remove `padding` (left, right, top, bottom) from the last two dimensions."""
    left, right, top, bottom = padding
    height, width = x.shape[-2:]
    return x[..., top:height - bottom, left:width - right]


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize float (B,C,H,W) to `size` (an int gives a square), bilinear with antialiasing.

    Antialiasing matters when shrinking: without it, downscaled samples and evaluation inputs alias.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


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
