"""Errors a user can act on. The CLI prints them as one line on stderr (no traceback unless
`--debug`) and exits with the error's exit code; everything else is a bug and keeps its traceback."""
from __future__ import annotations


class Img2ImgError(Exception):
    """A problem with the user's input or setup, explained in the message."""

    exit_code = 1


class Interrupted(Img2ImgError):
    """Training stopped by Ctrl-C after saving a checkpoint (exit code 130, as shells use)."""

    exit_code = 130


class DataError(Img2ImgError):
    """A data folder is missing, empty, laid out wrongly, or holds no readable image."""

    exit_code = 2


class PluginError(Img2ImgError):
    """A plugin could not be loaded or registered something invalid."""


class CheckpointError(Img2ImgError):
    """A run folder or checkpoint is missing, incomplete or not readable."""


class SettingsError(Img2ImgError):
    """A setting that is unknown or outside its valid range (a usage error: exit code 2)."""

    exit_code = 2
