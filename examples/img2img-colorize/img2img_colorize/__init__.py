"""img2img-colorize: an example third-party plugin for img2img. It registers the `colorize` model
(grey photo in, colour photo out, trained on any folder of colour photos) and its `fast` preset.
Only hooks live here; the model is in `model.py`."""
import img2img

from .model import Colorize, to_grey

__all__ = ["Colorize", "to_grey"]

FAST = img2img.Preset(
    "fast", model="colorize",
    summary="128 px crops and half-width networks: several times faster, for a first try",
    options={"generator": "unet-128", "ngf": 32, "ndf": 32},
    training={"load_size": 142, "crop_size": 128},
)


@img2img.hookimpl
def register_models(register):
    register(Colorize)


@img2img.hookimpl
def register_presets(register):
    register(FAST)
