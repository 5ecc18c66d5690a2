"""Files that must survive a crash whole: written under a temporary name, fsynced, renamed
into place, and the directory fsynced so the new name survives too."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` survive a crash."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole, or what it held before: never part of it. The
    temporary name (``.<name>.part``) is hidden and keeps none of ``path``'s suffix, so a
    reader of ``*.crl`` (say) never takes it for one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    with part.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    fsync_dir(path.parent)
