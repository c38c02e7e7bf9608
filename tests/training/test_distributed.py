"""Training and converting on several processes with torchrun and gloo on loopback: the same
weights as one process with the whole batch, disjoint shards, only rank 0 writes, a lost process
ends the others with a clear message and the run resumes exactly, two "nodes", sharded convert.
Each test launches real processes (a few seconds each at 32 px)."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import img2img
from img2img import TrainConfig, Trainer
from img2img.data import SeededSampler
from img2img.runs import checkpoints, folders as runs
from img2img.testing import write_sample_images
from img2img.training import distributed
from img2img_cyclegan import CycleGAN
from img2img_pix2pix import Pix2Pix

SMALL = ["--ngf", "8", "--ndf", "8", "--load-size", "32", "--crop-size", "32", "--workers", "0",
         "--device", "cpu", "--log-every", "1", "--sample-every", "0", "--seed", "5"]
MODELS = {  # dropout off and per-image norms, so a batch of 2 equals two batches of 1
    "pix2pix": (Pix2Pix, ["--generator", "unet-32", "--norm", "instance", "--no-dropout"],
                dict(generator="unet-32", norm="instance", dropout=False)),
    "cyclegan": (CycleGAN, ["--generator", "resnet-6", "--pool-size", "0"],
                 dict(generator="resnet-6", pool_size=0)),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict[str, str]:
    return {**os.environ, "IMG2IMG_LOAD_PLUGINS": "img2img", "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1"}


def torchrun(args: list[str], nproc: int = 2, *extra: str, timeout: float = 180
             ) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               *extra, "-m", "img2img", *args]
    if not extra:
        command[5:5] = ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=environment())


def run_together(commands: list[list[str]], logs: Path, timeout: float
                 ) -> list[tuple[str, str]]:
    """Start the commands at once (each in its own session, output to files under `logs`, so
    no unread pipe can stall one) and wait for all; each must exit 0. On a timeout every
    process tree is killed and the failure shows what each one printed."""
    logs.mkdir()
    files = [(logs / f"{i}.out", logs / f"{i}.err") for i in range(len(commands))]
    # torchrun's agents log where they wait; a hung process prints its stacks when aborted.
    env = {**environment(), "LOGLEVEL": "INFO", "PYTHONFAULTHANDLER": "1"}
    procs = []
    for command, (out, err) in zip(commands, files):
        with out.open("w") as stdout, err.open("w") as stderr:
            procs.append(subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr,
                                          start_new_session=True))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)
    hung = [i for i, p in enumerate(procs) if p.poll() is None]
    for i in hung:  # SIGABRT first: faulthandler prints every Python thread's stack
        with contextlib.suppress(ProcessLookupError):
            os.killpg(procs[i].pid, signal.SIGABRT)
    time.sleep(2 if hung else 0)
    for i in hung:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(procs[i].pid, signal.SIGKILL)
        procs[i].wait()
    outputs = [(out.read_text(), err.read_text()) for out, err in files]
    report = []
    for i, (proc, (out, err)) in enumerate(zip(procs, outputs)):
        state = f"still running after {timeout:.0f} s, killed" if i in hung else \
            f"exit {proc.returncode}"
        report.append(f"--- command {i} ({state})\nstdout:\n{out}\nstderr:\n{err}")
    assert not hung and all(p.returncode == 0 for p in procs), "\n".join(report)
    return outputs


def net_inputs(net) -> int:
    return next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


# Kernels as an AVX2-only CPU runs them, wherever the test runs: oneDNN and ATen's vectorised
# code both take a ceiling on the instruction set.
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.parametrize(("name", "isa"), [("pix2pix", {}), ("cyclegan", {}),
                                           ("cyclegan", AVX2)], ids=["pix2pix", "cyclegan",
                                                                     "cyclegan-avx2"])
def test_two_processes_of_batch_one_equal_one_process_of_batch_two(tmp_path, monkeypatch, name,
                                                                   isa):
    for variable, value in isa.items():
        monkeypatch.setenv(variable, value)
    model_cls, flags, chosen = MODELS[name]
    folders = write_sample_images(model_cls.data, tmp_path / "data", n=4, size=40)
    data = [a for k, v in folders.items() for a in (f"--{k}", str(v))]
    result = torchrun(["train", name, *data, *flags, *SMALL, "--max-steps", "3",
                       "--batch-size", "1", "--runs-dir", str(tmp_path / "runs"), "--name", "two"])
    assert result.returncode == 0, result.stderr
    alone = subprocess.run([sys.executable, "-m", "img2img", "train", name, *data, *flags,
                            *SMALL, "--max-steps", "3", "--batch-size", "2", "--runs-dir",
                            str(tmp_path / "runs"), "--name", "one"],
                           capture_output=True, text=True, timeout=180, env=environment())
    assert alone.returncode == 0, alone.stderr
    # The gradients of the first step, averaged over the processes, against the one process's:
    # the same weights and images, only the order of float32 sums differs (~1e-6 relative).
    # A sum instead of a mean doubles them; one rank's gradients dropped changes them.
    logged = {run: [r for r in runs.read_metrics(tmp_path / "runs" / run)
                    if "grad/g.a_to_b" in r] for run in ("two", "one")}
    assert [r["step"] for r in logged["two"]] == [r["step"] for r in logged["one"]] == [1, 2, 3]
    first_two, first_one = logged["two"][0], logged["one"][0]
    norms = {k for k in first_one if k.startswith("grad/")}
    assert norms == {k for k in first_two if k.startswith("grad/")} and len(norms) >= 2
    for key in norms:
        assert first_two[key] == pytest.approx(first_one[key], rel=1e-4), key
    two, one = (checkpoints.model_from_checkpoint(model_cls, checkpoints.resolve_checkpoint(
        tmp_path / "runs" / run)) for run in ("two", "one"))
    # Outputs, not raw weights: a conv bias just before instance norm gets a gradient that is
    # rounding noise, which Adam scales up to full steps; it cannot change any output.
    probe = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        for nets in ("generators", "discriminators"):
            for key, net in getattr(one, nets).items():
                seen = torch.cat([probe, probe], 1) if net_inputs(net) == 6 else probe
                want, got = net(seen), getattr(two, nets)[key](seen)
                # Adam divides each gradient element by its own size, so an element whose
                # gradient is rounding noise (which differs with the CPU's kernels) still moves
                # by up to the learning rate per step, either way: outputs differ by up to
                # 2.7e-3 with AVX2 kernels and 2e-6 with AVX-512 ones after these 3 steps,
                # while training moved them by 0.08-0.19.
                assert (want - got).abs().max() < 1e-2, (nets, key)
    start = Trainer(model_cls, model_cls.Options(**chosen, ngf=8, ndf=8),
                    TrainConfig(**folders, **model_cls.training_defaults, load_size=32,
                                crop_size=32, workers=0, device="cpu", seed=5,
                                runs_dir=tmp_path / "runs", name="start"), progress=False)
    with torch.no_grad():
        moved = (start.model.generators.eval()[one.directions[0]](probe) -
                 one.translate(probe)).abs().max()
    assert moved > 1e-3  # it really trained
    config = json.loads((tmp_path / "runs" / "two" / "config.json").read_text())
    assert config["processes"] == {"world_size": 2, "global_batch": 2}


def test_each_rank_reads_a_disjoint_share_and_together_the_whole_epoch():
    for length, world, batch in ((10, 2, 1), (11, 3, 2), (16, 4, 2)):
        shares = []
        for rank in range(world):
            sampler = SeededSampler(length, seed=3, rank=rank, world=world, batch_size=batch)
            sampler.set_epoch(1)
            shares.append([index for index, _ in sampler])
            assert len(shares[-1]) == len(sampler)
        flat = [i for share in shares for i in share]
        assert len(flat) == len(set(flat))  # no image twice in an epoch
        step = world * batch
        assert len(flat) == length // step * step  # only the last uneven step is left out
        alone = SeededSampler(length, seed=3)
        alone.set_epoch(1)
        whole = dict(alone)
        for rank, share in enumerate(shares):
            sampler = SeededSampler(length, seed=3, rank=rank, world=world, batch_size=batch)
            sampler.set_epoch(1)
            assert all(whole[i] == seed for i, seed in sampler)  # same augmentation seeds
        resumed = SeededSampler(length, seed=3, rank=1, world=world, batch_size=batch)
        resumed.set_epoch(1, skip=step)
        assert [i for i, _ in resumed] == shares[1][batch:]


def _launch_rank(rank: int, port: int, args: list[str], log: Path) -> subprocess.Popen:
    env = {**environment(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
           "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    return subprocess.Popen([sys.executable, "-m", "img2img", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))


def test_a_lost_rank_ends_the_other_with_a_clear_message_and_resume_is_exact(tmp_path):
    flags = MODELS["pix2pix"][1]
    data = write_sample_images("paired", tmp_path / "data", n=4, size=40)["data"]
    # DiffAugment draws random numbers on each rank: each rank's own stream must resume too.
    common = ["train", "pix2pix", "--data", str(data), *flags, *SMALL, "--dist-timeout", "30",
              "--runs-dir", str(tmp_path / "runs"), "--checkpoint-every", "1",
              "--diff-augment", "translation,cutout"]
    straight = torchrun([*common, "--max-steps", "6", "--name", "straight"])
    assert straight.returncode == 0, straight.stderr
    port = free_port()
    logs = [tmp_path / f"rank{r}.log" for r in (0, 1)]
    ranks = [_launch_rank(r, port, [*common, "--max-steps", "100000", "--epochs", "100000",
                                    "--name", "cut"], log)
             for r, log in zip((0, 1), logs)]
    # The latest pointer, not a step file: older checkpoints are pruned as the run goes on.
    latest = tmp_path / "runs" / "cut" / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
            not latest.exists() or latest.read_text().strip() < "step_00000002"):
        time.sleep(0.05)
    assert latest.exists() and ranks[0].poll() is None, logs[0].read_text()
    ranks[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    code = ranks[0].wait(timeout=60)
    assert time.monotonic() - killed_at < 45  # within the collective timeout (30 s), no hang
    message = logs[0].read_text()
    assert code == 1 and "another process of this distributed run failed" in message, message
    assert "Traceback" not in message
    # The newest checkpoint loads alone; resuming on 2 processes continues exactly.
    newest = checkpoints.resolve_checkpoint(tmp_path / "runs" / "cut")
    assert checkpoints.read_metadata(newest)["step"] >= 2
    resumed = torchrun(["train", "pix2pix", "--resume", str(newest), "--max-steps", "6",
                        "--runs-dir", str(tmp_path / "runs")])
    assert resumed.returncode == 0, resumed.stderr
    got = checkpoints.load_weights(checkpoints.resolve_checkpoint(tmp_path / "runs" / "cut"))
    want = checkpoints.load_weights(checkpoints.resolve_checkpoint(tmp_path / "runs" /
                                                                   "straight"))
    assert max(float((got[k] - want[k]).abs().max()) for k in want) < 1e-6
    # Another process count is refused: the global batch and the shares depend on it.
    other = torchrun(["train", "pix2pix", "--resume", str(tmp_path / "runs" / "cut"),
                      "--max-steps", "7",
                      "--runs-dir", str(tmp_path / "runs")], nproc=1)
    assert other.returncode == 1 and "trained on 2 process(es)" in other.stderr


def test_only_rank_zero_writes_and_two_nodes_on_loopback_train(tmp_path):
    data = write_sample_images("paired", tmp_path / "data", n=4, size=40)["data"]
    port = free_port()
    args = ["train", "pix2pix", "--data", str(data), *MODELS["pix2pix"][1], *SMALL,
            "--max-steps", "2", "--runs-dir", str(tmp_path / "runs"), "--name", "nodes"]
    outputs = run_together([
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
         "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
         "-m", "img2img", *args] for node in (0, 1)], tmp_path / "nodes", timeout=180)
    assert outputs[0][0].strip() == str(tmp_path / "runs" / "nodes")
    assert outputs[1][0].strip() == "" and "step 2" not in outputs[1][1]  # rank 1 is quiet
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["nodes"]
    assert sorted(p.name for p in (tmp_path / "runs" / "nodes" / "checkpoints").iterdir()) == [
        "latest", "step_00000002.safetensors", "step_00000002.state.pt"]
    records = [json.loads(line) for line in
               (tmp_path / "runs" / "nodes" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]  # one log, not one per rank
    translator = img2img.load(tmp_path / "runs" / "nodes", device="cpu")  # one process loads it
    assert translator.name == "pix2pix"


LEFT_THREADS = """
import os, sys, torch
from img2img.training import distributed
processes = distributed.from_environment()
distributed.start(processes, torch.device("cpu"), 60)
torch.optim.Adam([torch.nn.Parameter(torch.ones(1))])  # imports torch._dynamo, as the trainer does
distributed.stop()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
left = sorted(n for n in names if "gloo" in n)
with open(os.path.join(sys.argv[1], f"rank{processes.rank}.txt"), "w") as out:
    out.write(repr(left))  # one file per rank: their printed lines could interleave
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads threads from Linux /proc")
def test_stop_leaves_no_gloo_threads_for_interpreter_exit(tmp_path):
    """After `stop()` the process group is gone with its threads, even where torch._dynamo was
    imported after the group existed (torch.distributed.nn.functional then kept it in its default
    arguments, and its threads were torn down at interpreter exit, where a finished rank could
    abort: "terminate called without an active exception")."""
    script = tmp_path / "left_threads.py"
    script.write_text(LEFT_THREADS)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                             "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                             str(script), str(tmp_path)], capture_output=True, text=True,
                            timeout=180, env=environment())
    assert result.returncode == 0, result.stderr
    assert [(tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)] == ["[]", "[]"]


def test_distributed_convert_writes_each_output_once(tmp_path):
    run = img2img.testing.check_model(Pix2Pix, workdir=tmp_path / "work")
    images = write_sample_images("images", tmp_path / "in", n=10, size=36)["data"]
    result = torchrun(["convert", str(images), "-o", str(tmp_path / "out"), "--model", str(run),
                       "--device", "cpu"])
    assert result.returncode == 0, result.stderr
    written = result.stdout.split()
    assert len(written) == 10 and len(set(written)) == 10
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        sorted(p.name for p in images.iterdir())
    assert result.stderr.count("Converted 10 image(s)") == 1


def test_sync_batch_norm_is_refused_without_cuda(tmp_path):
    folders = write_sample_images("paired", tmp_path / "data", n=2, size=40)
    config = TrainConfig(**folders, load_size=32, crop_size=32, workers=0, device="cpu",
                         sync_batch_norm=True, runs_dir=tmp_path / "runs")
    with pytest.raises(img2img.Img2ImgError, match="--sync-batch-norm needs CUDA GPUs"):
        Trainer(Pix2Pix, Pix2Pix.Options(generator="unet-32", ngf=8, ndf=8), config)
    assert not (tmp_path / "runs").exists()  # refused before anything was written


class _Recorder:
    """Stands in for torch.distributed in one process: records every all-reduce."""

    class Work:
        def wait(self):
            return True

    def __init__(self):
        self.calls = []

    def all_reduce(self, tensor, op=None, async_op=False):
        self.calls.append({"device": tensor.device.type, "async": async_op,
                           "value": int(tensor.flatten()[0])})
        return self.Work() if async_op else None


def test_the_stop_vote_never_waits_within_a_step_and_every_rank_reads_it_a_step_later(
        monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(torch.distributed, "all_reduce", recorder.all_reduce)
    vote = distributed.StopVote()
    assert [vote.poll(flag) for flag in (False, True, False)] == [0, 0, 1]
    assert vote.finish() == 0 and vote.finish() == 0  # nothing left in flight
    # A CPU tensor (gloo): reading it is no device synchronisation; sent without waiting.
    assert recorder.calls == [{"device": "cpu", "async": True, "value": v} for v in (0, 1, 0)]


def test_a_distributed_step_sends_one_vote_and_ctrl_c_stops_one_step_later(tmp_path,
                                                                           monkeypatch):
    """The trainer as rank 0 of 2 (collectives stood in for): the stop flag costs one
    asynchronous CPU all-reduce per step (it was a blocking one on the training device, read
    back with .item(): a host synchronisation every step on a GPU). Beside it, the step guard's
    finiteness flags are agreed on (MIN) on the training device, so every process applies a
    step or none does."""
    recorder = _Recorder()
    monkeypatch.setattr(torch.distributed, "all_reduce", recorder.all_reduce)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("start", "stop", "prepare_model"):
        monkeypatch.setattr(distributed, name, lambda *args, **kwargs: None)
    monkeypatch.setattr(distributed, "broadcast_object", lambda value: value)
    monkeypatch.setattr(distributed, "average_gradients", lambda *args: None)
    monkeypatch.setattr(distributed, "mean", lambda values, world: values)
    folders = write_sample_images("paired", tmp_path / "data", n=8, size=40)
    trainer = Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options),
                      TrainConfig(**folders, load_size=32, crop_size=32, workers=0,
                                  device="cpu", batch_size=1, log_every=1, sample_every=0,
                                  max_steps=6, runs_dir=tmp_path / "runs"), progress=False)
    step = trainer.train_step

    def train_step(batch):
        if trainer.state.step == 1:  # Ctrl-C during the second step
            os.kill(os.getpid(), signal.SIGINT)
        return step(batch)

    monkeypatch.setattr(trainer, "train_step", train_step)
    trainer.fit()
    assert trainer.state.step == 3 and trainer.interrupted  # every rank stops after step 3
    votes = [c for c in recorder.calls if c["async"]]
    # Each vote is the signal that stopped the rank (SIGINT, 2), so every rank exits with it.
    assert votes == [{"device": "cpu", "async": True, "value": v} for v in (0, 2, 2)]
    guards = [c for c in recorder.calls if not c["async"]]
    assert guards == [{"device": "cpu", "async": False, "value": 1}] * 3  # one per step, finite


@pytest.mark.parametrize("sent,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_one_rank_stops_both_at_the_same_step_with_a_checkpoint(tmp_path, sent,
                                                                            code):
    """The vote on real processes (gloo on loopback): Ctrl-C, or the SIGTERM a scheduler
    sends, reaches rank 1 only; both ranks stop at one step with its exit code, no warning."""
    data = write_sample_images("paired", tmp_path / "data", n=4, size=40)["data"]
    args = ["train", "pix2pix", "--data", str(data), *MODELS["pix2pix"][1], *SMALL,
            "--max-steps", "100000", "--epochs", "100000", "--batch-size", "1",
            "--runs-dir", str(tmp_path / "runs"), "--name", "stop", "--dist-timeout", "60"]
    port = free_port()
    logs = [tmp_path / f"rank{r}.log" for r in (0, 1)]
    ranks = [_launch_rank(r, port, args, log) for r, log in zip((0, 1), logs)]
    metrics = tmp_path / "runs" / "stop" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and metrics.read_text()):
        time.sleep(0.05)
    ranks[1].send_signal(sent)
    codes = [rank.wait(timeout=90) for rank in ranks]
    messages = [log.read_text() for log in logs]
    assert codes == [code, code], messages
    assert "interrupted at step" in messages[0] and "Traceback" not in "".join(messages)
    assert "Warning" not in "".join(messages) and "leaked" not in "".join(messages)
    saved = checkpoints.read_metadata(checkpoints.resolve_checkpoint(tmp_path / "runs" / "stop"))
    stopped_at = int(messages[0].split("interrupted at step ")[1].split(";")[0])
    assert saved["step"] == stopped_at >= 1


def test_a_time_budget_stops_every_rank_at_the_same_step(tmp_path):
    """The processes agree on one clock: all stop at the same step with the same learning rate
    (a rank that went on alone would wait for the others' gradients until the timeout)."""
    folders = write_sample_images("paired", tmp_path / "data", n=4, size=40)
    result = torchrun(["train", "pix2pix", "--data", str(folders["data"]), *SMALL,
                       *MODELS["pix2pix"][1], "--batch-size", "1", "--time-budget", "4s",
                       "--dist-timeout", "60", "--runs-dir", str(tmp_path / "runs"),
                       "--name", "budget"])
    assert result.returncode == 0, result.stderr
    assert "Time budget reached (4s)" in result.stderr
    records = [r for r in runs.read_metrics(tmp_path / "runs" / "budget") if "lr" in r]
    step = checkpoints.read_metadata(checkpoints.resolve_checkpoint(
        tmp_path / "runs" / "budget"))["step"]
    assert records[-1]["step"] == step > 3
    assert records[-1]["lr"] == pytest.approx(0.0, abs=2e-4 * 0.05)
