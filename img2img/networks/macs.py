"""Counting a network's cost: multiply-accumulates (MACs) of one forward pass at a given input
size, read by torch's own operator-level counter (`torch.utils.flop_counter`, which knows
convolutions, transposed convolutions and matrix products), and its parameter count. One MAC is
two FLOPs; papers on GAN compression quote MACs (a ResNet-9 CycleGAN generator: ~57 G at
256 px)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_macs(net: nn.Module, shape: tuple[int, ...]) -> int:
    """MACs of `net` on one zero input of `shape` (C, H, W), batch 1, counted on the CPU
    without touching `net`'s mode or weights."""
    was_training = net.training
    device = next(net.parameters()).device
    x = torch.zeros((1, *shape), device=device)
    counter = FlopCounterMode(display=False)
    try:
        net.eval()
        with torch.no_grad(), counter:
            net(x)
    finally:
        net.train(was_training)
    return counter.get_total_flops() // 2


def count_parameters(net: nn.Module) -> int:
    """The number of learned values in `net`."""
    return sum(p.numel() for p in net.parameters())


def format_count(value: float) -> str:
    """1234567 -> '1.23M', 5.6e10 -> '56.0G': how MACs and parameter counts are printed."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def parse_count(text: str) -> float:
    """'5G', '800M', '2.5e9' -> a number (the `--macs` syntax); ValueError when it is none."""
    text = text.strip()
    scale = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}.get(text[-1:].lower(), None)
    value = float(text[:-1] if scale else text) * (scale or 1)
    if not value > 0:
        raise ValueError(f"{text!r} is not a positive count")
    return value
