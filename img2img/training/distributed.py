"""Training and converting on several processes with `torch.distributed`, launched by torchrun:
which process this is (from torchrun's environment), its device, the process group (NCCL for
CUDA tensors, gloo for CPU ones, with a timeout on every collective so a lost process ends the
others instead of hanging them), gradient averaging and the few values ranks must agree on."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import Img2ImgError

T = TypeVar("T")


class LostPeer(Img2ImgError):
    """Another process of a distributed run failed or stopped answering."""


@dataclasses.dataclass(frozen=True)
class Processes:
    """Where this process stands in its job: rank, local rank and world size (1 alone)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def from_environment(env: dict[str, str] | None = None) -> Processes:
    """What torchrun told this process (RANK, LOCAL_RANK, WORLD_SIZE); alone without them."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        return Processes(int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), world)
    except ValueError:
        raise Img2ImgError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (set by torchrun)") \
            from None


def start(processes: Processes, device: torch.device, timeout_s: float) -> None:
    """Join the process group (once per process); every collective then fails after
    `timeout_s` seconds instead of waiting forever for a process that is gone."""
    if not processes.distributed or torch.distributed.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # torch.distributed.nn.functional binds `group.WORLD` into its functions' default arguments
    # when it is first imported, and creating an optimizer imports it (through torch._dynamo).
    # Imported after the group exists, those defaults would keep the group alive after
    # destroy_process_group(): its gloo threads would then be torn down during interpreter exit,
    # which can abort a finished process ("terminate called without an active exception") and
    # make torchrun report a failure. Imported now, while there is no group, they hold None.
    importlib.import_module("torch.distributed.nn.functional")
    try:
        torch.distributed.init_process_group(
            backend, timeout=datetime.timedelta(seconds=timeout_s),
            rank=processes.rank, world_size=processes.world)
    except (RuntimeError, ValueError) as exc:
        raise LostPeer(f"could not join the distributed run: {exc}") from None


def stop() -> None:
    """Leave the process group together: the others wait for rank 0's last writes, and no
    process tears its connections down while a peer still uses them."""
    if torch.distributed.is_initialized():
        with _collective("finishing"):
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def local_device(processes: Processes, device: torch.device) -> torch.device:
    """One GPU per local rank: `cuda` becomes `cuda:<local rank>`."""
    if processes.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", processes.local_rank)
    return device


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turns a failed collective (a timeout, a peer that died) into one clear error."""
    try:
        yield
    except RuntimeError as exc:  # gloo/NCCL timeouts and torch.distributed.DistError alike
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LostPeer(f"another process of this distributed run failed or stopped answering "
                       f"while {what} ({first}); the last checkpoint is intact: rerun with "
                       "--resume") from None


def average_gradients(modules: Iterable[nn.Module], world: int) -> None:
    """Mean of every gradient over all processes: one all-reduce of one flat buffer per network
    (per dtype and device), after all of the step's loss groups have been backpropagated."""
    for module in modules:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        by_kind: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        for grad in grads:
            by_kind.setdefault((grad.dtype, grad.device), []).append(grad)
        for group in by_kind.values():
            flat = torch.cat([g.reshape(-1) for g in group])
            with _collective("averaging gradients"):
                torch.distributed.all_reduce(flat)
            flat /= world
            offset = 0
            for grad in group:
                grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
                offset += grad.numel()


def broadcast_modules(modules: Iterable[nn.Module]) -> None:
    """Every process starts from rank 0's weights and buffers."""
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            with _collective("sharing the initial weights"), torch.no_grad():
                torch.distributed.broadcast(tensor.data, src=0)


def broadcast_object(value: T) -> T:
    """Rank 0's `value` on every process (a run folder, the best metric so far)."""
    box = [value]
    with _collective("sharing a setting"):
        torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


class StopVote:
    """Whether any process asked to stop (Ctrl-C on one rank stops all at the same step),
    agreed without stalling a step. Each step's vote is a CPU tensor, reduced by gloo (never a
    CUDA tensor, whose `.item()` would wait for the GPU to drain every step) without waiting;
    it is read one step later, by when it has normally arrived. Every rank reads the same
    result at the same step, so all stop together, one step after the request."""

    def __init__(self) -> None:
        self._pending: tuple[Any, torch.Tensor] | None = None

    def poll(self, flag: bool | int) -> int:
        """Send this step's vote; return the previous step's: 0 to go on, else the largest
        vote (a signal number, when ranks vote with the signal that stopped them, so every
        rank exits with the same code; True counts as 1)."""
        stop = self.finish()
        value = torch.tensor([int(flag)], dtype=torch.int32)
        with _collective("checking whether to stop"):
            work = torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX,
                                                async_op=True)
        self._pending = (work, value)
        return stop

    def finish(self) -> int:
        """Wait for the vote in flight, if any: its result (0: go on). Every rank calls it
        before the loop ends, so no reduction is left half done."""
        if self._pending is None:
            return 0
        work, value = self._pending
        self._pending = None
        with _collective("checking whether to stop"):
            work.wait()
        return int(value[0])


def mean(values: dict[str, torch.Tensor], world: int) -> dict[str, torch.Tensor]:
    """Each value averaged over all processes, in one all-reduce."""
    if not values:
        return values
    stacked = torch.stack([v.float() for v in values.values()])
    with _collective("averaging the logged losses"):
        torch.distributed.all_reduce(stacked)
    return dict(zip(values, stacked / world))


def largest(value: float) -> float:
    """The largest of every process's `value` (a clock reading all processes then share),
    reduced on the CPU."""
    reduced = torch.tensor([value], dtype=torch.float64)
    with _collective("agreeing on the time used"):
        torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.MAX)
    return float(reduced[0])


def minimum(value: torch.Tensor) -> torch.Tensor:
    """The element-wise minimum of `value` over all processes (flags every process must agree
    on: a step is applied only where all found it finite)."""
    reduced = value.detach().float().clone()
    with _collective("agreeing whether to apply the step"):
        torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.MIN)
    return reduced


def prepare_model(model: Any, device: torch.device, sync_batch_norm: bool) -> None:
    """Every process starts from rank 0's weights; `sync_batch_norm` makes batch norm use the
    statistics of the global batch (PyTorch's SyncBatchNorm, which runs on GPUs only)."""
    if sync_batch_norm:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps the model's layers in place
    broadcast_modules([model])


def total(count: int) -> int:
    """`count` summed over all processes."""
    value = torch.tensor([count], dtype=torch.long)
    with _collective("counting results"):
        torch.distributed.all_reduce(value)
    return int(value.item())


def shard(items: Sequence[T], processes: Processes) -> list[T]:
    """This process's share of `items`: every `world`-th item from its rank, so shares are
    disjoint and together are all of `items`."""
    return list(items[processes.rank::processes.world])
