"""Run folders: never reused, config.json, newest-run lookup, atomic writes (the metrics log
and the trackers are tests/training/test_loggers.py)."""
from __future__ import annotations

import json
import time

import pytest

from img2img import CheckpointError
from img2img.data.atomic import write_text
from img2img.runs import checkpoints, folders as runs


def test_create_run_never_reuses_a_folder(tmp_path):
    first = runs.create_run(tmp_path, "same")
    second = runs.create_run(tmp_path, "same")
    assert first != second and second.name == "same-2"


def test_newest_run_and_latest(tmp_path, save):
    old = runs.create_run(tmp_path, "old")
    runs.write_config(old, {"model": "pix2pix"})
    save(old, 1)
    time.sleep(0.02)
    new = runs.create_run(tmp_path, "new")
    runs.write_config(new, {"model": "cyclegan"})
    save(new, 1)
    assert runs.newest_run(tmp_path) == new
    assert runs.newest_run(tmp_path, model="pix2pix") == old
    assert checkpoints.resolve_checkpoint("latest", tmp_path).parent.parent == new
    with pytest.raises(CheckpointError, match="no trained 'cgan' run"):
        runs.newest_run(tmp_path, model="cgan")


def test_config_json_is_readable(tmp_path):
    run_dir = runs.create_run(tmp_path, "r")
    runs.write_config(run_dir, {"model": "x", "path": tmp_path})
    assert json.loads((run_dir / "config.json").read_text())["path"] == str(tmp_path)
    (run_dir / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        runs.read_config(run_dir)


def test_written_files_follow_the_umask_like_open_does(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "shared.json", "{}")
        assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_text(tmp_path / "private.json", "{}")
        assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)
