"""Training health: the signals that show a GAN collapsing or diverging (`signals`), the guards
the trainer acts through (`guard` skips non-finite steps, `divergence` decides rollbacks, `ada`
adapts the discriminator's augmentation), and the verdict on a finished run (`verdict`,
`render`). It depends on no trainer or run-folder module; the trainer wires it in."""
from __future__ import annotations

from .divergence import OK, ROLLBACK, STOP, Decision, DivergenceMonitor
from .guard import NonFiniteSteps, StepGuard
from .keys import ADA_P, D_ACC_FAKE, D_ACC_REAL, DIVERSITY, R_T, ROLLBACKS, SKIPPED
from .render import render_html, render_text
from .signals import SignalMeter, decisions, diversity, output_spread, real_sign
from .verdict import Finding, Verdict, judge, judge_run, read_run

__all__ = [
    "ADA_P", "D_ACC_FAKE", "D_ACC_REAL", "DIVERSITY", "OK", "R_T", "ROLLBACK", "ROLLBACKS",
    "SKIPPED", "STOP", "Decision", "DivergenceMonitor", "Finding",
    "NonFiniteSteps", "SignalMeter", "StepGuard", "Verdict",
    "decisions", "diversity", "judge", "judge_run", "output_spread", "read_run", "real_sign",
    "render_html", "render_text",
]
