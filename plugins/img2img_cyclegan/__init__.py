"""Built-in plugin: CycleGAN (Zhu et al. 2017), unpaired image-to-image translation."""
import img2img

from .model import CycleGAN


# The recommended recipe for short budgets and small datasets (figures: benchmarks/README.md,
# "Recipes"). DiffAugment leaves colour alone here: telling colour from grey is often the very
# thing a CycleGAN discriminator has to learn.
FAST = img2img.Preset(
    "fast", "cyclegan",
    "more quality per minute of training than the published recipe, for short budgets and "
    "small datasets: 8-wide networks, resize-convolution upsampling, DiffAugment "
    "(translation, cutout), learning rate 1e-3 with 50 warm-up steps, generator average 0.99",
    options={"ngf": 8, "ndf": 8, "upsample": "resize"},
    training={"lr": 1e-3, "warmup_steps": 50, "diff_augment": "translation,cutout",
              "ema": 0.99})


@img2img.hookimpl
def register_models(register):
    register(CycleGAN)


@img2img.hookimpl
def register_presets(register):
    register(FAST)
