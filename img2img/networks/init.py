"""Weight initialisation for the shared networks: the "normal" scheme of the published pix2pix and
CycleGAN code, which their training recipes (learning rate, betas) were tuned with. Plugins call
it after building a network; constructors leave PyTorch's default init alone."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

_LINEAR_KINDS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                 nn.ConvTranspose3d, nn.Linear)
_NORM_KINDS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _raw_weight(module: nn.Module) -> torch.Tensor | None:
    # Under spectral norm `module.weight` is computed on access; the trainable tensor is `original`.
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return getattr(module, "weight", None)


@torch.no_grad()
def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Convolutions and linear layers get weights ~ N(0, std); affine norms get scales ~ N(1, std);
    all their biases become 0. Returns `module`."""
    for m in module.modules():
        if isinstance(m, _LINEAR_KINDS):
            center = 0.0
        elif isinstance(m, _NORM_KINDS):
            center = 1.0
        else:
            continue
        weight = _raw_weight(m)
        if weight is not None:
            nn.init.normal_(weight, center, std)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    return module
