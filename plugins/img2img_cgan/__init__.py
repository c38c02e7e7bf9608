"""Built-in plugin: a class-conditional GAN (`img2img train cgan`) that draws images of a requested
class, and the `img2img sample` command that writes them."""
import img2img

from .command import sample
from .model import ConditionalGAN


@img2img.hookimpl
def register_models(register):
    register(ConditionalGAN)


@img2img.hookimpl
def register_commands(register):
    register(sample)
