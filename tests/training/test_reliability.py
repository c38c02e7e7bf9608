"""What long real runs need: bad settings refused before anything is written, a plugin that
calls sys.exit() isolated, files that vanish mid-run skipped and counted (then a checkpoint and
a clear stop), a full disk reported with the previous checkpoint intact, crash leftovers cleaned,
every step logged once after a resume, Ctrl-C exiting 130, and a kill -9 that leaves no loader
process behind and resumes exactly."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import img2img
from img2img import TrainConfig, Trainer
from img2img.cli import build_cli
from img2img.data import PairedDataset
from img2img.registry.loading import load_plugins
from img2img.runs import checkpoints, folders as runs
from img2img.testing import write_sample_images
from img2img_pix2pix import Pix2Pix

SMALL = dict(load_size=32, crop_size=32, workers=0, device="cpu", log_every=1, sample_every=0,
             seed=2)
OPTIONS = Pix2Pix.Options(generator="unet-32", ngf=8, ndf=8)
FLAGS = ["--generator", "unet-32", "--ngf", "8", "--ndf", "8", "--load-size", "32",
         "--crop-size", "32", "--device", "cpu", "--log-every", "1", "--sample-every", "0"]


@pytest.fixture
def data(tmp_path):
    return write_sample_images("paired", tmp_path / "data", n=6, size=40)["data"]


@pytest.mark.parametrize("flag,value,expected", [
    ("--ngf", "0", "x>=1"), ("--ndf", "-3", "x>=1"), ("--d-layers", "0", "1<=x<=6"),
    ("--d-layers", "9", "1<=x<=6"), ("--lr", "-1", "x>0"), ("--lr", "nan", "> 0"),
    ("--color-jitter", "2", "0<=x<=1"), ("--lambda-l1", "-5", "x>=0"),
    ("--beta1", "1.5", "0<=x<=0.9999"), ("--max-bad-samples", "-1", "x>=0"),
])
def test_out_of_range_settings_are_refused_before_a_run_folder_exists(tmp_path, data, flag,
                                                                      value, expected):
    cli = build_cli(load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"}))
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--data", str(data), "--runs-dir",
                                      str(tmp_path / "runs"), *FLAGS, flag, value])
    assert result.exit_code == 2, result.output
    assert flag in result.stderr and value in result.stderr and expected in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_python_callers_get_the_same_range_checks(tmp_path, data):
    with pytest.raises(img2img.Img2ImgError, match=r"--lambda-l1 -5.0 is out of range"):
        img2img.train("pix2pix", data=data, runs_dir=tmp_path / "runs", lambda_l1=-5.0)
    with pytest.raises(img2img.Img2ImgError, match=r"--lr nan is not a number"):
        TrainConfig(data=data, lr=float("nan"))
    assert not (tmp_path / "runs").exists()


def test_a_plugin_calling_sys_exit_at_import_is_reported_and_skipped(make_plugin):
    ep = make_plugin(source="import sys\nsys.exit(3)\n", dist="img2img-quitter")
    pm = load_plugins(entry_points=[ep], env={})
    [error] = pm.errors()
    assert "failed to import: SystemExit: 3" in error
    assert CliRunner().invoke(build_cli(pm), ["models"]).exit_code == 0


def test_side_by_side_folders_are_announced(tmp_path, caplog):
    folder = write_sample_images("paired", tmp_path / "pairs", n=3, size=16)["data"]
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, path in enumerate(sorted((folder / "a").iterdir())):
        path.rename(flat / f"{i}.png")  # one folder of even-width images
    with caplog.at_level("INFO", logger="img2img"):
        PairedDataset(flat)
    assert "reading 3 image(s) in" in caplog.text and "as side-by-side A|B pairs" in caplog.text


def _config(tmp_path, data, **overrides):
    return TrainConfig(data=data, runs_dir=tmp_path / "runs", **{**SMALL, **overrides})


def test_a_file_vanishing_mid_run_is_skipped_with_one_warning(tmp_path, data, caplog):
    trainer = Trainer(Pix2Pix, OPTIONS, _config(tmp_path, data, max_steps=8, name="v"),
                      progress=False)
    (data / "a" / "002.png").unlink()
    with caplog.at_level("WARNING", logger="img2img"):
        trainer.fit()
    assert trainer.state.step == 8 and len(trainer.skipped) == 1
    assert caplog.text.count("skipped a training image that can no longer be read") == 1
    assert "002.png" in caplog.text


def test_too_many_unreadable_files_stop_with_a_checkpoint_and_the_resume_command(tmp_path,
                                                                                 data):
    trainer = Trainer(Pix2Pix, OPTIONS, _config(tmp_path, data, max_steps=20, name="bad",
                                                max_bad_samples=0, checkpoint_every=0),
                      progress=False)
    (data / "b" / "004.png").write_bytes(b"not a png any more")
    with pytest.raises(img2img.DataError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert message.startswith(f"training stopped at step {trainer.state.step}: ")
    assert "004.png" in message and "--max-bad-samples 0" in message
    assert f"--resume {trainer.run_dir}" in message and caught.value.exit_code == 2
    saved = checkpoints.resolve_checkpoint(trainer.run_dir)
    assert checkpoints.read_metadata(saved)["step"] == trainer.state.step  # nothing lost
    (data / "b" / "004.png").unlink()
    write_sample_images("paired", tmp_path / "again", n=6, size=40)  # the file comes back
    (tmp_path / "again" / "b" / "004.png").rename(data / "b" / "004.png")
    resumed = Trainer.resume(Pix2Pix, trainer.run_dir, max_steps=trainer.state.step + 2,
                             progress=False)
    resumed.fit()
    assert resumed.state.step == trainer.state.step + 2


@pytest.mark.parametrize("how", ["checked before", "raised while writing"])
def test_a_full_disk_names_the_file_and_keeps_the_previous_checkpoint(tmp_path, data,
                                                                      monkeypatch, how):
    trainer = Trainer(Pix2Pix, OPTIONS, _config(tmp_path, data, max_steps=1, name="disk"),
                      progress=False)
    trainer.fit()
    first = checkpoints.resolve_checkpoint(trainer.run_dir)
    if how == "checked before":
        monkeypatch.setattr(checkpoints.shutil, "disk_usage",
                            lambda path: type("U", (), {"free": 1024})())
    else:
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(checkpoints, "save_file", full)
    trainer.state.step = 2
    with pytest.raises(img2img.CheckpointError) as caught:
        trainer.save_checkpoint()
    assert str(caught.value).startswith("no space left on device while writing ")
    assert "step_00000002.safetensors" in str(caught.value)
    assert "the previous checkpoint step_00000001 is intact" in str(caught.value)
    monkeypatch.undo()
    assert checkpoints.resolve_checkpoint(trainer.run_dir) == first
    assert checkpoints.load_weights(first) and checkpoints.load_state(first)["step"] == 1
    assert not list((trainer.run_dir / "checkpoints").glob(".*.tmp"))


def test_resume_logs_every_step_once_and_cleans_leftovers(tmp_path, data):
    trainer = Trainer(Pix2Pix, OPTIONS, _config(tmp_path, data, max_steps=5, name="log",
                                                checkpoint_every=2, keep_checkpoints=0),
                      progress=False)
    trainer.fit()
    folder = trainer.run_dir / "checkpoints"
    (folder / ".step_00000006.safetensors.abcd.tmp").write_bytes(b"")  # a save killed midway
    (folder / "step_00000004.safetensors").unlink()  # pruned weights, its state left over
    resumed = Trainer(Pix2Pix, OPTIONS, _config(tmp_path, data, max_steps=5),
                      resume_from=folder / "step_00000002.safetensors", progress=False)
    assert not (folder / ".step_00000006.safetensors.abcd.tmp").exists()
    assert not (folder / "step_00000004.state.pt").exists()
    resumed.fit()
    steps = [r["step"] for r in runs.read_metrics(trainer.run_dir)]
    assert steps == [1, 2, 3, 4, 5]


def _train_process(tmp_path, data, *extra):
    """`img2img train pix2pix` in its own process: a new small run, or with `--resume` in
    `extra` the run it names (which keeps its own settings)."""
    env = {**os.environ, "IMG2IMG_LOAD_PLUGINS": "img2img", "OMP_NUM_THREADS": "1"}
    settings = [] if "--resume" in extra else ["--data", str(data), *FLAGS]
    command = [sys.executable, "-m", "img2img", "train", "pix2pix",
               "--runs-dir", str(tmp_path / "runs"), *settings, *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _wait_for(path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists(), f"{path} never appeared"


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_then_exits_128_plus_the_signal(tmp_path, data, sent, code):
    """SIGTERM (what SLURM, Kubernetes, Docker and systemd send before they kill) saves a
    checkpoint as Ctrl-C does; a stop that was asked for is said plainly, not as an error."""
    process = _train_process(tmp_path, data, "--name", "int", "--max-steps", "100000",
                             "--epochs", "100000")
    _wait_for(tmp_path / "runs" / "int" / "metrics.jsonl")
    process.send_signal(sent)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert f"stopped by {sent.name}: interrupted at step" in err and "--resume" in err
    assert "Traceback" not in err and "Error:" not in err and "leaked semaphore" not in err
    saved = checkpoints.resolve_checkpoint(tmp_path / "runs" / "int")
    step = checkpoints.read_metadata(saved)["step"]
    assert step >= 1 and f"interrupted at step {step};" in err
    # --resume is exact: the stopped run continued to step + 2 has the weights of a run that
    # was never stopped.
    end = ["--max-steps", str(step + 2)]
    resumed = _train_process(tmp_path, data, "--resume", str(tmp_path / "runs" / "int"), *end)
    straight = _train_process(tmp_path, data, "--name", "straight", "--epochs", "100000", *end)
    for process in (resumed, straight):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    weights = [checkpoints.load_weights(checkpoints.resolve_checkpoint(tmp_path / "runs" / name))
               for name in ("int", "straight")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() \
                else []
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _kill_during_training(process: subprocess.Popen, run: Path, after: int, delay: float
                         ) -> None:
    """Once the run's checkpoint `after` is written, wait `delay` s (into a later step, save or
    pruning: a checkpoint is saved every step) and kill -9; no process it started may survive."""
    latest = run / "checkpoints" / "latest"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (
            not latest.exists() or latest.read_text().strip() < f"step_{after:08d}"):
        time.sleep(0.02)
    time.sleep(delay)
    children = _descendants(process.pid)
    assert children, "the loader workers should be running"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 30  # each polls once a second; a loaded machine is slower
    while any(_running(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [c for c in children if _running(c)] == []


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_kill_9_leaves_no_process_and_resume_finishes_with_each_step_once(tmp_path, data):
    run = tmp_path / "runs" / "crash"
    common = ["--max-steps", "100000", "--epochs", "100000", "--workers", "2",
              "--checkpoint-every", "1", "--keep-checkpoints", "2"]
    process = _train_process(tmp_path, data, "--name", "crash", *common)
    step = 0
    for delay in (0.0, 0.07, 0.2):  # kills land in steps, saves and pruning
        _kill_during_training(process, run, step + 2, delay)
        newest = checkpoints.resolve_checkpoint(run)
        step = checkpoints.read_metadata(newest)["step"]
        assert checkpoints.load_state(newest)["step"] == step  # the newest always loads
        process = _train_process(tmp_path, data, "--resume", str(run), *common)
    process.kill()
    process.wait(timeout=30)
    step = checkpoints.read_metadata(checkpoints.resolve_checkpoint(run))["step"]
    resumed = subprocess.run(
        [sys.executable, "-m", "img2img", "train", "pix2pix", "--resume", str(run),
         "--max-steps", str(step + 3), "--runs-dir", str(tmp_path / "runs")],
        env={**os.environ, "IMG2IMG_LOAD_PLUGINS": "img2img"}, capture_output=True, text=True,
        timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    steps = [r["step"] for r in runs.read_metrics(run)]
    assert steps == list(range(1, step + 4))  # every step logged exactly once
    assert not list(run.rglob(".*.tmp"))
    left = sorted(p.name for p in (run / "checkpoints").iterdir())
    stems = {n.split(".")[0] for n in left if n.startswith("step_")}
    assert all(f"{s}.safetensors" in left and f"{s}.state.pt" in left for s in stems)
    assert json.loads((run / "config.json").read_text())["model"] == "pix2pix"


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo owned > /dev/null",))


def test_a_state_file_with_code_in_it_is_refused_without_torch_advice(tmp_path, save):
    import torch

    run = runs.create_run(tmp_path, "r")
    weights = save(run, 1)
    torch.save({"step": 1, "evil": _Payload()}, checkpoints.state_path(weights))
    with pytest.raises(img2img.CheckpointError) as caught:
        checkpoints.load_state(weights)
    message = str(caught.value)
    assert "is not a valid img2img training-state file and may be unsafe" in message
    assert "weights_only=False" not in message and "weights_only" not in message


def test_crop_size_advice_fits_the_generator():
    from img2img.networks import build_generator

    with pytest.raises(img2img.Img2ImgError) as caught:
        build_generator("resnet-9", 3, 3, ngf=8, norm="instance", dropout=False, size=33)
    assert "use --crop-size 32 or 36" in str(caught.value)
    assert "smaller" not in str(caught.value) and caught.value.exit_code == 2
    with pytest.raises(img2img.Img2ImgError, match=r"or a smaller U-Net"):
        build_generator("unet-256", 3, 3, ngf=8, norm="batch", dropout=False, size=200)


def test_convert_names_an_unreadable_file_once(tmp_path):
    run = img2img.testing.check_model(Pix2Pix, workdir=tmp_path / "work")
    broken = tmp_path / "broken.png"
    broken.write_bytes(os.urandom(300))
    result = CliRunner().invoke(build_cli(), ["convert", str(broken), "--model", str(run),
                                              "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 1
    # one input that fails is one line, its error
    [line] = [l for l in result.stderr.splitlines() if l.lower().startswith("error:")]
    assert line.count(str(broken)) == 1 and "[ WARN" not in result.stderr


def test_pairs_of_different_sizes_are_resized_with_a_warning(tmp_path, caplog):
    import cv2
    import numpy as np

    root = write_sample_images("paired", tmp_path / "pairs", n=3, size=32)["data"]
    cv2.imwrite(str(root / "b" / "001.png"), np.zeros((64, 48, 3), np.uint8))
    with caplog.at_level("WARNING", logger="img2img"):
        dataset = PairedDataset(root)
    assert "1 pair(s) whose a and b images differ in size" in caplog.text
    assert "001.png" in caplog.text and len(dataset) == 3


def test_resume_after_the_data_folder_shrank_continues_with_a_warning(tmp_path, data, caplog):
    """Found by the soak test: a deleted file made the saved epoch position run past the end."""
    trainer = Trainer(Pix2Pix, OPTIONS, _config(tmp_path, data, max_steps=2, batch_size=2,
                                                name="shrink", checkpoint_every=0),
                      progress=False)
    trainer.fit()  # 6 images, batch 2: stopped 4 images into the epoch
    for name in ("003.png", "004.png", "005.png"):  # 3 left: the position is past the end
        (data / "a" / name).unlink()
        (data / "b" / name).unlink()
    with caplog.at_level("WARNING", logger="img2img"):
        resumed = Trainer.resume(Pix2Pix, trainer.run_dir, max_steps=4, progress=False)
        resumed.fit()
    assert resumed.state.step == 4
    assert "the training data has 3 items now, 6 when" in caplog.text
