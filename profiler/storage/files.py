"""Writing files so that a reader never sees half of one.

Every file the harness writes (Parquet parts, the manifest, a measuring process's
result, golden values, report pages and the index) goes through `write_atomic`: it is
written aside under a dot-name, flushed to disk and renamed over the target, so a sweep
killed at any moment leaves either the old file or the new one. Readers skip the
dot-names (`.*.tmp`), and `store` removes those a killed writer left behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TMP_GLOB = ".*.tmp"


def temporary_name(path: Path) -> Path:
    """Where `write_atomic` writes `path` before the rename."""
    return path.with_name(f".{path.name}.tmp")


def write_atomic(path: str | Path, data: str | bytes | Callable[[Path], object], *, durable: bool = True) -> Path:
    """Write `data` (text, bytes, or a function that writes the file at the path it is
    given) to `path` through a temporary file and a rename. With `durable`, the file and
    its folder are fsynced, so the rename survives a crash of the machine too; results
    need that, a measuring process's hand-over file to its parent does not."""
    path = Path(path)
    tmp = temporary_name(path)
    if callable(data):
        data(tmp)
    elif isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    if durable:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
