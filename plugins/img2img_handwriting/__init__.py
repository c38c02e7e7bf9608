"""Built-in plugin: handwriting. The `handwriting` preset for pix2pix (printed -> handwritten
glyphs, with a glyph-fitting, binarising convert pipeline), `img2img prepare handwriting` (print
counterparts rendered for handwritten glyphs) and `img2img write` (a line of handwriting)."""
import img2img

from .prepare import prepare_command
from .preset import HANDWRITING
from .write import write_command


@img2img.hookimpl
def register_presets(register):
    register(HANDWRITING)


@img2img.hookimpl
def register_commands(register):
    register(write_command)


@img2img.hookimpl
def register_prepare_commands(register):
    register(prepare_command)
