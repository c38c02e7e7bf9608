"""The names under which training health reaches `metrics.jsonl`. The trainer writes these keys
and the verdict reads them, so both import them from here and a rename cannot split them."""
from __future__ import annotations

PREFIX = "health/"

# Cumulative counts since the run began (they survive resume and rollback through checkpoints).
SKIPPED = "health/skipped"      # steps skipped because a loss or gradient was not finite
ROLLBACKS = "health/rollbacks"  # rollbacks to the last healthy checkpoint after divergence

# Means over the log interval of the discriminator's decisions (see `signals.SignalMeter`).
D_ACC_REAL = "health/d_acc_real"  # fraction of real logits on the "real" side of the threshold
D_ACC_FAKE = "health/d_acc_fake"  # fraction of fake logits on the "fake" side
R_T = "health/r_t"                # E[sign(D(real) - threshold)], StyleGAN2-ADA's overfitting sign

# Output diversity on the fixed sample batch, written at --sample-every. A model with several
# directions may write one value each as "health/diversity.<direction>"; the verdict judges each.
DIVERSITY = "health/diversity"

ADA_P = "health/ada_p"  # the adaptive augmentation probability in force at the log step

# The loss and gradient-norm prefixes the trainer already writes, watched for divergence.
LOSS_PREFIXES = ("g/", "d/")
GRAD_PREFIX = "grad/"
