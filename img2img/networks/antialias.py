"""Anti-aliased down- and upsampling ("Making convolutional networks shift-invariant again",
Zhang 2019), as CUT's generator uses it: a stride-2 conv becomes a stride-1 conv, its norm and
ReLU, then a [1, 3, 3, 1] blur sampled every second pixel; a 2x upsampling becomes a zero-insertion
upsampling blurred by the same filter (which is bilinear 2x resizing) followed by a 3x3 conv.
`antialias_resnet` rewrites a `ResnetGenerator` that way with the same parameter count."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from img2img.networks.init import init_weights
from img2img.networks.resnet import ResnetGenerator

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


def blur_kernel(channels: int, gain: float = 1.0) -> torch.Tensor:
    """(channels, 1, 4, 4) depthwise kernel: the outer product of `BLUR_TAPS`, summing to `gain`."""
    taps = torch.tensor(BLUR_TAPS)
    kernel = taps[:, None] * taps[None, :]
    return (gain * kernel / kernel.sum()).expand(channels, 1, 4, 4).contiguous()


class BlurPool2d(nn.Module):
    """(B, C, H, W) -> (B, C, H/2, W/2): blur, then keep every second pixel. The reflection
    padding (1 before, 2 after) centres each output on the 2x2 cell it summarises, as average
    pooling does."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        # Not persistent: a fixed filter, rebuilt from the options, never part of a checkpoint.
        self.register_buffer("kernel", blur_kernel(channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 2, 1, 2), mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, taps={BLUR_TAPS}"


class BlurUpsample2d(nn.Module):
    """(B, C, H, W) -> (B, C, 2H, 2W): zeros between the pixels, then the blur with gain 4. Each
    output pixel is 3/4 of its nearest input and 1/4 of the next one along each axis, which is
    bilinear 2x resizing; the replicated border keeps the edge rows as bright as the rest."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", blur_kernel(channels, gain=4.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.pad(x, (1, 1, 1, 1), mode="replicate"), by hand: torch.compile's shape model of the
        # replicate padding's backward assumes NCHW, and channels-last gradients then fail
        # ("view size is not compatible", or inductor's stride assertion).
        x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
        x = torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)
        y = F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, groups=self.channels)
        return y[..., 3:-3, 3:-3]

    def extra_repr(self) -> str:
        return f"{self.channels}, taps={BLUR_TAPS}"


def _antialiased_up(layer: nn.Module) -> nn.Module:
    if isinstance(layer, nn.ConvTranspose2d):  # the published upsampling
        conv = nn.Conv2d(layer.in_channels, layer.out_channels, 3, padding=1,
                         bias=layer.bias is not None)
        return nn.Sequential(BlurUpsample2d(layer.in_channels), init_weights(conv))
    if isinstance(layer, nn.Sequential) and isinstance(layer[0], nn.Upsample):  # resize + conv
        return nn.Sequential(BlurUpsample2d(layer[1].in_channels), *list(layer)[1:])
    return layer


def antialias_resnet(net: ResnetGenerator) -> ResnetGenerator:
    """Rewrite `net` in place with anti-aliased sampling and return it: each stride-2 conv keeps
    its weights but runs at stride 1, followed (after its norm and ReLU) by a `BlurPool2d`; each
    upsampling becomes `BlurUpsample2d` then a 3x3 conv (freshly initialised; as many weights as
    the transposed conv it replaces). Sizes, `required_multiple` and feature names are unchanged."""
    if not isinstance(net, ResnetGenerator):
        raise TypeError(f"antialias_resnet needs a ResnetGenerator, got {type(net).__name__}")
    layers, pending = [], None
    for layer in net.model:
        if isinstance(layer, nn.Conv2d) and layer.stride == (2, 2):
            layer.stride, pending = (1, 1), layer.out_channels
        layers.append(_antialiased_up(layer))
        if pending is not None and isinstance(layer, nn.ReLU):
            layers.append(BlurPool2d(pending))
            pending = None
    net.model = nn.Sequential(*layers)
    return net
