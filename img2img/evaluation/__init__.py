"""Measuring trained models: the metrics (`metrics`: PSNR, SSIM, L1, SWD), FID and KID on the
published network (`fid`), and evaluating a model on held-out data (`evaluate`)."""
from .metrics import l1, psnr, ssim, swd

__all__ = ["l1", "psnr", "ssim", "swd"]
