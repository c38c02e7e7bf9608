"""Built-in plugin: Pix2Pix (Isola et al. 2017), paired image-to-image translation."""
import img2img

from .model import Pix2Pix


@img2img.hookimpl
def register_models(register):
    register(Pix2Pix)
