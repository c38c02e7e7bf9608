"""Normalisation layers chosen by name, shared by every network in this package. Also owns
`per_sample_batch_norm`, which makes a pix2pix-style batch-norm network behave at inference as it
did in training at batch size 1, however many images are batched together."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instance", "batch", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation named `kind` for a `(B, channels, H, W)` feature map."""
    if kind == "instance":
        # As the published CycleGAN: no affine parameters and no running statistics.
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def conv_needs_bias(kind: str) -> bool:
    """Whether a conv followed by norm `kind` should carry a bias.

    Batch norm's learned shift makes a preceding bias redundant; the published pix2pix and
    CycleGAN networks drop it there and keep it otherwise, which their parameter counts reflect.
    """
    return kind != "batch"


class PerSampleNorm2d(nn.Module):
    """Batch norm while training; at inference (eval mode) it normalises each sample by its own
    per-channel (H, W) statistics, then applies the learned affine of the batch norm it replaces.

    It holds the very same parameter and buffer tensors as that batch norm, so `state_dict()` keys
    and values are unchanged and checkpoints load either way; the running statistics are kept only
    for that reason and are never read.
    """

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.num_features = bn.num_features
        self.eps = bn.eps
        self.weight = bn.weight
        self.bias = bn.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(bn, name, None))

        self.momentum = bn.momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=True, momentum=self.momentum, eps=self.eps)
        return F.instance_norm(x, weight=self.weight, bias=self.bias, use_input_stats=True,
                               eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


def per_sample_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every `BatchNorm2d` in `module`, in place, by a `PerSampleNorm2d`; return `module`.

    pix2pix trains with batch norm at batch size 1, where batch statistics are one image's
    statistics. Keeping them per image at inference matches what the model learned, where eval-mode
    batch norm would switch to running averages it never used. If `module` is itself a batch norm
    the replacement is returned instead.
    """
    if isinstance(module, nn.BatchNorm2d):
        return PerSampleNorm2d(module)
    for name, child in module.named_children():
        replacement = per_sample_batch_norm(child)
        if replacement is not child:
            setattr(module, name, replacement)
    return module
