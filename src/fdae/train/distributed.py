"""Multi-process training with `torchrun` (DDP): who am I, which device, a few collectives.

`torchrun --nproc_per_node=G -m fdae train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
`setup` reads them, picks `cuda:LOCAL_RANK` (or the CPU) and initialises the process
group (NCCL on CUDA, gloo on CPU unless `train.dist_backend` says otherwise). Without
those variables everything degrades to one process and the collectives do nothing.
Only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from fdae.errors import FdaeError

# Rank 0 may evaluate metrics for a while between two collectives: give it time.
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # True when `setup` initialised the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0, source: str = "train.device") -> torch.device:
    """auto | cpu | cuda | cuda:N -> a device that exists here, or one FdaeError naming
    `source` (the config key or command-line flag the name came from)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FdaeError(f"{source} is {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FdaeError(f"{source} asks for CUDA but no CUDA device is visible; use cpu")
        if (device.index or 0) >= torch.cuda.device_count():
            raise FdaeError(f"{source}={name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type != "cpu":
        raise FdaeError(f"{source} is {name!r}; fdae runs on cpu or cuda")
    return device


def setup(device_name: str = "auto", backend: str = "auto") -> DistInfo:
    """Read the torchrun environment, choose the device, init the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world <= 1:
        return DistInfo(device=resolve_device(device_name, 0))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=TIMEOUT)
        owns = True
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device, owns_group=owns)


def teardown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (sum | max | min); a no-op in one process."""
    if info.enabled:
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(tensor, op=ops[op])
    return tensor


def gather_to_main(obj: Any, info: DistInfo) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (a list indexed by rank), None elsewhere."""
    if not info.enabled:
        return [obj]
    out: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def scatter_from_main(objs: list[Any] | None, info: DistInfo) -> Any:
    """Rank r receives objs[r] (objs given on rank 0)."""
    if not info.enabled:
        return objs[0] if objs else None
    out: list[Any] = [None]
    dist.scatter_object_list(out, objs if info.is_main else None, src=0)
    return out[0]


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
