"""Snakemake's lock, freed when the run that held it was killed.

Snakemake locks the outputs of a run in .snakemake/locks so that a second
run at the same time refuses. A run killed with SIGKILL (or by the machine
going down) cannot release it, and the next run would refuse as well until
someone runs `snakemake --unlock`. The workflow records which process holds
the lock (host and pid, beside the lock); at the next start, a lock whose
holder is gone from this host is removed with a warning. A lock held by a
live run, or recorded on another host, is left alone.
"""

import json
import os
import shutil
import socket
from pathlib import Path

RECORD = "ccdreduce-lock-holder.json"


def record_holder(snakemake_dir=".snakemake"):
    """Called when the run has taken the lock (onstart)."""
    path = Path(snakemake_dir) / RECORD
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def forget_holder(snakemake_dir=".snakemake"):
    """Called when the run ends normally or with an error (onsuccess, onerror)."""
    (Path(snakemake_dir) / RECORD).unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clear_if_stale(snakemake_dir=".snakemake"):
    """Remove the lock of a killed run. Returns a message when it did."""
    record, locks = Path(snakemake_dir) / RECORD, Path(snakemake_dir) / "locks"
    try:
        holder = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if holder.get("host") != socket.gethostname() or _alive(int(holder.get("pid", 0))):
        return None
    held = any(locks.glob("*.lock")) if locks.is_dir() else False
    if held:
        shutil.rmtree(locks)
    record.unlink(missing_ok=True)
    if held:
        return (
            f"removed the lock left by a run that was killed (pid {holder['pid']} on "
            f"{holder['host']} is gone); its unfinished outputs are made again"
        )
    return None
