"""MATLAB label files are parsed in a child process: scipy's .mat reader is native code that a damaged file can
crash (a fuzzed 296-byte volLabel file made scipy 1.17 segfault), and a crash there must not take vadgpu with it.

`run_isolated(reader, path)` runs `reader(path)` (a label reader of labels.py that returns intervals or a 0/1
array, or raises VadgpuError) in a forked child (spawned where fork is not available) and returns its result.
The child answers in JSON over a pipe (no pickle crosses back); a child that dies is a VadgpuError naming the
file. Forking the loaded interpreter costs a few tens of milliseconds: label files are read once per dataset.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Callable

import numpy as np

from vadgpu.errors import VadgpuError

TIMEOUT_S = 120.0


def _to_json(value) -> str:
    if isinstance(value, np.ndarray):
        return json.dumps({"array": value.astype(np.uint8).tolist()})
    return json.dumps({"intervals": [[[int(a), int(b)] for a, b in video] for video in value]})


def _child(reader: Callable, path: str, conn) -> None:
    import faulthandler

    faulthandler.disable()  # a crash here is expected and answered by the parent: no dump on the user's terminal
    try:
        try:
            answer = _to_json(reader(Path(path)))
        except VadgpuError as exc:
            answer = json.dumps({"error": exc.format_message()})
        except BaseException as exc:  # noqa: BLE001  whatever the reader raised, the parent gets one message
            answer = json.dumps({"error": f"label file {path} cannot be read ({type(exc).__name__}: {exc})"})
        conn.send_bytes(answer.encode())
        conn.close()
    finally:
        os._exit(0)  # a forked child runs none of the parent's exit handlers


def run_isolated(reader: Callable, path: str | os.PathLike):
    """`reader(path)` in a child process: its list of intervals or its 0/1 uint8 array, or its VadgpuError."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(reader, str(path), send), daemon=True)
    child.start()
    send.close()
    text = None
    try:
        if receive.poll(TIMEOUT_S):
            text = receive.recv_bytes().decode()
    except (EOFError, OSError):
        text = None
    finally:
        receive.close()
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
    if text is None:
        how = f"crashed (signal {-child.exitcode})" if child.exitcode and child.exitcode < 0 else "gave no answer"
        raise VadgpuError(f"label file {path} is damaged: the MATLAB file reader (scipy) {how} on it")
    answer = json.loads(text)
    if "error" in answer:
        raise VadgpuError(answer["error"])
    if "array" in answer:
        return np.asarray(answer["array"], dtype=np.uint8)
    return [[(a, b) for a, b in video] for video in answer["intervals"]]
