"""A small file must not unpack into a large one: checkpoints (torch's zip format) and box caches (.npz) are zip
archives, and a crafted one can hold a deflated entry that inflates to gigabytes (a 4.6 MB file held a 3 GiB tensor
of zeros). Before such a file is loaded, `check_zip_expansion` reads its central directory (a few bytes per entry)
and refuses it when its entries would unpack to much more than the file itself: torch.save stores its entries
uncompressed, and np.savez_compressed of box arrays shrinks them a few times, never by hundreds.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from vadgpu.errors import VadgpuError

MAX_RATIO = 16  # unpacked bytes per file byte, beyond the slack below
SLACK = 64 << 20  # bytes any file may unpack to, whatever its size


def check_zip_expansion(path: str | os.PathLike, what: str) -> None:
    """Refuse `path` (described as `what`, e.g. "checkpoint") when it is a zip archive whose entries would unpack
    to more than MAX_RATIO times its size plus SLACK; a file that is no zip archive passes unchecked."""
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            return
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise VadgpuError(f"{what} {path} cannot be read: not an intact zip archive ({exc})") from exc
    if unpacked > MAX_RATIO * size + SLACK:
        raise VadgpuError(f"{what} {path}: its {size / 2**20:.1f} MiB would unpack to {unpacked / 2**20:.0f} MiB "
                          "(compressed entries; vadgpu and torch do not write such files): refused")
