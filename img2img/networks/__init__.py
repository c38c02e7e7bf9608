"""Network building blocks that model plugins compose: the published pix2pix/CycleGAN generators
and PatchGAN discriminator, normalisation by name, their weight initialisation, the GAN
objectives and losses (`Adversary`, `ImagePool`, feature matching), reading a generator's
named encoder features, and a noise input for any generator with its diversity losses. Nothing here knows about a particular model or the trainer."""
from img2img.networks.antialias import antialias_resnet
from img2img.networks.factory import GENERATORS, build_generator
from img2img.networks.features import (
    default_feature_layers, encoder_features, feature_layers, forward_and_features,
    resolve_layers,
)
from img2img.networks.init import init_weights
from img2img.networks.losses import (
    GAN_LOSSES, Adversary, ImagePool, eager, feature_matching, gradient_penalty, r1_penalty,
)
from img2img.networks.noise import (
    LatentEncoder, NoisyGenerator, add_noise_input, install_noise, latent_regression_loss,
    mode_seeking_loss, noise_dim_of, noise_for_seed, pinned_noise, slerp,
)
from img2img.networks.norm import NORMS, PerSampleNorm2d, norm_layer, per_sample_batch_norm
from img2img.networks.options import NetworkOptions
from img2img.networks.patchgan import MultiScaleDiscriminator, PatchDiscriminator, receptive_field
from img2img.networks.resnet import UPSAMPLING, ResnetBlock, ResnetGenerator
from img2img.networks.unet import UnetGenerator

__all__ = [
    "GAN_LOSSES", "GENERATORS", "NORMS", "UPSAMPLING",
    "Adversary", "ImagePool", "LatentEncoder", "MultiScaleDiscriminator", "NetworkOptions",
    "NoisyGenerator", "PatchDiscriminator", "PerSampleNorm2d", "ResnetBlock", "ResnetGenerator",
    "UnetGenerator", "add_noise_input", "antialias_resnet", "build_generator",
    "default_feature_layers", "eager", "encoder_features", "feature_layers", "feature_matching",
    "forward_and_features", "gradient_penalty", "init_weights", "install_noise",
    "latent_regression_loss", "mode_seeking_loss", "noise_dim_of", "noise_for_seed",
    "norm_layer", "per_sample_batch_norm", "pinned_noise", "r1_penalty", "receptive_field",
    "resolve_layers", "slerp",
]
