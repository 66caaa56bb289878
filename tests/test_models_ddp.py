"""DDP on CPU: two gloo processes train every architecture for two steps on different data; afterwards the
parameters (DDL's anomaly_logit and the dual-path memories included) must be identical on both ranks."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from test_models import TrainingLosses, batch_for, make_anomalies
from vadgpu.models import build_model

WORLD = 2
CASES = [  # (preset, overrides): both architectures, and the MNAD memory whose buffer update is all-reduced
    ("ddl-tiny-cpu", {"size": (16, 16)}),
    ("dualpath-tiny-cpu", {"size": (16, 16)}),
    ("dualpath-tiny-cpu", {"size": (16, 16), "memory_mode": "mnad"}),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_state(model: torch.nn.Module) -> torch.Tensor:
    """Parameters plus the memory buffers, flattened: what must agree across ranks."""
    tensors = [p.detach().flatten() for p in model.parameters()]
    tensors += [b.flatten() for name, b in model.named_buffers() if name.endswith("items")]
    return torch.cat(tensors)


def train_two_steps(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for preset, overrides in CASES:
            torch.manual_seed(rank)  # different initialisations: DDP must broadcast rank 0's
            model = build_model(preset, **overrides).train()
            before = shared_state(model).clone()
            ddp = DistributedDataParallel(TrainingLosses(model))
            opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
            for step in range(2):
                clips = batch_for(model, n=4, seed=100 * rank + step)  # each rank sees its own data
                losses = ddp(clips, make_anomalies(model, clips, seed=100 * rank + step))
                opt.zero_grad()
                losses["loss"].backward()
                opt.step()
            state = shared_state(model)
            gathered = [torch.empty_like(state) for _ in range(world)]
            dist.all_gather(gathered, state)
            assert torch.equal(gathered[0], gathered[1]), f"{preset} {overrides}: ranks diverged"
            if rank == 0:
                assert not torch.equal(before, state), f"{preset}: training changed nothing"
            if hasattr(model, "anomaly_logit"):
                assert model.anomaly_logit.detach().abs() > 0, "anomaly_logit did not train"
            del ddp  # its reducer goes before the process group does
        # Both ranks reach teardown together: a rank that destroys the group while the other still sends can
        # abort gloo ("terminate called without an active exception", seen once in CI).
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_keep_parameters_identical():
    mp.spawn(train_two_steps, args=(WORLD, free_port()), nprocs=WORLD, join=True)
