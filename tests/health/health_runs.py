"""Synthetic training logs for the health tests, shaped like the trainer's: loss terms,
gradient norms and health/* signals every log step, diversity at sample steps."""
from __future__ import annotations

import random
from typing import Any

EVERY = 50      # --log-every of the synthetic runs
RECORDS = 40


def healthy_record(index: int, rng: random.Random) -> dict[str, Any]:
    """The record logged at step (index + 1) x EVERY by a pix2pix run that trains well."""
    def noisy(centre: float, spread: float) -> float:
        return round(centre * (1 + rng.uniform(-spread, spread)), 5)

    record = {"step": (index + 1) * EVERY, "epoch": 1 + index // 10, "lr": 2e-4,
              "time": round(index * 1.5, 3),
              "g/gan": noisy(0.9, 0.2), "g/l1": noisy(8.0, 0.3),
              "d/real": noisy(0.3, 0.2), "d/fake": noisy(0.3, 0.2),
              "grad/g.a_to_b": noisy(3.0, 0.6), "grad/d.b": noisy(1.0, 0.6),
              "health/d_acc_real": noisy(0.7, 0.1), "health/d_acc_fake": noisy(0.65, 0.1),
              "health/r_t": noisy(0.4, 0.3), "health/skipped": 0, "health/rollbacks": 0}
    if (index + 1) % 10 == 0:  # --sample-every 500
        record["health/diversity"] = noisy(0.8, 0.2)
    return record
