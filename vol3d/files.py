"""Atomic file writes: the one way vol3d writes an output file.

A writer gets a temporary path in the destination's folder (same file system, so the final
``os.replace`` is atomic) and the file appears under its real name only when writing succeeded:
readers never see a half-written checkpoint, report or image.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path, suffix: str = ""):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``, else delete it.

    ``suffix`` is appended to the temporary name, for libraries that pick a format by extension
    (matplotlib: ``suffix=".png"``).

    >>> with atomic_write("model.pt") as tmp:        # doctest: +SKIP
    ...     torch.save(obj, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
