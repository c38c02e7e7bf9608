"""Built-in plugin: Pix2Pix (Isola et al. 2017), paired image-to-image translation, and the
`img2img demo` command that trains it on the bundled face edge maps."""
import img2img

from .demo import demo
from .model import Pix2Pix

__all__ = ["Pix2Pix"]


@img2img.hookimpl
def register_models(register):
    register(Pix2Pix)


@img2img.hookimpl
def register_commands(register):
    register(demo)
