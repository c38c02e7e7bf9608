"""ONNX Runtime as a `Translator` runtime: `OnnxGraph` runs one ONNX file or serialised graph in
an inference session set up for the machine, and `OnnxRuntime` runs a trained model through it,
exporting each direction and class on first use. Tiling, padding, alpha and bit depth stay the
Translator's, so they are the same as with PyTorch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import Img2ImgError
from ..model import Model
from .export import onnx_model
from .extras import require_extra


CUDA = "CUDAExecutionProvider"


def _providers(ort: Any, device: torch.device) -> list[Any]:
    """CUDA on the GPU `device` names when the caller asked for one, else the CPU."""
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if CUDA not in ort.get_available_providers():
        raise Img2ImgError(f"--device {device}: this onnxruntime build has no CUDA provider "
                           f"(it has {', '.join(ort.get_available_providers())}); install "
                           "onnxruntime-gpu, or use --device cpu or --runtime torch")
    index = device.index if device.index is not None else torch.cuda.current_device()
    # HEURISTIC: cuDNN's own pick of convolution algorithm. The default, EXHAUSTIVE, times every
    # algorithm for each new input shape, and a translator meets many (image sizes, edge tiles,
    # a last smaller batch), each costing seconds.
    options = {"device_id": index, "cudnn_conv_algo_search": "HEURISTIC"}
    return [(CUDA, options), "CPUExecutionProvider"]


def _check_providers(session: Any, device: torch.device) -> None:
    """ONNX Runtime falls back to the CPU, saying nothing, when the CUDA provider cannot load
    (a CUDA or cuDNN library missing or of another version): refuse instead."""
    if device.type == "cuda" and CUDA not in session.get_providers():
        raise Img2ImgError(f"--device {device}: ONNX Runtime could not start its CUDA provider "
                           f"and would run on {', '.join(session.get_providers())}; check that "
                           "onnxruntime-gpu matches the installed CUDA and cuDNN (its log above "
                           "names the library), or use --device cpu or --runtime torch")


class OnnxGraph:
    """An ONNX graph of one image input (and, exported from a run with a noise input, a
    (B, noise_dim) noise input) and one image output in an ONNX Runtime session: (B,C,H,W)
    float tensor in, (B,C',H,W) float32 CPU tensor out."""

    def __init__(self, model: bytes | Path, device: torch.device = torch.device("cpu")):
        ort = require_extra("onnxruntime", "the onnxruntime runtime")
        options = ort.SessionOptions()
        # As many threads as torch would use, all on one operator at a time: a generator is a
        # chain of large convolutions, with nothing to run side by side.
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spin between a run's operators, not after it: spinning threads left behind starved
        # PyTorch's own threads in the tensor work between runs (3-5x slower there).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        source = model if isinstance(model, bytes) else str(model)
        providers = _providers(ort, device)
        try:
            self.session = ort.InferenceSession(source, options, providers=providers)
        except Exception as exc:  # onnxruntime's errors share no base class beyond Exception
            where = "" if isinstance(model, bytes) else f"{model}: "
            raise RuntimeError(f"{where}ONNX Runtime cannot load this graph: {exc}") from None
        _check_providers(self.session, device)
        inputs = self.session.get_inputs()
        self.input = inputs[0].name
        self.noise_input = inputs[1].name if len(inputs) > 1 else None  # see ExportContract

    def metadata(self) -> dict[str, str]:
        """The model's metadata_props (where `img2img export` writes its contract)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        feed = {self.input: x.detach().to("cpu", torch.float32).contiguous().numpy()}
        if (noise is None) != (self.noise_input is None):
            raise Img2ImgError("this ONNX graph takes " + (
                f"a second input '{self.noise_input}' (noise) that was not given"
                if noise is None else "no noise input, but noise was given"))
        if noise is not None:
            feed[self.noise_input] = noise.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            (out,) = self.session.run(None, feed)
        except Exception as exc:  # as above; torch's own path raises RuntimeError here
            raise RuntimeError(f"ONNX Runtime: {exc}") from None
        return torch.from_numpy(out)


class OnnxRuntime:
    """Runs `model` with ONNX Runtime: each (direction, class) is exported to ONNX in memory the
    first time it is asked for (a few seconds), then served by its own session."""

    name = "onnxruntime"

    def __init__(self, model: Model, device: torch.device = torch.device("cpu")):
        require_extra("onnxruntime", "the onnxruntime runtime")  # say so now, not at image one
        self.model, self.device = model, device
        self.graphs: dict[tuple[str, int | None], OnnxGraph] = {}

    def __call__(self, x: Tensor, direction: str, index: int | None,
                 noise: Tensor | None = None) -> Tensor:
        key = (direction, index)
        if key not in self.graphs:
            self.graphs[key] = OnnxGraph(onnx_model(self.model, direction, index)[0], self.device)
        return self.graphs[key](x, noise)
