"""The plugin API: the hooks a plugin may implement. Each hook receives a `register` callback and
calls it once per thing it adds; a hook only registers (no file, network or CUDA work), because
`img2img --help` imports every installed plugin."""
from __future__ import annotations

import pluggy

PROJECT = "img2img"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register):
    """Call `register(ModelClass)` for each `img2img.Model` subclass the plugin provides."""


@hookspec
def register_presets(register):
    """Call `register(img2img.Preset(...))` for each preset the plugin provides."""


@hookspec
def register_commands(register):
    """Call `register(click_command)` for each top-level `img2img` command the plugin adds."""


@hookspec
def register_prepare_commands(register):
    """Call `register(click_command)` for each `img2img prepare` sub-command (data preparation)."""


@hookspec
def register_loggers(register):
    """Call `register(LoggerClass)` for each `img2img.Logger` subclass (an experiment tracker
    that `--logger NAME` turns on)."""
