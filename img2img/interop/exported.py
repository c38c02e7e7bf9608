"""Files `img2img export` wrote, loaded back as a `Translator`: the ONNX graph runs in ONNX
Runtime, the TorchScript one in PyTorch, and the contract in the file's metadata stands in for
the run folder (model name, direction, baked-in style, channels, sizes), so converting with an
exported file pads, tiles and keeps alpha and bit depth exactly as converting with its run does."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from ..errors import Img2ImgError
from ..inference.translator import Translator
from ..model import ImageSpec
from ..registry.catalog import Catalog, catalog as installed_catalog
from ..training.devices import resolve_device
from .export import FORMATS, TORCHSCRIPT_METADATA, ExportContract
from .onnx_runtime import OnnxGraph

RUNTIME_OF = {"onnx": "onnxruntime", "torchscript": "torch"}


def is_exported(ref: Any) -> bool:
    """Whether `ref` names a file of a format `img2img export` writes (by its suffix)."""
    path = Path(str(ref))
    return path.suffix.lower() in FORMATS.values() and path.is_file()


class ExportedModel:
    """What `Translator` and `convert` ask of a model, answered from an exported contract: one
    direction, and the one style (if any) baked into the graph."""

    def __init__(self, contract: ExportContract):
        self.contract = contract
        self.name = contract.model
        self.directions = (contract.direction,)
        labels = (contract.label,) if contract.label else ()
        self.spec = ImageSpec(contract.in_channels, contract.train_size, labels)
        self.noise_dim = contract.noise_dim  # > 0: the graph's second input is the noise
        # size_multiple() and minimum_size() read these off the generators; the graph is one
        self.generators = {contract.direction: contract}

    def resolve_direction(self, direction: str | None) -> str:
        if direction not in (None, self.contract.direction):
            raise Img2ImgError(f"this file holds the {self.contract.direction} generator of "
                               f"'{self.name}'; export {direction} from the run to get that one")
        return self.contract.direction

    def resolve_label(self, name: str | None) -> int | None:
        label = self.contract.label
        if name is not None and name != label:
            held = f"style/label '{label}' baked in" if label else "no styles or labels"
            raise Img2ImgError(f"--style/--label '{name}': this file was exported with {held}; "
                               "export again from the run with --style to get another")
        return None if label is None else 0


class GraphRuntime:
    """An exported graph as a Translator runtime: direction and class are already baked in
    (and checked against the contract by `ExportedModel`), so only the images go in."""

    def __init__(self, graph: Callable[[Tensor], Tensor], name: str):
        self.graph, self.name = graph, name

    def __call__(self, x: Tensor, direction: str, index: int | None,
                 noise: Tensor | None = None) -> Tensor:
        return self.graph(x) if noise is None else self.graph(x, noise.to(x.device))


def load_exported(path: Path, *, device: str = "auto", runtime: str | None = None,
                  catalog: Catalog | None = None, **tiling: int) -> Translator:
    """A `Translator` around the graph in `path` (`tiling`: Translator's tile and overlap)."""
    fmt = next(name for name, suffix in FORMATS.items() if path.suffix.lower() == suffix)
    if runtime not in (None, RUNTIME_OF[fmt]):
        raise Img2ImgError(f"{path} is a {fmt} file, which runs with runtime "
                           f"'{RUNTIME_OF[fmt]}', not '{runtime}'")
    torch_device = resolve_device(device)
    if fmt == "onnx":
        graph: Any = OnnxGraph(path, torch_device)
        contract = ExportContract.from_metadata(graph.metadata(), path)
        torch_device = torch.device("cpu")  # sessions take and give numpy arrays
    else:
        graph, contract = _torchscript(path, torch_device)
    pipeline = None
    if contract.preset:  # the run's convert pipeline (e.g. faces), where its plugin is here
        found = (catalog or installed_catalog()).presets.get((contract.model, contract.preset))
        pipeline = getattr(found, "pipeline", None)
    return Translator(ExportedModel(contract), path, torch_device, pipeline=pipeline,
                      preset=contract.preset, runtime=GraphRuntime(graph, RUNTIME_OF[fmt]),
                      **tiling)


def _torchscript(path: Path, device: torch.device) -> tuple[Any, ExportContract]:
    extra = {TORCHSCRIPT_METADATA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError) as exc:
        raise Img2ImgError(f"{path} is not a TorchScript file `img2img export` wrote "
                           f"({str(exc).strip().splitlines()[0]})") from None
    try:
        entries = json.loads(extra[TORCHSCRIPT_METADATA] or "{}")
    except ValueError:
        entries = {}
    return module.eval(), ExportContract.from_metadata(entries, path)
