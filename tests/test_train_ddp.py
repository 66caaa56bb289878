"""DDP on CPU: two gloo ranks train a few steps; every parameter, DDL's anomaly_logit and the memories (buffers in
the "mnad" memory mode) end identical on both ranks, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import make_tiny_training_set

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent("""
    import json, sys, torch
    import vadgpu.engine.train as engine
    from vadgpu.engine.config import train_config_from_dict
    from vadgpu.engine.train import fit
    build = engine.build_components

    def keep_initial(*args, **kwargs):  # the weights training starts from, as fit built them (seeded)
        parts, config = build(*args, **kwargs)
        initial = {k: v.detach().clone() for k, v in engine.unwrap(parts.model).state_dict().items()}
        torch.save(initial, sys.argv[2] + ".initial")
        return parts, config

    engine.build_components = keep_initial
    config = train_config_from_dict(json.loads(sys.argv[1]), "test")
    result = fit(config)
    state = {k: v for k, v in result.model.state_dict().items()}
    torch.save(state, sys.argv[2])
""")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_tiny_training_set(tmp_path_factory.mktemp("ddp"), seed=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_two_ranks(config: dict, tmp_path, cache) -> list[tuple[dict, dict]]:
    """Run WORKER as ranks 0 and 1 (torchrun's environment variables), return each rank's (initial, final)
    state_dict."""
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "VADGPU_CACHE": str(cache),
               "OMP_NUM_THREADS": "1"}
        out = tmp_path / f"rank{rank}.pt"
        procs.append((subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(config), str(out)], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out))
    states = []
    for proc, out in procs:
        text, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, text
        states.append((torch.load(f"{out}.initial", weights_only=True), torch.load(out, weights_only=True)))
    return states


@pytest.mark.parametrize("preset, extra", [("ddl-tiny-cpu", {}), ("dualpath-tiny-cpu", {"memory_mode": "mnad"})])
def test_two_gloo_ranks_stay_identical(synth, tmp_path, preset, extra):
    root, boxes, cache = synth
    run = tmp_path / "run"
    config = dict(dataset="synthetic", root=str(root), model=preset.split("-")[0], preset=preset, out=str(run),
                  device="cpu", epochs=1, batch_size=2, max_steps=3, log_every=1, workers=1, boxes=str(boxes),
                  progress=False, extra=extra, lr=1e-2)  # a large lr makes any rank difference visible
    (initial, rank0), (initial1, rank1) = _train_two_ranks(config, tmp_path, cache)
    assert rank0.keys() == rank1.keys() == initial.keys()
    for key in rank0:
        assert torch.equal(initial[key], initial1[key]), f"{key} started differently on the two ranks"
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between ranks"
    # against the very weights fit started from (a model built apart, without fit's seed, differs anyway)
    moved = [k for k in rank0 if rank0[k].is_floating_point() and not torch.equal(rank0[k], initial[k])]
    assert moved, "training changed nothing: the test would prove nothing"
    assert len(moved) > len(rank0) // 2, f"only {moved} moved"
    if preset.startswith("ddl"):
        assert "anomaly_logit" in moved
    else:
        memories = [k for k in rank0 if "memory" in k or k.endswith("items")]
        assert memories and any(k in moved for k in memories), memories
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # rank 0 alone logs (no duplicated lines)
    assert not list(tmp_path.glob("**/rank1*.jsonl"))
