"""img2img: a plugin-based image-to-image GAN toolkit. This module is the public API for users
and plugin authors: train and evaluate runs (`train`, `evaluate_run`), load them (`load`), see
what is installed (`catalog`, `list_models`, `list_presets`), and the contract a plugin
implements (`Model`, `Preset`, `ConvertPipeline`, `Logger`, `hookimpl`). The `img2img` command
line is built on these."""
from .api import evaluate_run, train
from .registry.catalog import ConvertPipeline, Preset, catalog, list_models, list_presets
from .errors import CheckpointError, DataError, Img2ImgError, Interrupted, PluginError
from .registry.hookspecs import hookimpl
from .inference.translator import Sampler, Translator, load
from .training.loggers import Logger
from .model import ImageSpec, Model
from .training.trainer import TrainConfig, Trainer

__all__ = [
    "CheckpointError", "ConvertPipeline", "DataError", "ImageSpec", "Img2ImgError", "Interrupted",
    "Logger", "Model",
    "PluginError", "Preset", "Sampler", "TrainConfig", "Trainer", "Translator", "catalog",
    "evaluate_run", "hookimpl", "list_models", "list_presets", "load", "train",
]
