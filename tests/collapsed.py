"""A pix2pix whose generator has collapsed completely, for the training-health tests: one
learned image, whatever the input."""
from __future__ import annotations

import torch
from torch import nn

from img2img_pix2pix import Pix2Pix


class Constant(nn.Module):
    """A generator that ignores its input: one learned image for every input."""

    def __init__(self, size: int):
        super().__init__()
        self.image = nn.Parameter(torch.zeros(1, 3, size, size))

    def forward(self, x):
        return torch.tanh(self.image).expand(x.shape[0], -1, -1, -1)


class Collapsed(Pix2Pix):
    name = "collapsed"

    def build_generators(self):
        return {"a_to_b": Constant(self.spec.size)}
