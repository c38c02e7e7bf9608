"""img2img: a plugin-based image-to-image GAN toolkit. This module is the public API for users
and plugin authors: train and evaluate runs (`train`, `evaluate_run`), load them (`load`), see
what is installed (`catalog`, `list_models`, `list_presets`), and the contract a plugin
implements (`Model`, `Preset`, `ConvertPipeline`, `Logger`, `hookimpl`, with `option` and
`new_default` for its settings). The `img2img` command line is built on these; what else a
plugin may import is listed in plugins/README.md ("What a plugin may import")."""
from .api import evaluate_run, load, train
from .errors import CheckpointError, DataError, Img2ImgError, Interrupted, PluginError
from .fields import new_default, option
from .inference.translator import Sampler, Translator
from .model import ImageSpec, Model
from .registry.catalog import ConvertPipeline, Preset, catalog, list_models, list_presets
from .registry.hookspecs import hookimpl
from .training.loggers import Logger
from .training.settings import TrainConfig
from .training.trainer import Trainer

__all__ = [
    "CheckpointError", "ConvertPipeline", "DataError", "ImageSpec", "Img2ImgError", "Interrupted",
    "Logger", "Model", "PluginError", "Preset", "Sampler", "TrainConfig", "Trainer", "Translator",
    "catalog", "evaluate_run", "hookimpl", "list_models", "list_presets", "load", "new_default",
    "option", "train",
]
