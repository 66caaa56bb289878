"""Atomic file writes: a temporary file in the same folder, fsync, then os.replace, then fsync of the folder.

A reader (or a resumed run after SIGKILL) sees either the old file or the new one, never a truncated one, and a
crash right after the rename keeps the new file. The file gets the permissions a plain `open` would give it
(0666 less the umask). The temporary is named `.NAME.PID-RANDOM.tmp`; one whose writing process is gone (a
SIGKILL mid-write) is an orphan that `remove_stale_temporaries` deletes when the same command runs again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, IO

from vadgpu.errors import VadgpuError

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$")


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else set and restored."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename inside `folder` durable (a no-op where folders cannot be opened or synced)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, names: tuple[str, ...] | None = None) -> list[Path]:
    """Delete the temporaries of `atomic_path` in `folder` whose writing process no longer runs (only those of
    the files `names`, when given); returns what was deleted. Nothing else in the folder is touched."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match is None or (names is not None and match["name"] not in names) or not path.is_file():
            continue
        if int(match["pid"]) != os.getpid() and not _alive(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _write_error(path: Path, exc: OSError) -> VadgpuError:
    reason = exc.strerror or str(exc)
    return VadgpuError(f"cannot write {path}: {reason}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically, on error it is removed.

    Failing to create the folder or the temporary, or to move it into place, is a VadgpuError naming `path`;
    errors raised by the caller's own writing pass through unchanged."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open respects the umask
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise _write_error(path, exc) from exc
        fsync_folder(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], mode: str = "w") -> None:
    """Open a temporary file beside `path` with `mode`, call `write(fh)`, then move it into place; an OSError
    while writing (disk full, quota) is a VadgpuError naming `path`."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
                write(fh)
        except OSError as exc:
            raise _write_error(Path(path), exc) from exc


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
