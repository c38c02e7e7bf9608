"""int8 ONNX graphs (`img2img export --int8`): ONNX Runtime's static quantization of an exported
fp32 graph (QDQ format, per-channel int8 weights, uint8 activations with ranges calibrated on a
few of the user's input images, the first and last convolutions kept in fp32), accepted only if
its output stays within `min_psnr` dB of the fp32 graph's on images it was not calibrated on.

A transposed convolution has no int8 kernel in ONNX Runtime's CPU provider, so the exported
graph writes them as sub-pixel convolutions (`subpixel.py`), which do. What int8 buys depends on
the network: measured on a 2-core AVX-512 VNNI CPU, the U-Net-256 forward is 2.4x faster at 46 dB
from fp32, the ResNet-9 2.3x faster but only 33 dB from fp32 (random weights): the PSNR check
decides for each run's own weights."""
from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import DataError, Img2ImgError
from .extras import require_extra

PERCENTILE = 99.99  # activation range: the 99.99th percentile of the calibration values
# What is quantized: the operators with int8 kernels on the CPU. Norms, padding and the
# rest stay fp32 between them (quantizing those too fails on parameters the exporter shares
# between layers, and gains nothing where ONNX Runtime has no int8 kernel for them).
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
MIN_PSNR = 35.0  # dB from the fp32 output, below which int8 is refused (issue 12's bar)


def folder_images(folder: Path, channels: int, size: int, limit: int) -> list[np.ndarray]:
    """Up to `limit` images of `folder` as size x size x channels uint8 arrays."""
    from ..data.decode import read_image
    from ..data.folders import readable_images, warn_skipped

    paths, unreadable = readable_images(Path(folder), "--calibration: a folder of input images "
                                        "(the domain the model translates from)")
    warn_skipped(unreadable)  # as training does: named, then left out
    images = []
    for path in paths[:limit]:
        image = cv2.resize(read_image(path, channels, min_size=size), (size, size),
                           interpolation=cv2.INTER_AREA)
        images.append(image.reshape(size, size, channels))
    return images


def training_images(training: dict[str, Any], kind: str, side: str, channels: int, size: int,
                    limit: int) -> list[np.ndarray]:
    """Up to `limit` images of side `side` ("a" or "b") of a run's own training data (its
    recorded `training` settings and the model's data `kind`), resized to size x size, read
    the way training reads them (paired folders, side-by-side pairs, unpaired folders)."""
    from ..data.augment import AugmentRecipe
    from ..data.datasets import open_dataset

    if not (training.get("data") or training.get("a") or training.get("b")):
        raise DataError("--int8: this run records no training data (an imported run?); name "
                        "a folder of input images with --calibration DIR")
    recorded = training.get("channels", channels)  # (a, b) pairs come back from JSON as lists
    try:
        dataset = open_dataset(kind, data=training.get("data"), a=training.get("a"),
                               b=training.get("b"),
                               channels=tuple(recorded) if isinstance(recorded, list)
                               else recorded, recipe=AugmentRecipe(size, size, flip=False))
    except DataError as exc:
        raise DataError(f"--int8: the run's training data cannot be read ({exc}); name a "
                        "folder of input images with --calibration DIR") from None
    images = []
    for i in range(min(limit, len(dataset))):
        item = dataset[(i, i)]
        image = np.asarray(item[side if side in item else "a"]).transpose(1, 2, 0)
        images.append(np.ascontiguousarray(image))
    return images


def split(images: Sequence[np.ndarray], count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first `count` images to calibrate on and the rest to check with, as (1, C, H, W)
    float32 in [-1, 1]. With nothing left over, the check reuses the calibration images (and is
    weaker: the caller says so)."""
    arrays = [im.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1 for im in images]
    calibrate = arrays[:count]
    return calibrate, arrays[count:] or calibrate


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantization tools log warnings per tensor (weights of rank 1 and the
    like) through the root logger and print progress: none of it is the user's business."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean(((a.astype(np.float64) - b) / 2) ** 2))
    return 10 * math.log10(1 / mse) if mse > 0 else math.inf


def _with_noise(graph: Any, name: str, images: Sequence[np.ndarray]) -> list[dict]:
    """Session feeds of `images`; a graph with a second (noise) input also gets a standard
    normal row per image (seeds 0, 1, ...: the outputs a user's seeds give)."""
    if len(graph.graph.input) < 2:
        return [{name: x} for x in images]
    noise = graph.graph.input[1]
    dim = noise.type.tensor_type.shape.dim[1].dim_value
    return [{name: x, noise.name: np.stack([np.random.default_rng(i + j).standard_normal(
        dim).astype(np.float32) for j in range(x.shape[0])])} for i, x in enumerate(images)]


def quantize_int8(fp32: bytes, calibrate: Sequence[np.ndarray], check: Sequence[np.ndarray],
                  min_psnr: float = MIN_PSNR) -> tuple[bytes, float]:
    """(int8 graph, its mean PSNR from the fp32 graph over `check`), or Img2ImgError when that
    PSNR is under `min_psnr`. The fp32 graph's metadata is carried over."""
    onnx = require_extra("onnx", "int8 export")
    ort = require_extra("onnxruntime", "int8 export")
    from onnxruntime import quantization as q

    if not calibrate:
        raise DataError("--calibration: no images to calibrate on")
    source = onnx.load_from_string(fp32)
    name = source.graph.input[0].name
    feeds = _with_noise(source, name, calibrate)
    checks = _with_noise(source, name, check)
    with tempfile.TemporaryDirectory(prefix="img2img-int8-") as tmp:
        plain, prepared, quantized = (Path(tmp) / f for f in ("fp32.onnx", "prep.onnx",
                                                                 "int8.onnx"))
        plain.write_bytes(fp32)
        with _quiet():
            q.quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(prepared)).graph.node
                 if n.op_type in ("Conv", "ConvTranspose")]
        feed = iter(feeds)

        class Reader(q.CalibrationDataReader):
            def get_next(self):
                return next(feed, None)

        with _quiet():
            q.quantize_static(str(prepared), str(quantized), Reader(),
                              quant_format=q.QuantFormat.QDQ, per_channel=True,
                              activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8,
                              calibrate_method=q.CalibrationMethod.Percentile,
                              nodes_to_exclude=convs[:1] + convs[-1:] if len(convs) > 2 else [],
                              op_types_to_quantize=list(QUANTIZED_OPS),
                              extra_options={"CalibPercentile": PERCENTILE})
        int8 = onnx.load(str(quantized))
    del int8.metadata_props[:]
    int8.metadata_props.extend(source.metadata_props)
    data = int8.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
                for graph in (fp32, data)]
    scores = [psnr(sessions[1].run(None, x)[0], sessions[0].run(None, x)[0]) for x in checks]
    score = float(np.mean(scores))
    if score < min_psnr:
        raise Img2ImgError(f"--int8: the int8 graph's output is {score:.1f} dB PSNR from the "
                           f"fp32 graph's on {len(check)} input images, under "
                           f"--min-psnr {min_psnr:g}; nothing written (export without --int8, "
                           f"or lower --min-psnr to accept it)")
    return data, score
