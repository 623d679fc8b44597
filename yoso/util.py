"""Small helpers shared by the CLI commands."""

from __future__ import annotations

import os
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
