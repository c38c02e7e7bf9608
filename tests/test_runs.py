"""Run folders and checkpoints: atomic writes, the latest pointer, lookup of runs."""
from __future__ import annotations

import json
import time

import pytest
import torch

from img2img import CheckpointError
from img2img import runs


def _save(run_dir, step, value=0.0, keep=0):
    tensors = {"generators.a_to_b.weight": torch.full((2, 2), float(value))}
    state = {"step": step, "rng": torch.get_rng_state()}
    return runs.save_checkpoint(run_dir, step, tensors, {"model": "demo", "step": step},
                                state, keep=keep)


def test_checkpoint_round_trip_is_self_describing(tmp_path):
    run_dir = runs.create_run(tmp_path, "r")
    weights = _save(run_dir, 7, value=1.5)
    assert runs.resolve_checkpoint(run_dir) == weights
    assert runs.read_metadata(weights) == {"model": "demo", "step": 7}
    assert runs.load_weights(weights)["generators.a_to_b.weight"].eq(1.5).all()
    state = runs.load_state(weights)  # weights_only=True inside
    assert state["step"] == 7


@pytest.mark.parametrize("fail_in", ["weights", "state"])
def test_crash_while_writing_keeps_the_previous_latest(tmp_path, monkeypatch, fail_in):
    run_dir = runs.create_run(tmp_path, "r")
    good = _save(run_dir, 1, value=1.0)

    def crash_midway(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    if fail_in == "weights":
        monkeypatch.setattr(runs, "save_file", crash_midway)
    else:
        monkeypatch.setattr(runs.torch, "save", crash_midway)
    with pytest.raises(OSError):
        _save(run_dir, 2, value=2.0)
    monkeypatch.undo()

    latest = runs.resolve_checkpoint(run_dir)
    assert latest == good
    assert runs.load_weights(latest)["generators.a_to_b.weight"].eq(1.0).all()
    assert runs.load_state(latest)["step"] == 1
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert sorted(leftovers) == ["latest", "step_00000001.safetensors", "step_00000001.state.pt"]


def test_keep_prunes_old_checkpoints(tmp_path):
    run_dir = runs.create_run(tmp_path, "r")
    for step in range(1, 5):
        _save(run_dir, step, keep=2)
    assert runs.list_checkpoints(run_dir / "checkpoints") == ["step_00000003", "step_00000004"]


def test_create_run_never_reuses_a_folder(tmp_path):
    first = runs.create_run(tmp_path, "same")
    second = runs.create_run(tmp_path, "same")
    assert first != second and second.name == "same-2"


def test_newest_run_and_latest(tmp_path):
    old = runs.create_run(tmp_path, "old")
    runs.write_config(old, {"model": "pix2pix"})
    _save(old, 1)
    time.sleep(0.02)
    new = runs.create_run(tmp_path, "new")
    runs.write_config(new, {"model": "cyclegan"})
    _save(new, 1)
    assert runs.newest_run(tmp_path) == new
    assert runs.newest_run(tmp_path, model="pix2pix") == old
    assert runs.resolve_checkpoint("latest", tmp_path).parent.parent == new
    with pytest.raises(CheckpointError, match="no trained 'cgan' run"):
        runs.newest_run(tmp_path, model="cgan")


@pytest.mark.parametrize("ref", ["missing", "empty-run"])
def test_bad_references_give_clear_errors(tmp_path, ref):
    if ref == "empty-run":
        runs.create_run(tmp_path, ref)
    with pytest.raises(CheckpointError, match=ref):
        runs.resolve_checkpoint(tmp_path / ref)


def test_corrupt_or_foreign_weights_are_reported(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        runs.read_metadata(bad)
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign))
    with pytest.raises(CheckpointError, match="not an img2img checkpoint"):
        runs.read_metadata(foreign)
    with pytest.raises(CheckpointError, match="cannot resume"):
        runs.load_state(foreign)


def test_config_json_is_readable(tmp_path):
    run_dir = runs.create_run(tmp_path, "r")
    runs.write_config(run_dir, {"model": "x", "path": tmp_path})
    assert json.loads((run_dir / "config.json").read_text())["path"] == str(tmp_path)
    (run_dir / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        runs.read_config(run_dir)


def test_best_checkpoint_is_addressed_as_run_colon_best(tmp_path):
    run_dir = runs.create_run(tmp_path, "r")
    with pytest.raises(CheckpointError, match="--eval-every"):
        runs.resolve_checkpoint(f"{run_dir}:best")
    good = _save(run_dir, 1, value=3.0)
    runs.save_best(good)
    _save(run_dir, 2, value=4.0, keep=1)  # pruning never removes the best copy
    best = runs.resolve_checkpoint(f"{run_dir}:best")
    assert best.name == "best.safetensors"
    assert runs.load_weights(best)["generators.a_to_b.weight"].eq(3.0).all()
    assert runs.resolve_checkpoint(run_dir).name == "step_00000002.safetensors"


def test_tensorboard_logger_needs_the_package_or_writes_events(tmp_path):
    run_dir = runs.create_run(tmp_path, "tb")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        from img2img import Img2ImgError

        with pytest.raises(Img2ImgError, match="pip install tensorboard"):
            runs.MetricsLog(run_dir, tensorboard=True)
        return
    log = runs.MetricsLog(run_dir, tensorboard=True)
    log.write({"step": 1, "g/l1": 0.5})
    assert list((run_dir / "tensorboard").iterdir())
    assert runs.read_metrics(run_dir) == [{"step": 1, "g/l1": 0.5}]
