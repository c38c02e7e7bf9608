"""The trainer's speed switches, applied to a model's networks: the channels-last memory format
(and which networks keep it when it is left to `auto`), torch.compile, and optimiser state laid
out like its parameters, whatever layout it was saved in."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

# torch.compile's default backend. A CPU test may set "aot_eager": the same AOTAutograd path
# (and so the same refusals, such as double backward) without a C++ build per graph.
COMPILE_BACKEND = "inductor"

# Layers that return NCHW whatever layout they are given: F.instance_norm reshapes its input to
# (1, B*C, H, W) and batch-normalises that, which yields a contiguous tensor.
NCHW_LAYERS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def keeps_channels_last(net: nn.Module) -> bool:
    """Whether activations stay channels-last through `net`: no layer of it returns NCHW."""
    return not any(isinstance(m, NCHW_LAYERS) for m in net.modules())


def channels_last_networks(setting: str, device: torch.device,
                           networks: Mapping[str, nn.Module]) -> list[str]:
    """The networks to convert to channels-last: every one ("on"), none ("off"), or with "auto"
    on CUDA those that keep the format.

    Why "auto" leaves out instance-norm networks (CycleGAN's and CUT's, the instance-norm
    PatchGANs) until a GPU measures it: each conv -> instance norm block would convert every
    activation twice, the norm back to NCHW and the next conv (whose channels-last weight makes
    cuDNN pick channels-last) forward again, and twice more in the backward; those copies cost
    about what the NHWC convolutions save, which is largest for half-precision tensor cores.
    Batch-norm networks (pix2pix's) keep the format end to end, so they convert. cgan's
    minibatch-stddev layer also returns NCHW, but only once, before the last conv."""
    if setting == "on":
        return list(networks)
    if setting == "off" or device.type != "cuda":
        return []
    return [name for name, net in networks.items() if keeps_channels_last(net)]


def speed_up(model: Any, channels_last: str, device: torch.device, compile: bool) -> list[str]:
    """Convert the generators and discriminators that `channels_last_networks` picks, then
    compile every one if asked (in place: parameter names, and so checkpoints, stay the same).
    Returns the converted networks' names (`generators.a_to_b`, `discriminators.b`)."""
    networks = {f"{kind}.{name}": net for kind in ("generators", "discriminators")
                for name, net in getattr(model, kind).items()}
    converted = channels_last_networks(channels_last, device, networks)
    for name, net in networks.items():
        if name in converted:
            net.to(memory_format=torch.channels_last)
        if compile:
            net.compile(backend=COMPILE_BACKEND)
    return converted


def match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Lay each state tensor of `optimizer` out like its parameter (strides, device, dtype).

    `load_state_dict` keeps the strides a state was saved with, so a run resumed with another
    --channels-last (or on another device, where "auto" differs) pairs NCHW moments with
    channels-last weights: fused Adam then refuses on CUDA ("same dtype, device, and layout")
    and applies wrong updates on the CPU."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if (key != "step" and isinstance(value, torch.Tensor)  # step: torch places it
                        and value.shape == param.shape
                        and (value.stride() != param.stride() or value.device != param.device)):
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
