"""The onnx extra (onnx, onnxruntime, onnxscript) is optional: its packages are imported when a
command needs them, and a missing one is one line saying how to install it, not a traceback."""
from __future__ import annotations

import importlib
from typing import Any

from ..errors import Img2ImgError


def require_extra(package: str, what: str) -> Any:
    """Import a package of the onnx extra, or say in one line how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise Img2ImgError(f"{what} needs the onnx extra: pip install 'img2img[onnx]'") from None
