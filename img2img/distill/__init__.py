"""Distillation: a smaller student generator per direction of a teacher run that translates like
it (`img2img distill`). `Distillation` is the model the shared trainer trains (a core model, not
a plugin's: its runs load by the name `distill` like any run), `distill` the function behind the
command, `CORE_MODELS` the models the core itself provides, by name."""
from .model import Distillation, Options
from .run import RECORD, distill, summary

CORE_MODELS = {Distillation.name: Distillation}

__all__ = ["CORE_MODELS", "Distillation", "Options", "RECORD", "distill", "summary"]
