"""Built-in plugin: Pix2Pix (Isola et al. 2017), paired image-to-image translation, and the
`img2img demo` command that trains it on the bundled face edge maps."""
import img2img

from .demo import demo
from .model import Pix2Pix

__all__ = ["Pix2Pix"]


@img2img.hookimpl
def register_models(register):
    register(Pix2Pix)


# The recommended recipe: better held-out images than the published one for the same minutes of
# training (figures: benchmarks/README.md, "Recipes"). Every value is also a flag.
FAST = img2img.Preset(
    "fast", "pix2pix",
    "more quality per minute of training than the published recipe, for short budgets and "
    "small datasets: 16-wide networks without dropout, resize-convolution upsampling, "
    "DiffAugment (color, translation, cutout), learning rate 1e-3 with 100 warm-up steps, "
    "generator average 0.995",
    options={"ngf": 16, "ndf": 16, "upsample": "resize", "dropout": False},
    training={"lr": 1e-3, "warmup_steps": 100, "diff_augment": "color,translation,cutout",
              "ema": 0.995})


@img2img.hookimpl
def register_presets(register):
    register(FAST)


@img2img.hookimpl
def register_commands(register):
    register(demo)
