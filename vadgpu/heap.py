"""glibc's heap settings for a process that runs torch on the CPU: freed tensor memory stays in the heap for the next
step instead of going back to the kernel.

torch has no caching allocator on the CPU: every activation of a training step is a fresh malloc, freed when the
step is done. glibc serves an allocation above its mmap threshold (128 KiB at start, raised on the fly up to at
most 32 MiB) with new pages from the kernel and unmaps them at free, so each step faults in and zeroes the
same hundreds of MiB again: on a 2-core CPU, a `ddl-objects-cpu` training step spent a quarter of its CPU time in
the kernel doing that. With the threshold at glibc's 32 MiB limit and a high trim threshold, blocks up to 32 MiB are
reused from the heap, as a caching allocator would (docs/results/throughput.md, "Object-mode training").

Like OMP_WAIT_POLICY (threads.py), the setting is the whole process's, so `import vadgpu` leaves it alone: the
`vadgpu` command and the benchmark scripts call `keep_freed_memory()`; a Python program may call it itself. The C
library's own environment variables, where set, win.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest on 64-bit: blocks up to this size come from the heap
TRIM_THRESHOLD = 1024 * 1024 * 1024  # free memory at the heap's top that glibc keeps rather than returns
GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MiB in glibc's heap (see the module doc); True when set, False where the
    C library is not glibc or the environment sets glibc's malloc variables (nothing is changed then)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in GLIBC_VARIABLES):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc's own symbol: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
