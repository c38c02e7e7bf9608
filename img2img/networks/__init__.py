"""Network building blocks that model plugins compose: the published pix2pix/CycleGAN generators
and PatchGAN discriminator, normalisation by name, and their weight initialisation. Nothing here
knows about a particular model or the trainer."""
from img2img.networks.factory import GENERATORS, build_generator
from img2img.networks.init import init_weights
from img2img.networks.norm import (
    NORMS,
    PerSampleNorm2d,
    norm_layer,
    per_sample_batch_norm,
)
from img2img.networks.options import NetworkOptions, network_field
from img2img.networks.patchgan import MultiScaleDiscriminator, PatchDiscriminator, receptive_field
from img2img.networks.resnet import UPSAMPLING, ResnetBlock, ResnetGenerator
from img2img.networks.unet import UnetGenerator

__all__ = [
    "GENERATORS",
    "build_generator",
    "NORMS",
    "MultiScaleDiscriminator",
    "NetworkOptions",
    "PatchDiscriminator",
    "PerSampleNorm2d",
    "ResnetBlock",
    "ResnetGenerator",
    "UPSAMPLING",
    "UnetGenerator",
    "init_weights",
    "network_field",
    "norm_layer",
    "per_sample_batch_norm",
    "receptive_field",
]
