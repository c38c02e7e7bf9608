"""int8 ONNX graphs (`img2img export --int8`): ONNX Runtime's static quantization of an exported
fp32 graph (QDQ format, per-channel int8 weights, uint8 activations with ranges calibrated on a
few of the user's input images, the first and last convolutions kept in fp32), accepted only if
its output stays within `min_psnr` dB of the fp32 graph's on images it was not calibrated on.

A transposed convolution has no int8 kernel in ONNX Runtime's CPU provider, so the exported
graph writes them as sub-pixel convolutions (`subpixel.py`), which do. What int8 buys depends on
the network: measured on a 2-core AVX-512 VNNI CPU, the U-Net-256 forward is 2.3-2.6x faster at
42-44 dB from fp32, the ResNet-9 2.2x faster but only 28-30 dB from fp32 (random weights): the
PSNR check decides for each run's own weights."""
from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError, Img2ImgError
from .export import require_extra

PERCENTILE = 99.99  # activation range: the 99.99th percentile of the calibration values
MIN_PSNR = 35.0  # dB from the fp32 output, below which int8 is refused (issue 12's bar)


def calibration_images(folder: Path, channels: int, size: int, count: int,
                       held_out: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Up to `count` images of `folder` to calibrate on and up to `held_out` others to check
    with, each resized to size x size and scaled to [-1, 1] as (1, C, size, size) float32. With
    too few images for both, the check reuses the calibration images (and is weaker)."""
    from ..data.decode import read_image
    from ..data.folders import readable_images

    paths, _ = readable_images(Path(folder), "--calibration: a folder of input images (the "
                                             "domain the model translates from)")
    arrays = []
    for path in paths[:count + held_out]:
        image = read_image(path, channels, min_size=size)
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        image = image.reshape(size, size, channels)
        arrays.append(image.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1)
    calibrate = arrays[:count]
    check = arrays[count:] or calibrate
    return calibrate, check


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
    with tempfile.TemporaryDirectory(prefix="img2img-int8-") as tmp:
        plain, prepared, quantized = (Path(tmp) / f for f in ("fp32.onnx", "prep.onnx",
                                                                 "int8.onnx"))
        plain.write_bytes(fp32)
        with _quiet():
            q.quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(prepared)).graph.node
                 if n.op_type in ("Conv", "ConvTranspose")]
        feed = iter(calibrate)

        class Reader(q.CalibrationDataReader):
            def get_next(self):
                x = next(feed, None)
                return None if x is None else {name: x}

        with _quiet():
            q.quantize_static(str(prepared), str(quantized), Reader(),
                              quant_format=q.QuantFormat.QDQ, per_channel=True,
                              activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8,
                              calibrate_method=q.CalibrationMethod.Percentile,
                              nodes_to_exclude=convs[:1] + convs[-1:] if len(convs) > 2 else [],
                              extra_options={"CalibPercentile": PERCENTILE})
        int8 = onnx.load(str(quantized))
    del int8.metadata_props[:]
    int8.metadata_props.extend(source.metadata_props)
    data = int8.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
                for graph in (fp32, data)]
    scores = [psnr(sessions[1].run(None, {name: x})[0], sessions[0].run(None, {name: x})[0])
              for x in check]
    score = float(np.mean(scores))
    if score < min_psnr:
        raise Img2ImgError(f"--int8: the int8 graph's output is {score:.1f} dB PSNR from the "
                           f"fp32 graph's on {len(check)} --calibration images, under "
                           f"--min-psnr {min_psnr:g}; nothing written (export without --int8, "
                           f"or lower --min-psnr to accept it)")
    return data, score
