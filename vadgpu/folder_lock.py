"""One vadgpu process at a time per output folder: an exclusive `fcntl.flock` on `FOLDER/.vadgpu.lock`.

`vadgpu train` holds its run folder and `vadgpu eval` / `vadgpu score` their output folder for as long as they
write there; a second command on the same folder stops at once with an error naming the holder's PID. The lock
file lives only as long as its holder: it is deleted (while still locked) when the block ends, however it ends,
and a killed holder's lock is released by the kernel (its file, a few bytes, is then removed by the next holder).
A folder that `hold_folder` had to create is removed again when the block ends with the folder empty, so a
command that fails before writing anything leaves nothing behind. Once the lock is held, the temporaries that
an earlier, killed writer left in the folder (and in the subfolders named by `tidy`) are removed.

Deleting a lock file is safe because a process that locked a file only counts as the holder when that file is
still the one at FOLDER/.vadgpu.lock (same inode) after it got the lock; otherwise it opens the new one again.
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


def _missing_parents(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for path in folders:  # deepest first
        try:
            path.rmdir()
        except OSError:  # not empty (the command wrote there), or gone
            return


def _lock(folder: Path, path: Path, option: str) -> int:
    """Open and lock `path`; returns the descriptor once it holds the lock on the file that is at `path` now."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise VadgpuError(f"{option} {folder}: cannot write there ({exc.strerror})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise VadgpuError(f"{option} {folder}: cannot lock {path} ({exc.strerror})") from exc
            raise VadgpuError(f"{option} {folder} is in use by {holder}; wait for it to finish or use another "
                              "folder") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            return fd
        os.close(fd)  # the holder before us deleted this file as it finished: lock the one there now


@contextlib.contextmanager
def hold_folder(folder: str | os.PathLike, command: str, option: str = "--out",
                tidy: Sequence[str] = ()) -> Iterator[Path]:
    """Create `folder` if needed and lock it for `command` until the block ends; yields the folder. At the end the
    lock file is deleted, and the folders this call created are removed when they are empty."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    if folder.exists() and not folder.is_dir():
        raise VadgpuError(f"{option} {folder} is a file, not a folder")
    created = _missing_parents(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_if_empty(created)
        raise VadgpuError(f"{option} {folder}: cannot write there ({exc.strerror})") from exc
    try:
        fd = _lock(folder, path, option)
    except BaseException:
        _remove_if_empty(created)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} ({command})\n".encode(), 0)
        for sub in ("", *tidy):
            remove_stale_temporaries(folder / sub)
        yield folder
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # still locked: a process waiting on this file will see it is gone and retry
        os.close(fd)  # releases the lock
        _remove_if_empty(created)
