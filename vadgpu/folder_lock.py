"""One vadgpu process at a time per output folder: an exclusive `fcntl.flock` on `FOLDER/.vadgpu.lock`.

`vadgpu train` holds its run folder and `vadgpu eval` / `vadgpu score` their output folder for as long as they
write there; a second command on the same folder stops at once with an error naming the holder's PID. The lock
file stays (hidden, a few bytes: the holder's PID and command); the kernel releases the lock when the holder
exits, however it exits, so a killed run never leaves a folder locked. Once the lock is held, the temporaries
that an earlier, killed writer left in the folder (and in the subfolders named by `tidy`) are removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator, Sequence

from vadgpu.errors import VadgpuError
from vadgpu.io import remove_stale_temporaries

LOCK_NAME = ".vadgpu.lock"


@contextlib.contextmanager
def hold_folder(folder: str | os.PathLike, command: str, option: str = "--out",
                tidy: Sequence[str] = ()) -> Iterator[Path]:
    """Create `folder` if needed and lock it for `command` until the block ends; yields the folder."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    if folder.exists() and not folder.is_dir():
        raise VadgpuError(f"{option} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise VadgpuError(f"{option} {folder}: cannot write there ({exc.strerror})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise VadgpuError(f"{option} {folder}: cannot lock {path} ({exc.strerror})") from exc
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise VadgpuError(f"{option} {folder} is in use by {holder}; wait for it to finish or use another "
                              "folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} ({command})\n".encode(), 0)
        for sub in ("", *tidy):
            remove_stale_temporaries(folder / sub)
        yield folder
    finally:
        os.close(fd)  # releases the lock
