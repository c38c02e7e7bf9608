"""`img2img export`: one direction (and style) of a trained model's generator as an ONNX or
TorchScript file with a dynamic batch, height and width, and its contract (channels, value range,
the size multiple and minimum it needs, where it came from) in the file's own metadata, so a
runtime, ours or anyone's, can feed it without the run folder."""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.atomic import atomic_path
from ..errors import Img2ImgError
from ..inference.translator import Translator, minimum_size, size_multiple, translate_indexed
from ..model import Model
from ..networks.noise import noise_dim_of, pinned_noise
from ..runs.checkpoints import img2img_version, read_metadata
from .extras import require_extra
from .quantize import folder_images, quantize_int8, split, training_images
from .subpixel import rewrite_transposed

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT, OUTPUT = "image", "translated"
NOISE = "noise"  # the second input of a graph exported from a run trained with --noise-dim
METADATA_PREFIX = "img2img."
TORCHSCRIPT_METADATA = "img2img.json"  # the TorchScript archive's extra file holding the contract


@dataclasses.dataclass(frozen=True)
class ExportContract:
    """What an exported graph expects and gives: float32 (N, in_channels, H, W) in [-1, 1] with H
    and W multiples of `required_multiple` and at least `minimum_size`, to (N, out_channels, H, W)
    in [-1, 1]. The two size fields carry the generator attribute names the core reads, so this
    stands in for the network once the file is loaded."""

    model: str
    direction: str
    label: str | None  # the style or class baked into the graph, if the run has them
    in_channels: int
    out_channels: int
    required_multiple: int
    minimum_size: int
    train_size: int
    format: str
    exporter: str
    preset: str | None = None
    value_range: str = "[-1, 1]"
    precision: str = "fp32"  # or int8 (`export --int8`)
    quality: str | None = None  # for int8: its measured PSNR from the fp32 graph
    version: str = dataclasses.field(default_factory=img2img_version)
    # > 0: a second input 'noise', float32 (N, noise_dim), one standard-normal row per image
    # (seed s: img2img.networks.noise_for_seed(s, noise_dim)); absent from the metadata when 0.
    noise_dim: int = 0

    def metadata(self) -> dict[str, str]:
        """Every field as `img2img.<field>` string entries (what ONNX metadata_props holds);
        `noise_dim` only for a graph that takes noise, so other exports are as before."""
        return {METADATA_PREFIX + k: "" if v is None else str(v)
                for k, v in dataclasses.asdict(self).items()
                if k != "noise_dim" or self.noise_dim}

    @classmethod
    def from_metadata(cls, entries: dict[str, str], source: Path) -> "ExportContract":
        values = {k[len(METADATA_PREFIX):]: v for k, v in entries.items()
                  if k.startswith(METADATA_PREFIX)}
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: int(v) if hints[k] == "int" else (v or None) if "None" in hints[k]
                          else v for k, v in values.items() if k in hints})
        except (TypeError, ValueError) as exc:
            raise Img2ImgError(f"{source} was not written by `img2img export` (its img2img "
                               f"metadata is missing or incomplete: {exc})") from None

    def describe(self) -> list[str]:
        """The contract as lines for a person (what `img2img export` prints)."""
        shape = "float32 (batch, {}, height, width) in " + self.value_range
        style = f", style/label '{self.label}' (baked in)" if self.label else ""
        precision = f", {self.precision}" + (f": {self.quality}" if self.quality else "")
        return [f"model   {self.model} {self.direction}{style}; {self.format} "
                f"({self.exporter}){precision}; img2img {self.version}",
                f"input   '{INPUT}': {shape.format(self.in_channels)}; height and width "
                f"multiples of {self.required_multiple}, at least {self.minimum_size}",
                *([f"noise   '{NOISE}': float32 (batch, {self.noise_dim}), one standard-normal "
                   "row per image (seed s: img2img.networks.noise_for_seed(s, "
                   f"{self.noise_dim}); zeros: the output without a seed)"]
                  if self.noise_dim else []),
                f"output  '{OUTPUT}': {shape.format(self.out_channels)}, the input's size"]


class _Translation(nn.Module):
    """One direction and class of `model.translate` as a module of one image input (and, for a
    run trained with a noise input, the `(N, noise_dim)` noise as a second), which is what the
    exporters trace. The generators are submodules, so their weights are the graph's."""

    def __init__(self, model: Model, direction: str, index: int | None):
        super().__init__()
        self.generators = model.generators
        self.model, self.direction, self.index = model, direction, index

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        with pinned_noise(self.model, noise):
            return translate_indexed(self.model, x, self.direction, self.index)


def export_model(loaded: Any, out: Path, fmt: str | None = None, *, direction: str | None = None,
                 label: str | None = None, int8: Int8 | None = None) -> ExportContract:
    """Write `loaded`'s generator for `direction` and `label` (defaults: the first) to `out`; the
    format follows the suffix (.onnx, .pt) unless `fmt` names it. `int8`: quantize the ONNX graph
    (see `quantize.py`), refused if it strays too far from fp32. Written atomically."""
    fmt = _format(Path(out), fmt)
    if int8 is not None and fmt != "onnx":
        raise Img2ImgError("--int8 quantizes ONNX graphs: write an .onnx file")
    if not isinstance(loaded, Translator):
        raise Img2ImgError(f"cannot export '{loaded.name}': it generates images from noise (it "
                           "samples) and export writes generators that translate images")
    if not isinstance(loaded.model, Model):
        raise Img2ImgError(f"{loaded.checkpoint} is already an exported graph; export from the "
                           "run it came from")
    model = loaded.model
    direction = model.resolve_direction(direction)
    index = model.resolve_label(label)
    with atomic_path(Path(out)) as tmp:
        if fmt == "onnx":
            data, contract = onnx_model(model, direction, index, preset=loaded.preset)
            if int8 is not None:
                data, contract = _quantized(data, contract, int8, loaded)
            tmp.write_bytes(data)
        else:
            contract = _write_torchscript(model, direction, index, tmp, loaded.preset)
    return contract


@dataclasses.dataclass(frozen=True)
class Int8:
    """`export --int8`: the folder of input images to calibrate on and check with (None: the
    run's own training images of the direction's source side), how many of each, and the least
    PSNR (dB from the fp32 output) accepted."""

    calibration: Path | None = None
    count: int = 8
    held_out: int = 4
    min_psnr: float = 35.0


def _quantized(data: bytes, contract: ExportContract, int8: Int8,
               loaded: Translator) -> tuple[bytes, ExportContract]:
    size = max(contract.train_size, contract.minimum_size)
    size = math.ceil(size / contract.required_multiple) * contract.required_multiple
    wanted = int8.count + int8.held_out
    if int8.calibration is not None:
        images = folder_images(int8.calibration, contract.in_channels, size, wanted)
    else:
        side = contract.direction.split("_to_")[0]
        images = training_images(read_metadata(loaded.checkpoint).get("training", {}),
                                 loaded.model.data, side, contract.in_channels, size, wanted)
    calibrate, check = split(images, int8.count)
    data, score = quantize_int8(data, calibrate, check, int8.min_psnr)
    held_out = "held-out" if check is not calibrate else "calibration"
    contract = dataclasses.replace(contract, precision="int8", quality=(
        f"{score:.1f} dB PSNR from fp32 on {len(check)} {held_out} images"))
    return _with_metadata(data, contract), contract


def _with_metadata(data: bytes, contract: ExportContract) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, contract.metadata())
    return proto.SerializeToString()


def _format(out: Path, fmt: str | None) -> str:
    by_suffix = {suffix: name for name, suffix in FORMATS.items()}.get(out.suffix.lower())
    if fmt is None and by_suffix is None:
        raise Img2ImgError(f"-o {out}: name an .onnx (ONNX) or .pt (TorchScript) file")
    if fmt is not None and by_suffix != fmt:
        raise Img2ImgError(f"-o {out} does not fit --format {fmt}, whose files end in "
                           f"{FORMATS[fmt]} (how `img2img convert --model` recognises them)")
    return by_suffix


def _contract(model: Model, direction: str, index: int | None, fmt: str, exporter: str,
              preset: str | None) -> ExportContract:
    multiple, minimum = size_multiple(model), minimum_size(model)
    side = math.ceil(max(minimum, multiple) / multiple) * multiple
    probe = torch.zeros(1, model.spec.channels, side, side, device=_device(model))
    with torch.inference_mode():
        out_channels = translate_indexed(model, probe, direction, index).shape[1]
    label = None if index is None else model.spec.classes[index]
    return ExportContract(model.name, direction, label, model.spec.channels, int(out_channels),
                          multiple, minimum, model.spec.size, fmt, exporter, preset,
                          noise_dim=noise_dim_of(model))


def _device(model: Model) -> torch.device:
    return next(model.generators.parameters(), torch.zeros(())).device


def _example(model: Model) -> tuple[tuple[Tensor, ...], int, int]:
    """The traced example inputs (batch 2, sides twice the multiple or more: torch.export
    specialises a size of 1 to a constant; the noise, for a run with a noise input) and the
    multiple and minimum of the sides, in multiples."""
    multiple = size_multiple(model)
    low = math.ceil(minimum_size(model) / multiple)
    side = multiple * max(2, low)
    image = torch.rand(2, model.spec.channels, side, side, device=_device(model)) * 2 - 1
    noise_dim = noise_dim_of(model)
    if not noise_dim:
        return (image,), multiple, low
    return (image, torch.randn(2, noise_dim, device=image.device)), multiple, low


def onnx_model(model: Model, direction: str, index: int | None, *,
               preset: str | None = None) -> tuple[bytes, ExportContract]:
    """The serialised ONNX model of one direction and class, with its contract as metadata.
    torch.export (the dynamo exporter) first; a network it cannot capture falls back to the
    TorchScript-based exporter, and one neither exports gives an error naming both reasons."""
    onnx = require_extra("onnx", "ONNX export")
    require_extra("onnxscript", "ONNX export")
    module = _Translation(_subpixel_copy(model), direction, index).eval()
    reasons = []
    for exporter, capture in (("dynamo", _dynamo), ("torchscript-based", _torchscript_onnx)):
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter chatter: deprecations, trace notes
                proto = capture(module, *_example(model))
            break
        except Exception as exc:  # any failure of an exporter is a reason to try the other
            reasons.append(f"{exporter}: {_first_line(exc)}")
    else:
        raise Img2ImgError(f"cannot export '{model.name}' {direction} to ONNX: "
                           + "; ".join(reasons))
    contract = _contract(model, direction, index, "onnx", exporter, preset)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, contract.metadata())
    return proto.SerializeToString(), contract


def _subpixel_copy(model: Model) -> Model:
    """`model` with its generators copied and their transposed convolutions written as
    sub-pixel convolutions (`subpixel.py`: the same output to float rounding, faster in ONNX
    Runtime and quantizable to int8); `model` itself is untouched."""
    generators = copy.deepcopy(model.generators)
    if not rewrite_transposed(generators):
        return model
    clone = copy.copy(model)
    clone._modules = dict(model._modules)  # else the copy shares the module's table of networks
    clone.generators = generators
    return clone


def _dynamo(module: nn.Module, example: tuple[Tensor, ...], multiple: int, low: int) -> Any:
    from torch.export import Dim

    batch = Dim("batch", min=1)
    shapes = ({0: batch, 2: multiple * Dim("height", min=low),
               3: multiple * Dim("width", min=low)}, {0: batch})[:len(example)]
    program = torch.onnx.export(module, example, dynamo=True, verbose=False,
                                input_names=[INPUT, NOISE][:len(example)], output_names=[OUTPUT],
                                dynamic_shapes=shapes)
    return program.model_proto


def _torchscript_onnx(module: nn.Module, example: tuple[Tensor, ...], multiple: int,
                      low: int) -> Any:
    import onnx

    axes = {0: "batch", 2: "height", 3: "width"}
    dynamic = {INPUT: axes, OUTPUT: axes, **({NOISE: {0: "batch"}} if len(example) > 1 else {})}
    buffer = io.BytesIO()
    torch.onnx.export(module, example, buffer, dynamo=False,
                      input_names=[INPUT, NOISE][:len(example)], output_names=[OUTPUT],
                      dynamic_axes=dynamic, opset_version=17)
    return onnx.load_from_string(buffer.getvalue())


def _write_torchscript(model: Model, direction: str, index: int | None, path: Path,
                       preset: str | None) -> ExportContract:
    """Traced and frozen: the networks here have no shape-dependent branches beyond the size
    checks, which hold for every size the contract allows."""
    contract = _contract(model, direction, index, "torchscript", "torch.jit.trace", preset)
    module = _Translation(model, direction, index).eval()
    example = _example(model)[0]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.freeze(torch.jit.trace(module, example))
            torch.jit.save(traced, str(path), _extra_files={
                TORCHSCRIPT_METADATA: json.dumps(contract.metadata())})
    except Exception as exc:  # tracing fails in many ways (untraceable Python, custom ops)
        raise Img2ImgError(f"cannot export '{model.name}' {direction} to TorchScript: "
                           f"{_first_line(exc)}") from None
    return contract


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
