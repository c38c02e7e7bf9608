"""Choosing where training and translation run: `--device auto` (a CUDA GPU, else Apple's MPS,
else the CPU) or a device by name, checked to exist; and which reduced type mixed-precision
training computes in on it."""
from __future__ import annotations

import torch

from ..errors import Img2ImgError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise Img2ImgError(f"--device '{name}' is not a device (cuda, cuda:N, mps, cpu, auto)") \
            from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Img2ImgError("--device cuda: no CUDA GPU is available here")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision is a GPU lever: on CPUs without native bf16 it is several times slower."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
