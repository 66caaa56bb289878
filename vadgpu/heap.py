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

What a heap keeps it also holds: over a long scoring run, blocks freed between tensors that stay (a batch's
records, the next batch's frames) pile up resident (on Ped2's 12 test videos the heap held 1.4 GiB of freed memory
at the end of an eval). `release_free_memory()` hands every free page of the heap back to the kernel (glibc's
malloc_trim, whatever the thresholds; ~10 ms, and the pages are faulted in again where reused); `HeapRelease` is
when scoring calls it: as it starts, after each video, and after a batch that left the process GROWTH more
resident than the last release. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest on 64-bit: blocks up to this size come from the heap
TRIM_THRESHOLD = 1024 * 1024 * 1024  # free memory at the heap's top that glibc keeps rather than returns
GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
# Resident growth since the last release that makes a scoring batch release again: above what a batch faults back
# in after a release (~80 MiB on Ped2: releasing after every batch took ~10% more time for ~30 MiB less at the
# peak), so that a long video is released every few hundred frames, not every batch
GROWTH = 128 * 2**20


def _glibc():
    """The process's C library where it is glibc (ctypes), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc's own symbol: musl's mallopt does nothing, it has no malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MiB in glibc's heap (see the module doc); True when set, False where the
    C library is not glibc or the environment sets glibc's malloc variables (nothing is changed then)."""
    libc = _glibc()
    if libc is None or any(name in os.environ for name in GLIBC_VARIABLES):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_free_memory() -> bool:
    """Return every free page of the C heap to the kernel (glibc's malloc_trim(0)); False where there is none."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    libc.malloc_trim(0)
    return True


def resident_bytes() -> int | None:
    """The process's resident set (Linux: /proc/self/statm), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapRelease:
    """When a scoring run releases the heap's free memory (module doc): as it starts (what earlier work freed), after
    a video (`step(True)`), and after a batch (`step(False)`) that left the resident set `growth` bytes above what it
    was after the last release."""

    def __init__(self, growth: int = GROWTH):
        release_free_memory()
        self.growth, self.mark = growth, resident_bytes()

    def step(self, video_done: bool) -> None:
        now = None if video_done else resident_bytes()
        if video_done or (now is not None and self.mark is not None and now > self.mark + self.growth):
            release_free_memory()
            self.mark = resident_bytes()
