"""Running a trained model on images of any size: `load()` rebuilds a model from a checkpoint
alone, and `Translator` converts images the size they are. It pads (reflect) to the multiple the
generator needs and crops back, and splits large images into overlapping tiles blended with
smooth weights, so memory stays bounded at any input size and no seam shows."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import runs
from .catalog import Catalog
from .errors import Img2ImgError
from .model import Model
from .ops import match_channels, pad_to_multiple, resize, unpad
from .train_state import model_from_checkpoint
from .trainer import resolve_device

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64


def size_multiple(model: Model) -> int:
    """The multiple every generator input side must be (from the networks' `required_multiple`)."""
    return max([getattr(g, "required_multiple", 1) for g in model.generators.values()] + [1])


def _ramp(length: int, overlap: int) -> Tensor:
    """Blend weights along one tile side: rising over `overlap` pixels at each end, never 0."""
    x = torch.arange(length, dtype=torch.float32) + 0.5
    edge = torch.minimum(x, length - x) / max(overlap, 1)
    return edge.clamp(1e-3, 1.0)


def _starts(total: int, tile: int, stride: int) -> list[int]:
    if total <= tile:
        return [0]
    starts = list(range(0, total - tile, stride)) + [total - tile]
    return sorted(set(starts))


class Translator:
    """A trained model ready to convert images; what `img2img.load()` returns.

    `translator(image)` takes a numpy array (HxW or HxWxC, uint8/uint16), a PIL image, or a
    tensor ((C,H,W) or (B,C,H,W), float in [0, 1] or uint8) and returns the same kind."""

    def __init__(self, model: Model, checkpoint: Path, device: torch.device, *,
                 tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP):
        self.model, self.checkpoint, self.device = model, checkpoint, device
        self.multiple = size_multiple(model)
        self.tile = max(self.multiple, math.ceil(tile / self.multiple) * self.multiple)
        self.overlap = min(overlap, self.tile // 4)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def channels(self) -> int:
        return self.model.spec.channels

    def __repr__(self) -> str:
        return f"Translator({self.name!r}, checkpoint={str(self.checkpoint)!r})"

    # -- tensors in [-1, 1] -----------------------------------------------------------------------
    @torch.inference_mode()
    def translate(self, x: Tensor, direction: str | None = None, size: int | None = None) -> Tensor:
        """(B,C,H,W) in [-1, 1] -> translated (B,C',H,W); `size` translates at that short side."""
        direction = self.model.resolve_direction(direction)
        x = match_channels(x.to(self.device, torch.float32), self.channels)
        height, width = x.shape[-2:]
        if size is not None and min(height, width) != size:
            scale = size / min(height, width)
            x = resize(x, (max(1, round(height * scale)), max(1, round(width * scale))))
        out = self._tiled(x, direction)
        if out.shape[-2:] != (height, width):
            out = resize(out, (height, width))
        return out.clamp(-1, 1)

    def _run(self, x: Tensor, direction: str) -> Tensor:
        padded, padding = pad_to_multiple(x, self.multiple)
        return unpad(self.model.translate(padded, direction), padding)

    def _tiled(self, x: Tensor, direction: str) -> Tensor:
        height, width = x.shape[-2:]
        tile = self.tile
        if height <= tile and width <= tile:
            return self._run(x, direction)
        stride = tile - 2 * self.overlap
        out = weight = None
        for top in _starts(height, tile, stride):
            for left in _starts(width, tile, stride):
                patch = x[..., top:top + tile, left:left + tile]
                y = self._run(patch, direction)
                w = _ramp(patch.shape[-2], self.overlap)[:, None] * \
                    _ramp(patch.shape[-1], self.overlap)[None, :]
                w = w.to(y.device)
                if out is None:
                    out = y.new_zeros(*y.shape[:2], height, width)
                    weight = y.new_zeros(height, width)
                out[..., top:top + tile, left:left + tile] += y * w
                weight[top:top + tile, left:left + tile] += w
        return out / weight

    # -- user-facing kinds ------------------------------------------------------------------------
    def __call__(self, image: Any, direction: str | None = None, size: int | None = None) -> Any:
        return self.translate_many([image], direction, size)[0]

    def translate_many(self, images: list[Any], direction: str | None = None,
                       size: int | None = None) -> list[Any]:
        """Translate same-sized images as one batch; each comes back as the kind it was."""
        parts = [_to_batch(image) for image in images]
        out = self.translate(torch.cat([batch for _, batch, _ in parts]), direction, size)
        return [_from_batch(out[i:i + 1], kind, extra) for i, (kind, _, extra) in enumerate(parts)]

    def sample(self, labels: Any, n: int | None = None) -> Tensor:
        """Generated images for class `labels` (noise-to-image models), in [0, 1]."""
        with torch.inference_mode():
            labels = torch.as_tensor(labels, device=self.device)
            return (self.model.sample(labels, n).float().clamp(-1, 1) + 1) / 2


def _to_batch(image: Any) -> tuple[str, Tensor, Any]:
    """Any supported image kind -> (kind, (B,C,H,W) float in [-1, 1], what is needed to undo)."""
    if isinstance(image, Tensor):
        if image.dim() not in (3, 4):
            raise Img2ImgError(f"expected a (C,H,W) or (B,C,H,W) tensor, got {tuple(image.shape)}")
        batch = image if image.dim() == 4 else image[None]
        unit = batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()
        return "tensor", unit * 2 - 1, (image.dim(), image.dtype, image.device)
    pil = None
    if type(image).__module__.startswith("PIL."):
        pil = image.mode
        image = np.asarray(image.convert("RGBA" if "A" in image.mode else
                                         ("L" if image.mode in ("L", "1", "I;16") else "RGB")))
    if not isinstance(image, np.ndarray):
        raise Img2ImgError(f"cannot translate a {type(image).__name__}: pass a numpy array, a PIL "
                           "image or a torch tensor")
    array = image if image.ndim == 3 else image[..., None]
    if array.dtype not in (np.uint8, np.uint16) or array.shape[2] > 4:
        raise Img2ImgError(f"expected an HxW or HxWxC (C <= 4) uint8/uint16 array, got "
                           f"{array.shape} {array.dtype}")
    has_alpha = array.shape[2] in (2, 4)
    alpha = array[..., -1:] if has_alpha else None
    colour = array[..., : array.shape[2] - has_alpha]
    peak = 65535.0 if array.dtype == np.uint16 else 255.0
    batch = torch.from_numpy(np.ascontiguousarray(colour)).permute(2, 0, 1)[None].float()
    batch = batch / peak * 2 - 1
    return ("pil" if pil else "array"), batch, (pil, alpha, image.dtype, peak)


def _from_batch(out: Tensor, kind: str, extra: Any) -> Any:
    unit = (out + 1) / 2
    if kind == "tensor":
        dims, dtype, device = extra
        unit = unit.to(device)
        result = (unit * 255).round().to(torch.uint8) if dtype == torch.uint8 else unit.to(dtype)
        return result if dims == 4 else result[0]
    pil, alpha, dtype, peak = extra
    array = (unit[0].permute(1, 2, 0).cpu().numpy() * peak).round().astype(dtype)
    if alpha is not None:
        if array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        array = np.concatenate([array, alpha], axis=2)
    elif array.shape[2] == 1:
        array = array[..., 0]
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(array)
    return array


def load(ref: str | Path = "latest", *, device: str = "auto", runs_dir: str | Path = "runs",
         catalog: Catalog | None = None, tile: int = DEFAULT_TILE) -> Translator:
    """A `Translator` for a run folder, a checkpoint file, or "latest" (newest run in runs_dir)."""
    weights = runs.resolve_checkpoint(str(ref), Path(runs_dir))
    meta = runs.read_metadata(weights)
    if catalog is None:
        from .cli import default_catalog

        catalog = default_catalog()
    name = meta.get("model", "?")
    if name not in catalog.models:
        raise Img2ImgError(f"{weights} needs the '{name}' model, which no installed plugin "
                           f"provides (plugin: {meta.get('plugin', {}).get('distribution', '?')})")
    torch_device = resolve_device(device)
    model = model_from_checkpoint(catalog.models[name], weights, torch_device)
    return Translator(model, weights, torch_device, tile=tile)
