"""Running a trained model: `load()` rebuilds a model from a checkpoint alone and returns a
`Translator` for a model that translates or a `Sampler` for one that generates from noise.
A `Translator` converts images the size they are. It pads (reflect) to the multiple the
generator needs and crops back, and splits large images into overlapping tiles blended with
smooth weights, so memory stays bounded at any input size and no seam shows. What runs the
generator on each padded tile is a runtime: PyTorch by default, ONNX Runtime or an exported file
(`img2img.interop`), so every runtime shares that handling. `img2img.load()` (in `img2img.api`,
above this module and the runtimes) builds a translator from a run or a file."""
from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.ops import match_channels, pad_to_multiple, resize, unpad
from ..errors import Img2ImgError
from ..model import Model
from ..networks.noise import noise_dim_of, noise_for_seed, pinned_noise, slerp

# Images up to this side are translated whole (tiles cost work: 1024 px in 512 px tiles with
# this overlap is 2.25x the pixels, and each tile normalises with its own statistics); larger
# ones in tiles, so memory stays bounded (about 1.5 GB for a ResNet-9 tile on a CPU).
DEFAULT_TILE = 1024
# Width of the band two neighbouring tiles share. Its outer quarters are each tile's own border
# (padding effects reach ~20 px into a ResNet's output), the middle half is a smooth cross-fade.
DEFAULT_OVERLAP = 128

RUNTIMES = ("torch", "onnxruntime")  # what runs the generator (see `load`)
# What the torch runtime computes in: fp32 (exact, the default), bf16 or fp16 autocast, or auto
# (the reduced type the device computes natively, else fp32). See `inference_dtype`.
INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16", "auto")
log = logging.getLogger("img2img")

# A batch in [-1, 1] plus the function that turns the translated batch back into the caller's kind.
Restore = Callable[[Tensor], Any]


def size_multiple(model: Model) -> int:
    """The multiple every generator input side must be (from the networks' `required_multiple`)."""
    return max([getattr(g, "required_multiple", 1) for g in model.generators.values()] + [1])


def minimum_size(model: Model) -> int:
    """The smallest side every generator accepts: its `minimum_size` where it says, else 8 px or
    its multiple. 8 because a ResNet generator reflection-pads by 1 px at a quarter of the
    resolution, which needs at least 2 px there."""
    return max([getattr(g, "minimum_size", max(getattr(g, "required_multiple", 1), 8))
                for g in model.generators.values()] + [1])


def translate_indexed(model: Model, x: Tensor, direction: str, index: int | None) -> Tensor:
    """`model.translate` with class `index` as the (B,) label tensor it takes (None: no label).
    The labels derive from `x` itself rather than from its shape, so a traced or exported graph
    keeps a dynamic batch size."""
    if index is None:
        return model.translate(x, direction)
    labels = torch.zeros_like(x[:, 0, 0, 0], dtype=torch.long) + index
    return model.translate(x, direction, label=labels)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX-512 BF16 or AMX (oneDNN's test); elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def check_precision(precision: str) -> None:
    if precision not in INFERENCE_PRECISIONS:
        raise Img2ImgError(f"unknown --precision '{precision}'; choose one of: "
                           f"{', '.join(INFERENCE_PRECISIONS)}")


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast type of `--precision` for translating on `device` (None: fp32)."""
    check_precision(precision)
    if precision == "fp32":
        return None
    native = native_bf16(device)
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if native else torch.float16
        return torch.bfloat16 if native else None
    if precision == "fp16":
        if device.type != "cuda":
            raise Img2ImgError(f"--precision fp16 needs a CUDA device, not {device}; on a CPU "
                               "use bf16 (fast on CPUs with AVX-512 BF16 or AMX)")
        return torch.float16
    if not native:
        log.warning("--precision bf16: %s has no native bfloat16, so bf16 runs several times "
                    "slower than fp32 here; --precision auto picks fp32 on such devices", device)
    return torch.bfloat16


class TorchRuntime:
    """The default runtime: the model's own `translate`, in PyTorch. A runtime takes a padded
    (B,C,H,W) batch in [-1, 1] on the translator's device, the direction and the class index
    (or None), and returns the translated batch. `dtype`: autocast to bf16 or fp16 (None:
    fp32); the output is always float32."""

    name = "torch"

    def __init__(self, model: Model, dtype: torch.dtype | None = None):
        self.model, self.dtype = model, dtype

    def __call__(self, x: Tensor, direction: str, index: int | None,
                 noise: Tensor | None = None) -> Tensor:
        with pinned_noise(self.model, noise):
            if self.dtype is None:
                return translate_indexed(self.model, x, direction, index)
            with torch.autocast(x.device.type, self.dtype):
                return translate_indexed(self.model, x, direction, index).float()


def _window(length: int, overlap: int, rise: bool, fall: bool) -> Tensor:
    """Blend weights along one tile side. Toward a side another tile shares: 0 over the outer
    quarter of the overlap, where the tile's own border effects are, then a raised cosine across
    the middle half. Two neighbours' weights then sum to 1 across the band, so the mix is
    seamless; a side on the image border keeps full weight, since nothing else covers it."""
    margin = overlap // 4
    ramp = max(overlap - 2 * margin, 1)
    position = torch.arange(length, dtype=torch.float32)
    weight = torch.ones(length)
    for is_shared, distance in ((rise, position), (fall, length - 1 - position)):
        if is_shared:
            weight = weight * (0.5 - 0.5 * torch.cos(math.pi * ((distance - margin + 0.5) / ramp)
                                                     .clamp(0, 1)))
    return weight


def _starts(total: int, tile: int, stride: int) -> list[int]:
    if total <= tile:
        return [0]
    starts = list(range(0, total - tile, stride)) + [total - tile]
    return sorted(set(starts))


def model_noise_dim(model: Any) -> int:
    """How many noise values a model (or an exported graph's stand-in) takes; 0: none."""
    declared = getattr(model, "noise_dim", None)
    return int(declared) if declared is not None else noise_dim_of(model)


NO_NOISE = ("was trained without a noise input, so it gives one output per input; --seed and "
            "--variants need a run trained with --noise-dim N")


class LoadedModel:
    """A trained model on its device, with the checkpoint it came from and the preset its run
    was trained with (if any); what `Translator` and `Sampler` share."""

    def __init__(self, model: Model, checkpoint: Path, device: torch.device, *,
                 preset: str | None = None):
        self.model, self.checkpoint, self.device = model, checkpoint, device
        self.preset = preset  # the name of the preset the run was trained with, if any

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def channels(self) -> int:
        return self.model.spec.channels

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, checkpoint={str(self.checkpoint)!r})"


class Sampler(LoadedModel):
    """A trained model that generates images from noise (e.g. cgan); what `img2img.load()`
    returns for a model without translation directions."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise Img2ImgError(f"model '{self.name}' generates images from noise, it does not "
                           "translate them; call .sample(labels, n) instead")

    def sample(self, labels: Any, n: int | None = None) -> Tensor:
        """Generated images for class `labels` (indices; `n` per label), (B,C,H,W) in [0, 1]."""
        with torch.inference_mode():
            labels = torch.as_tensor(labels, device=self.device)
            return (self.model.sample(labels, n).float().clamp(-1, 1) + 1) / 2


class Translator(LoadedModel):
    """A trained model ready to convert images; what `img2img.load()` returns for a model that
    translates.

    `translator(image)` takes a numpy array (HxW or HxWxC, uint8/uint16), a PIL image, or a
    tensor ((C,H,W) or (B,C,H,W), float in [0, 1] or uint8) and returns the same kind, the same
    size, depth and alpha; its colour channels are the model's (a colour model makes grey
    inputs colour)."""

    def __init__(self, model: Model, checkpoint: Path, device: torch.device, *,
                 tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                 pipeline: Any = None, preset: str | None = None,
                 runtime: Callable[[Tensor, str, int | None], Tensor] | None = None):
        super().__init__(model, checkpoint, device, preset=preset)
        self.pipeline = pipeline  # the run's preset pipeline (see convert_image), if any
        self.runtime = runtime if runtime is not None else TorchRuntime(model)
        self.multiple = size_multiple(model)
        self.minimum = minimum_size(model)
        self.tile = max(self.multiple, math.ceil(tile / self.multiple) * self.multiple)
        self.overlap = max(0, min(overlap, self.tile // 2))

    # -- tensors in [-1, 1] -----------------------------------------------------------------------
    @torch.inference_mode()
    def translate(self, x: Tensor, direction: str | None = None, size: int | None = None,
                  label: str | None = None, *, noise: Tensor | None = None) -> Tensor:
        """(B,C,H,W) in [-1, 1] -> translated (B,C',H,W) on x's device; `size` translates at that
        short side; `label` names the class or style for runs trained with them (default: the
        first); `noise` the `(noise_dim,)` noise of a run trained with a noise input (default:
        zero noise, the output its training kept closest to the targets; `self.noise(seed)`
        gives a seed's), the same for every image and tile. Only tiles visit the
        model's device, so a huge image needs no huge GPU."""
        noise = self._resolve_noise(noise)
        direction = self.model.resolve_direction(direction)
        index = self.model.resolve_label(label)
        x = match_channels(x.float(), self.channels)
        height, width = x.shape[-2:]
        if size is not None and min(height, width) != size:
            scale = size / min(height, width)
            x = resize(x, (max(1, round(height * scale)), max(1, round(width * scale))))
        out = self._tiled(x, direction, index, noise)
        if out.shape[-2:] != (height, width):
            out = resize(out, (height, width))
        return out.clamp(-1, 1)

    def _run(self, x: Tensor, direction: str, index: int | None,
             noise: Tensor | None = None) -> Tensor:
        padded, padding = pad_to_multiple(x.to(self.device), self.multiple)
        if min(padded.shape[-2:]) < self.minimum:
            # Padding to a multiple of the minimum takes a short side exactly to it (rounded up
            # to the network's multiple); a long side already fits and at most grows a little.
            step = math.ceil(self.minimum / self.multiple) * self.multiple
            padded, more = pad_to_multiple(padded, step)
            padding = tuple(a + b for a, b in zip(padding, more))
        if noise is None:
            out = self.runtime(padded, direction, index)
        else:  # one row per image: what an exported graph's second input takes
            batch = noise.to(padded.device, torch.float32).reshape(1, -1)
            out = self.runtime(padded, direction, index, batch.expand(padded.shape[0], -1))
        return unpad(out, padding).float().to(x.device)

    def _tiled(self, x: Tensor, direction: str, index: int | None,
               noise: Tensor | None = None) -> Tensor:
        height, width = x.shape[-2:]
        tile = self.tile
        if height <= tile and width <= tile:
            return self._run(x, direction, index, noise)
        stride = tile - self.overlap
        rows, cols = _starts(height, tile, stride), _starts(width, tile, stride)
        out = weight = None
        for top in rows:
            for left in cols:
                patch = x[..., top:top + tile, left:left + tile]
                y = self._run(patch, direction, index, noise)
                h, w = patch.shape[-2:]
                mask = _window(h, self.overlap, top > 0, top + h < height)[:, None] * \
                    _window(w, self.overlap, left > 0, left + w < width)[None, :]
                mask = mask.to(y.device)
                if out is None:
                    out = y.new_zeros(*y.shape[:2], height, width)
                    weight = y.new_zeros(height, width)
                out[..., top:top + h, left:left + w] += y * mask
                weight[top:top + h, left:left + w] += mask
        return out / weight.clamp_min(1e-6)

    # -- user-facing kinds ------------------------------------------------------------------------
    def __call__(self, image: Any, direction: str | None = None, size: int | None = None,
                 label: str | None = None, *, pipeline: bool = True, seed: int | None = None,
                 noise: Tensor | None = None) -> Any:
        """`image` translated as `img2img convert` would: through the run's preset pipeline
        when it has one (faces found and pasted back, glyphs normalised), so Python and the
        command line agree. `pipeline=False` runs the bare generator on the whole image. A run
        trained with a noise input (`--noise-dim`) gives one output per `seed`, or per `noise`
        vector (neither: zero noise); `variants` gives several."""
        if seed is not None:
            noise = self.noise(seed)
        if pipeline and self.pipeline is not None:
            return _through(self, image, lambda array: self.convert_image(
                array, direction, size, label, noise=noise))
        return self.translate_many([image], direction, size, label, noise=noise)[0]

    # -- several outputs per input (runs trained with a noise input) ----------------------------
    @property
    def noise_dim(self) -> int:
        """How many noise values the generator takes (0: trained without a noise input)."""
        return model_noise_dim(self.model)

    def noise(self, seed: int) -> Tensor:
        """The `(noise_dim,)` noise of `seed`, the same on every machine."""
        if not self.noise_dim:
            raise Img2ImgError(f"this {self.name} run {NO_NOISE}")
        return noise_for_seed(seed, self.noise_dim)

    def variant_noise(self, n: int, seed: int = 0, interpolate: bool = False) -> list[Tensor]:
        """The noise of `n` variants: seeds `seed`, `seed + 1`, ... (so variant 0 is what
        `seed` alone gives), or with `interpolate` `n` points from seed `seed`'s noise to seed
        `seed + 1`'s along the great circle between them (slerp, which keeps a Gaussian
        draw's norm; a straight line would pass near zero noise, which training never saw)."""
        if n < 1:
            raise Img2ImgError(f"variants: expected at least 1, got {n}")
        if interpolate:
            start, end = self.noise(seed), self.noise(seed + 1)
            return [slerp(start, end, i / max(n - 1, 1)) for i in range(n)]
        return [self.noise(seed + i) for i in range(n)]

    def variants(self, image: Any, n: int, *, seed: int = 0, interpolate: bool = False,
                 direction: str | None = None, size: int | None = None,
                 label: str | None = None, pipeline: bool = True) -> list[Any]:
        """`n` translations of `image`, one per noise of `variant_noise(n, seed, interpolate)`,
        each the kind `image` is; the same `seed` gives the same list."""
        return [self(image, direction, size, label, pipeline=pipeline, noise=noise)
                for noise in self.variant_noise(n, seed, interpolate)]

    def _resolve_noise(self, noise: Tensor | None) -> Tensor | None:
        """The noise a translation uses: `noise`, else zero noise for a run with a noise
        input."""
        if not self.noise_dim:
            if noise is not None:
                raise Img2ImgError(f"this {self.name} run {NO_NOISE}")
            return None
        noise = torch.zeros(self.noise_dim) if noise is None else \
            torch.as_tensor(noise, dtype=torch.float32)
        if noise.numel() != self.noise_dim:
            raise Img2ImgError(f"noise of {noise.numel()} values given to a run trained with "
                               f"--noise-dim {self.noise_dim}")
        return noise.reshape(-1)

    def translate_many(self, images: list[Any], direction: str | None = None,
                       size: int | None = None, label: str | None = None, *,
                       noise: Tensor | None = None) -> list[Any]:
        """Translate images, batching those of one size; each comes back as the kind it was."""
        parts = [_to_batch(image) for image in images]
        results: list[Any] = [None] * len(parts)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, (batch, _) in enumerate(parts):
            by_size.setdefault(tuple(batch.shape[-2:]), []).append(i)
        for indices in by_size.values():
            device = parts[indices[0]][0].device  # tensors may live elsewhere than arrays
            batches = [match_channels(parts[i][0].to(device), self.channels) for i in indices]
            out = self.translate(torch.cat(batches), direction, size, label, noise=noise)
            offset = 0
            for i, batch in zip(indices, batches):
                results[i] = parts[i][1](out[offset:offset + batch.shape[0]])
                offset += batch.shape[0]
        return results

    def convert_image(self, image: np.ndarray, direction: str | None = None,
                      size: int | None = None, label: str | None = None, *,
                      source: str | Path | None = None, noise: Tensor | None = None,
                      **options: Any) -> np.ndarray:
        """What `img2img convert` does to one decoded image: the run's preset pipeline when it
        has one (e.g. find faces, translate each, paste them back), else a plain translation.
        `options` are the pipeline's own convert flags; `source` (the file, for its messages)
        is passed on to it (see `img2img.ConvertPipeline`)."""
        if self.pipeline is None:
            return self(image, direction, size, label, noise=noise)
        translate = functools.partial(self, direction=direction, size=size, label=label,
                                      pipeline=False, noise=noise)
        # From Python, flags not given take their command-line defaults, as in `convert`.
        defaults = {o.name: o.default for o in self.pipeline.convert_options
                    if not callable(o.default)}
        options = {**defaults, **options}
        translate.spec = self.model.spec  # type: ignore[attr-defined]  # e.g. the training size
        return self.pipeline.convert(translate, image, source=source, **options)


    def translate_video(self, src: str | Path, dst: str | Path, direction: str | None = None,
                        size: int | None = None, label: str | None = None, *,
                        stabilize: str | None = None, codec: str | None = None,
                        crf: int | None = None, pixel_format: str | None = None,
                        batch_size: int | None = None, progress: Any = False,
                        **options: Any) -> Any:
        """Translate the video `src` into `dst` as `img2img convert` does: every frame through
        the run's preset pipeline when it has one (`options` are its flags), the same frame
        count, timestamps, frame rate, size, rotation and duration, the audio and subtitle
        streams copied unchanged. `stabilize="flow"` blends each frame with the previous output
        along the input's motion; `codec`, `crf` and `pixel_format` choose the encoding (default:
        the container's own, H.264 in MP4). Returns a `VideoResult`; raises `VideoError` (a
        clip that cannot be converted) or `TruncatedVideo` (converted up to where decoding
        stopped, and written)."""
        from .video import Encoding, translate_video

        if options and self.pipeline is None:
            raise Img2ImgError(f"{', '.join(sorted(options))}: options of a preset pipeline, "
                               f"which this {self.name} run does not have")
        return translate_video(self, src, dst, direction=direction, size=size, label=label,
                               stabilize=stabilize, batch_size=batch_size, progress=progress,
                               encoding=Encoding(codec, crf, pixel_format),
                               pipeline_options=options if self.pipeline is not None else None)


def _through(translator: Translator, image: Any, convert: Callable[[np.ndarray], np.ndarray]
             ) -> Any:
    """Run a pipeline (which works on uint8/uint16 arrays) on any supported kind of image."""
    if isinstance(image, np.ndarray) and image.dtype == np.float32:
        unit = np.clip(image, 0, 1)
        return (convert((unit * 255).round().astype(np.uint8)) / 255.0).astype(image.dtype)
    if isinstance(image, np.ndarray):
        return convert(image)
    if type(image).__module__.startswith("PIL."):
        from PIL import Image

        return Image.fromarray(convert(np.asarray(image.convert("RGB") if image.mode not in (
            "L", "RGB", "RGBA", "LA") else image)))
    raise Img2ImgError(f"this {translator.name} run's preset pipeline ({translator.preset}) "
                       "works on numpy arrays and PIL images; pass one of those, or call with "
                       "pipeline=False for the bare generator")


def _split_alpha(batch: Tensor) -> tuple[Tensor, Tensor | None]:
    """(B,C,H,W) with C = 2 or 4 carries alpha last; it bypasses the model unchanged."""
    if batch.shape[1] in (2, 4):
        return batch[:, :-1], batch[:, -1:]
    return batch, None


def _to_batch(image: Any) -> tuple[Tensor, Restore]:
    """Any supported image kind -> ((B,C,H,W) float in [-1, 1], how to give the result back)."""
    if isinstance(image, Tensor):
        return _tensor_to_batch(image)
    if type(image).__module__.startswith("PIL."):
        return _pil_to_batch(image)
    if not isinstance(image, np.ndarray):
        raise Img2ImgError(f"cannot translate a {type(image).__name__}: pass a numpy array, a PIL "
                           "image or a torch tensor")
    return _array_to_batch(image)


def _tensor_to_batch(image: Tensor) -> tuple[Tensor, Restore]:
    if image.dim() not in (3, 4) or not 1 <= image.shape[-3] <= 4:
        raise Img2ImgError(f"expected a (C,H,W) or (B,C,H,W) tensor with C <= 4, got "
                           f"{tuple(image.shape)}")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise Img2ImgError(f"expected a float tensor in [0, 1] or a uint8 tensor, got "
                           f"{image.dtype}")
    batch = image if image.dim() == 4 else image[None]
    unit = batch.float() / 255 if image.dtype == torch.uint8 else batch.float()
    colour, alpha = _split_alpha(unit)

    def restore(out: Tensor) -> Tensor:
        result = ((out + 1) / 2).to(image.device)
        if alpha is not None:
            result = torch.cat([result, alpha.to(result.device)], dim=1)
        if image.dtype == torch.uint8:
            result = (result * 255).round().to(torch.uint8)
        else:
            result = result.to(image.dtype)
        return result if image.dim() == 4 else result[0]

    return colour * 2 - 1, restore


def _array_to_batch(image: np.ndarray) -> tuple[Tensor, Restore]:
    array = image if image.ndim == 3 else image[..., None]
    if array.ndim != 3 or array.dtype not in (np.uint8, np.uint16, np.float32) \
            or array.shape[2] > 4:
        raise Img2ImgError(f"expected an HxW or HxWxC (C <= 4) uint8/uint16 array, or float32 "
                           f"in [0, 1], got {image.shape} {image.dtype}")
    floating = array.dtype.kind == "f"
    if floating:
        array = np.clip(array, 0, 1)
    peak = 65535.0 if array.dtype == np.uint16 else 1.0 if floating else 255.0
    batch = torch.tensor(array).permute(2, 0, 1)[None].float() / peak  # a copy: PIL's are read-only
    colour, alpha = _split_alpha(batch)
    dtype = array.dtype

    def restore(out: Tensor) -> np.ndarray:
        result = ((out[0] + 1) / 2).permute(1, 2, 0).cpu().numpy()
        result = (result * peak).astype(dtype) if floating else \
            (result * peak).round().astype(dtype)
        if alpha is not None:
            if result.shape[2] == 1:  # grey + alpha is written as RGBA: not every format has LA
                result = np.repeat(result, 3, axis=2)
            result = np.concatenate([result, array[..., -1:]], axis=2)
        return result[..., 0] if result.shape[2] == 1 else result

    return colour * 2 - 1, restore


def _pil_to_batch(image: Any) -> tuple[Tensor, Restore]:
    """PIL keeps its mode where the model's colour allows: an RGB model turns L into RGB and LA
    into RGBA. 16-bit grey stays 16-bit; palette images come back RGB(A), as no palette fits."""
    from PIL import Image

    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(image).astype(np.int64).clip(0, 65535).astype(np.uint16)
    elif mode in ("L", "LA", "RGB", "RGBA"):
        array = np.asarray(image)
    else:
        has_alpha = "A" in mode or "transparency" in image.info
        array = np.asarray(image.convert(("LA" if mode == "1" else "RGBA") if has_alpha else
                                         ("L" if mode == "1" else "RGB")))
    batch, restore_array = _array_to_batch(array)
    channels_in = array.shape[2] if array.ndim == 3 else 1

    def restore(out: Tensor) -> Any:
        result = restore_array(out)
        if result.dtype == np.uint16 and result.ndim == 3:  # PIL has no 16-bit colour mode
            result = ((result.astype(np.uint32) + 128) // 257).astype(np.uint8)
        if channels_in == 2 and out.shape[1] == 1:
            result = result[..., [0, 3]]  # back to LA from the RGBA the array path makes
        pil = Image.fromarray(result)
        if mode in ("I", "1") and pil.mode in ("I;16", "L"):
            # 1: threshold rather than dither, which would sprinkle noise over flat areas
            pil = pil.convert(mode) if mode == "I" else pil.point(lambda v: 255 * (v >= 128), "1")
        return pil

    return batch, restore
