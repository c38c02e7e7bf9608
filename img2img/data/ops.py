"""Batched image ops on (B,C,H,W) tensors, on whatever device they are: value-range conversion,
channel matching, padding to a network's size multiple and resizing. Model-range tensors are
float in [-1, 1]; uint8 appears only at the edges (loading, saving). Augmentation on the device
is `device_augment`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia import color

__all__ = [
    "to_model_range", "to_unit_range", "to_uint8", "match_channels", "pad_to_multiple", "unpad",
    "resize",
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
