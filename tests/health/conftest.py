"""The `write_run` fixture: a synthetic run folder (config.json and metrics.jsonl) that trained
well, with a failure injected where a test asks for one. The records come from health_runs."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

import pytest

from health_runs import RECORDS, healthy_record


@pytest.fixture
def write_run(tmp_path: Path) -> Callable[..., Path]:
    """`write_run(change=None, config=None, name="run", records=RECORDS)` -> a run folder whose
    records are healthy, each passed through `change(index, record)` when given (which edits
    it in place)."""
    def write(change: Callable[[int, dict], None] | None = None,
              config: dict | None = None, name: str = "run", records: int = RECORDS) -> Path:
        run = tmp_path / name
        run.mkdir()
        settings = {"model": "pix2pix", "options": {"lambda_l1": 100.0, "spectral_norm": False},
                    "training": {"lr": 2e-4, "lr_d": None, "gan_loss": "vanilla",
                                 "diff_augment": "none", "precision": "auto"}}
        (run / "config.json").write_text(json.dumps(config or settings))
        rng = random.Random(0)
        lines = []
        for index in range(records):
            record = healthy_record(index, rng)
            if change is not None:
                change(index, record)
            lines.append(json.dumps(record))
        (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
        return run
    return write
