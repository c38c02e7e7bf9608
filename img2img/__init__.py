"""img2img: a plugin-based image-to-image GAN toolkit. This module is the public API for users
and plugin authors; everything else is reached through it or through the `img2img` command."""
from .catalog import Preset
from .errors import CheckpointError, DataError, Img2ImgError, PluginError
from .hookspecs import hookimpl
from .inference import Translator, load
from .model import ImageSpec, Model
from .trainer import TrainConfig, Trainer

__all__ = [
    "CheckpointError", "DataError", "ImageSpec", "Img2ImgError", "Model", "PluginError",
    "Preset", "TrainConfig", "Trainer", "Translator", "hookimpl", "load",
]
