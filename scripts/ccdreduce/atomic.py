"""Files written whole or not at all: written beside their name, then renamed
onto it (atomic on one file system), so that a killed job or a parallel
reader never meets half a file under the real name."""

import contextlib
import os
import threading
from pathlib import Path


@contextlib.contextmanager
def written_beside(path, clear_stale=False):
    """Yield a temporary path beside ``path``; when the block ends without
    error it is renamed onto ``path``, else removed. ``clear_stale``: first
    remove what killed writers of ``path`` left (only where one writer at a
    time writes it, as Snakemake's jobs do their outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if clear_stale:
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
