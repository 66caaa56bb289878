"""Process groups for DDP: torchrun's environment in, one `DistContext` out; `--nproc N` launches torchrun.

torchrun (or `vadgpu train --nproc N`, which calls torchrun's own entry point) sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT for each worker. Backend: nccl on CUDA, gloo on CPU. Each rank takes CUDA device
LOCAL_RANK; rank 0 alone writes files and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from vadgpu.device import resolve_device
from vadgpu.errors import VadgpuError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup_distributed(requested_device: str) -> DistContext:
    """Resolve the device and, under torchrun with WORLD_SIZE > 1, join the process group."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistContext(0, 1, 0, resolve_device(requested_device))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = resolve_device(requested_device)
    if device.type == "cuda":
        if requested_device not in ("auto", "cuda"):
            raise VadgpuError(f"--device {requested_device}: under torchrun each rank uses cuda:LOCAL_RANK; "
                              "pass --device cuda (or auto) and pick GPUs with CUDA_VISIBLE_DEVICES")
        if local_rank >= torch.cuda.device_count():
            raise VadgpuError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible; "
                              "use --nproc_per_node <= the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=30),
                                **({"device_id": device} if backend == "nccl" else {}))
    return DistContext(rank, world_size, local_rank, device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_rank_true(flag: bool, ctx: DistContext) -> bool:
    """True if `flag` is set on any rank (one all-reduce; call only where the loop syncs anyway)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def gather_objects(obj, ctx: DistContext) -> list:
    """Every rank's `obj` (picklable), in rank order; used for per-rank RNG states at checkpoint time only."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (e.g. memories updated in forward) to every rank, so saved and final state agree.

    DDP broadcasts buffers at the start of each forward; the last forward's updates stay rank-local until this.
    """
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def launch_workers(nproc: int, argv: list[str]) -> int:
    """Run `python -m vadgpu <argv>` in `nproc` local workers through torchrun's launcher; return its exit code."""
    if nproc < 1:
        raise VadgpuError(f"--nproc {nproc}: must be >= 1")
    if torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise VadgpuError(f"--nproc {nproc}: only {torch.cuda.device_count()} CUDA device(s) visible")
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException

    args = ["--standalone", f"--nproc_per_node={nproc}", "-m", "vadgpu", *argv]
    try:
        torchrun.main(args)
    except SystemExit as exc:  # torchrun exits through sys.exit on some paths
        return int(exc.code or 0)
    except SignalException:  # Ctrl-C / SIGTERM: the workers saved a checkpoint and said how to resume
        return 130
    except Exception as exc:  # ChildFailedError: the workers' own errors were printed above
        from vadgpu.log import logger

        logger.error(f"vadgpu train --nproc {nproc}: a worker failed ({type(exc).__name__})")
        return 1
    return 0
