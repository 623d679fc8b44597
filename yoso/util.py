"""Small helpers shared by the CLI commands."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CliError(f"{path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
