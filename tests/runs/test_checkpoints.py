"""Checkpoints: the self-describing round trip, atomic writes and the latest pointer, pruning,
`RUN:best`, and clear errors for bad or foreign files."""
from __future__ import annotations

import pytest
import torch

from img2img import CheckpointError
from img2img.runs import checkpoints, folders as runs


def test_checkpoint_round_trip_is_self_describing(tmp_path, save):
    run_dir = runs.create_run(tmp_path, "r")
    weights = save(run_dir, 7, value=1.5)
    assert checkpoints.resolve_checkpoint(run_dir) == weights
    assert checkpoints.read_metadata(weights) == {"model": "demo", "step": 7}
    assert checkpoints.load_weights(weights)["generators.a_to_b.weight"].eq(1.5).all()
    state = checkpoints.load_state(weights)  # weights_only=True inside
    assert state["step"] == 7


@pytest.mark.parametrize("fail_in", ["weights", "state"])
def test_crash_while_writing_keeps_the_previous_latest(tmp_path, monkeypatch, fail_in,
                                                       save):
    run_dir = runs.create_run(tmp_path, "r")
    good = save(run_dir, 1, value=1.0)

    def crash_midway(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    if fail_in == "weights":
        monkeypatch.setattr(checkpoints, "save_file", crash_midway)
    else:
        monkeypatch.setattr(checkpoints.torch, "save", crash_midway)
    with pytest.raises(OSError):
        save(run_dir, 2, value=2.0)
    monkeypatch.undo()

    latest = checkpoints.resolve_checkpoint(run_dir)
    assert latest == good
    assert checkpoints.load_weights(latest)["generators.a_to_b.weight"].eq(1.0).all()
    assert checkpoints.load_state(latest)["step"] == 1
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert sorted(leftovers) == ["latest", "step_00000001.safetensors", "step_00000001.state.pt"]


def test_keep_prunes_old_checkpoints(tmp_path, save):
    run_dir = runs.create_run(tmp_path, "r")
    for step in range(1, 5):
        save(run_dir, step, keep=2)
    assert checkpoints.list_checkpoints(run_dir / "checkpoints") == ["step_00000003", "step_00000004"]


@pytest.mark.parametrize("ref", ["missing", "empty-run"])
def test_bad_references_give_clear_errors(tmp_path, ref):
    if ref == "empty-run":
        runs.create_run(tmp_path, ref)
    with pytest.raises(CheckpointError, match=ref):
        checkpoints.resolve_checkpoint(tmp_path / ref)


def test_corrupt_or_foreign_weights_are_reported(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        checkpoints.read_metadata(bad)
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign))
    with pytest.raises(CheckpointError, match="not an img2img checkpoint"):
        checkpoints.read_metadata(foreign)
    with pytest.raises(CheckpointError, match="cannot resume"):
        checkpoints.load_state(foreign)


def test_best_checkpoint_is_addressed_as_run_colon_best(tmp_path, save):
    run_dir = runs.create_run(tmp_path, "r")
    with pytest.raises(CheckpointError, match="--eval-every"):
        checkpoints.resolve_checkpoint(f"{run_dir}:best")
    good = save(run_dir, 1, value=3.0)
    checkpoints.save_best(good)
    save(run_dir, 2, value=4.0, keep=1)  # pruning never removes the best copy
    best = checkpoints.resolve_checkpoint(f"{run_dir}:best")
    assert best.name == "best.safetensors"
    assert checkpoints.load_weights(best)["generators.a_to_b.weight"].eq(3.0).all()
    assert checkpoints.resolve_checkpoint(run_dir).name == "step_00000002.safetensors"
