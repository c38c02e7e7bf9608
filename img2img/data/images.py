"""Writing images at the edge of the program: tensors in [-1, 1] become 8-bit files, written
atomically so an interrupted write never leaves a half-written image; and the sample grids the
trainer saves."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import Img2ImgError
from .atomic import atomic_path


def to_array(image: torch.Tensor) -> np.ndarray:
    """(C,H,W) tensor in [-1, 1] -> HxW (grey) or HxWxC uint8 RGB array."""
    x = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.permute(1, 2, 0).cpu().numpy()
    return x[..., 0] if x.shape[2] == 1 else x


def encode_image(image: np.ndarray, suffix: str = ".png", name: str | Path = "") -> bytes:
    """An HxW / HxWx3 RGB / HxWx4 RGBA uint8 (or uint16) array encoded in the format `suffix`
    names (what `write_image` writes; `img2img serve` answers with it). `name` is for the
    message when the format cannot hold the image."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(suffix or ".png", np.ascontiguousarray(image))
    if not ok:
        raise Img2ImgError(f"cannot encode an image as '{suffix}'" + (f" for {name}" if name
                                                                       else ""))
    return encoded.tobytes()


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an HxW / HxWx3 RGB / HxWx4 RGBA uint8 (or uint16) array; format from the suffix."""
    encoded = encode_image(image, path.suffix or ".png", path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded)


def grid(columns: Mapping[str, torch.Tensor], channels: int = 3) -> np.ndarray:
    """One row per sample, one column per named (B,C,H,W) batch, as an RGB uint8 array."""
    tiles = []
    for batch in columns.values():
        b = batch.detach().float().cpu()
        if b.shape[1] != channels:
            b = b.mean(1, keepdim=True).expand(-1, channels, -1, -1) if channels == 3 \
                else b.mean(1, keepdim=True)
        tiles.append(b)
    height = max(t.shape[2] for t in tiles)
    width = max(t.shape[3] for t in tiles)
    tiles = [torch.nn.functional.pad(t, (0, width - t.shape[3], 0, height - t.shape[2]), value=-1)
             for t in tiles]
    rows = torch.cat([torch.cat(list(t), dim=1) for t in tiles], dim=2)  # (C, B*H, K*W)
    return to_array(rows)


def save_grid(path: Path, columns: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Write the grid of `columns` to `path` and return it (the trackers get it too)."""
    image = grid(columns)
    write_image(path, image)
    return image
