"""Built-in plugin: CycleGAN (Zhu et al. 2017), unpaired image-to-image translation."""
import img2img

from .model import CycleGAN


@img2img.hookimpl
def register_models(register):
    register(CycleGAN)
