"""Transposed convolutions as sub-pixel convolutions, for export: a stride-s `ConvTranspose2d`
computes each of its s x s output phases (the pixels (s*m + r_h, s*n + r_w) for one (r_h, r_w))
as an ordinary convolution of the input with a subset of its taps. `SubpixelConvTranspose2d`
runs all phases as one `Conv2d` with s*s times the output channels, takes each phase's window
(the phases start at different input offsets) and interleaves them with a depth-to-space
(`pixel_shuffle`). The result is the same to float rounding with the same multiply-adds, but it
is a plain convolution, which ONNX Runtime runs faster and, unlike ConvTranspose, can quantize
to int8 on the CPU.

Derivation, along one axis (kernel K, stride s, padding p): output o = s*m + r takes input i
with tap k where o = s*i - p + k, so k = t_r + s*j with t_r = (r + p) mod s, and i = m + c_r - j
with c_r = (r + p) // s, for j = 0 .. n_r - 1, n_r = ceil((K - t_r) / s)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _phases(kernel: int, stride: int, padding: int) -> list[tuple[int, int, int]]:
    """Per phase r: (first tap t_r, taps n_r, lowest input offset b_r = c_r - n_r + 1)."""
    out = []
    for r in range(stride):
        t, c = (r + padding) % stride, (r + padding) // stride
        n = math.ceil((kernel - t) / stride) if kernel > t else 0
        out.append((t, n, c - n + 1))
    return out


def rewritable(layer: nn.ConvTranspose2d) -> bool:
    """Plain 2-D transposed convolutions whose output is s times the input along each axis
    (every phase equally long), which is what generators' 2x upsampling layers are."""
    if layer.groups != 1 or layer.dilation != (1, 1) or layer.padding_mode != "zeros":
        return False
    if not isinstance(layer.padding, tuple) or layer.stride[0] < 2 or layer.stride[1] < 2:
        return False
    for k, s, p, op in zip(layer.kernel_size, layer.stride, layer.padding,
                           layer.output_padding):
        if -2 * p + k + op != s:  # output (H - 1) s - 2p + k + op == s H
            return False
        if any(n == 0 for _, n, _ in _phases(k, s, p)):
            return False
    return True


class SubpixelConvTranspose2d(nn.Module):
    """The same map as `layer` (a `rewritable` ConvTranspose2d), as one convolution and a
    depth-to-space. Its weights are a rearranged copy of the layer's, taken at construction."""

    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        if not rewritable(layer):
            raise ValueError(f"not a rewritable transposed convolution: {layer}")
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        rows, cols = _phases(kh, sh, ph), _phases(kw, sw, pw)
        self.stride = (sh, sw)
        self.taps = (max(n for _, n, _ in rows), max(n for _, n, _ in cols))
        low_h, low_w = min(b for *_, b in rows), min(b for *_, b in cols)
        high_h = max(b + self.taps[0] - 1 for *_, b in rows)
        high_w = max(b + self.taps[1] - 1 for *_, b in cols)
        # input padding (left, right, top, bottom) so every phase's window lies inside
        self.pad = (max(0, -low_w), max(0, high_w), max(0, -low_h), max(0, high_h))
        # where each phase's outputs start in the convolution's output grid
        self.starts = [(b_h + self.pad[2], b_w + self.pad[0])
                       for *_, b_h in rows for *_, b_w in cols]
        w = layer.weight.detach()  # (C_in, C_out, kh, kw)
        c_in, c_out = w.shape[0], w.shape[1]
        phase = torch.zeros(c_out, sh * sw, c_in, *self.taps, dtype=w.dtype, device=w.device)
        for a, (t_h, n_h, _) in enumerate(rows):
            for b, (t_w, n_w, _) in enumerate(cols):
                for j in range(n_h):
                    for i in range(n_w):  # the window's tap u = n - 1 - j reads x[m + c - j]
                        phase[:, a * sw + b, :, n_h - 1 - j, n_w - 1 - i] = \
                            w[:, :, t_h + sh * j, t_w + sw * i].T
        self.out_channels = c_out
        self.weight = nn.Parameter(phase.reshape(c_out * sh * sw, c_in, *self.taps),
                                   requires_grad=False)
        bias = None if layer.bias is None else layer.bias.detach().repeat_interleave(sh * sw)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        (sh, sw), (h, w) = self.stride, x.shape[-2:]
        grid = F.conv2d(F.pad(x, self.pad), self.weight, self.bias)
        grid = grid.view(grid.shape[0], self.out_channels, sh * sw, *grid.shape[-2:])
        parts = [grid[:, :, k, top:top + h, left:left + w]
                 for k, (top, left) in enumerate(self.starts)]
        if sh == sw:
            return F.pixel_shuffle(torch.stack(parts, 2).flatten(1, 2), sh)
        out = torch.stack(parts, 2).view(x.shape[0], self.out_channels, sh, sw, h, w)
        return out.permute(0, 1, 4, 2, 5, 3).reshape(x.shape[0], self.out_channels, h * sh,
                                                     w * sw)

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[1]}, {self.out_channels}, stride={self.stride}, "
                f"taps={self.taps}")


def rewrite_transposed(module: nn.Module) -> int:
    """Replace every `rewritable` ConvTranspose2d inside `module` (in place) by its
    `SubpixelConvTranspose2d`; returns how many were replaced."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.ConvTranspose2d) and rewritable(child):
            setattr(module, name, SubpixelConvTranspose2d(child))
            count += 1
        else:
            count += rewrite_transposed(child)
    return count
