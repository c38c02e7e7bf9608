"""What plugins provide and how it is found: the hook specifications (`hookspecs`), loading the
entry points with each plugin's failures kept to itself (`loading`), and the validated, cached
catalog of models, presets, commands and loggers (`catalog`). A plugin's tests load plugins
strictly with `load_plugins(strict=True)`."""
from .loading import load_plugins

__all__ = ["load_plugins"]
