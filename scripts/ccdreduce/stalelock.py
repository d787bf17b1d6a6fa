"""Snakemake's lock, freed when the run that held it was killed, and only then.

Snakemake locks the inputs and outputs of a run in .snakemake/locks (files
<n>.input.lock and <n>.output.lock, listing paths) so that a second run at
the same time on the same files refuses. A run killed with SIGKILL (or by
the machine going down) cannot release its lock, and every later run would
refuse until someone runs `snakemake --unlock`, which removes every lock,
live runs' included.

So each run that takes the lock records which lock files it wrote, beside
them: one record per run (host, pid, boot and start time of the process,
and each lock file's identity) in .snakemake/ccdreduce-lock-holders/. At the
next start, a record whose process is surely gone (same host, and the pid is
not running, or is now another process) has its own lock files removed,
with a warning naming them; then the record. A lock file is removed only if
it is still the very file the dead run wrote (inode, mtime, size), so a
later run's lock that took the same name is kept. A record of another host,
of a live pid, or that cannot be read is never acted on: that lock may be
held, and a refused run is better than two runs writing the same files.

Only a run that takes the lock clears (see :func:`guard_snakemake_lock`): a
dry run, --summary, --lint and the like change nothing here. And a run that
ends removes its own lock files only, where Snakemake would remove the
whole folder, live runs' locks included.
"""

import json
import os
import re
import socket
from contextlib import contextmanager
from functools import partial
from pathlib import Path

HOLDERS = "ccdreduce-lock-holders"
# the one record per checkout of earlier versions; it did not say which lock
# files were its run's, so it only ever gets removed, never acted on
LEGACY_RECORD = "ccdreduce-lock-holder.json"
# what Snakemake's file persistence names its lock files; a record naming
# anything else is not followed
LOCK_NAME = re.compile(r"[0-9]+\.(input|output)\.lock")


def _boot_id():
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_time(pid):
    """Start of process pid in clock ticks after boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses; starttime
    # is field 22, the 20th after the last ')'
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _identity(path):
    """What tells this file from a later one of the same name."""
    st = os.stat(path)
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def gone(holder):
    """Why the process of a record is surely not running, or None when it
    may be (then nothing of it is touched)."""
    host, pid = holder.get("host"), holder.get("pid")
    if host != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return None  # another host's process cannot be looked at from here
    boot = _boot_id()
    if holder.get("boot") and boot and holder["boot"] != boot:
        return f"pid {pid} on {host} ran before the machine was restarted"
    if not _alive(pid):
        return f"pid {pid} on {host} is gone"
    started, now = holder.get("start"), _start_time(pid)
    if started is not None and now is not None and now != started:
        return f"pid {pid} on {host} is gone (the number is now another process's)"
    return None


def record_holder(snakemake_dir, lock_files):
    """Record this process as the holder of lock_files (just written by
    Snakemake). Returns the record's path, for :func:`forget_holder`."""
    folder = Path(snakemake_dir) / HOLDERS
    folder.mkdir(parents=True, exist_ok=True)
    host, pid = socket.gethostname(), os.getpid()
    locks = {}
    for lock in map(Path, lock_files):
        try:
            locks[lock.name] = _identity(lock)
        except FileNotFoundError:
            pass
    record = folder / f"{host}.{pid}.json"
    text = json.dumps(
        {"host": host, "pid": pid, "boot": _boot_id(), "start": _start_time(pid), "locks": locks}
    )
    # written whole or not at all: a run starting meanwhile reads no half record
    partial = folder / f".{record.name}.tmp"
    partial.write_text(text)
    partial.replace(record)
    return record


def forget_holder(record):
    """Called when the run has released its lock, however it ended."""
    Path(record).unlink(missing_ok=True)


def clear_stale(snakemake_dir=".snakemake"):
    """Remove the lock files of runs that were killed, and their records.
    Returns one message per run whose lock files were removed."""
    snakemake_dir = Path(snakemake_dir)
    locks = snakemake_dir / "locks"
    messages = []
    for record in sorted((snakemake_dir / HOLDERS).glob("*.json")):
        try:
            holder = json.loads(record.read_text())
        except (OSError, ValueError):
            continue  # removed by a run starting at the same time, or unreadable: kept
        why = gone(holder) if isinstance(holder, dict) else None
        if why is None:
            continue
        removed = []
        for name, identity in sorted((holder.get("locks") or {}).items()):
            lock = locks / name
            try:
                if LOCK_NAME.fullmatch(name) and _identity(lock) == identity:
                    lock.unlink()
                    removed.append(str(lock))
            except FileNotFoundError:  # released, or --unlock; a later run may reuse the name
                pass
        record.unlink(missing_ok=True)
        if removed:
            messages.append(
                f"removed the lock left by a run that was killed: {', '.join(removed)} "
                f"({why}); its unfinished outputs are made again"
            )
    legacy = snakemake_dir / LEGACY_RECORD
    try:
        if gone(json.loads(legacy.read_text())):
            legacy.unlink(missing_ok=True)
    except (OSError, ValueError, AttributeError):
        pass
    return messages


def live_holders(snakemake_dir=".snakemake"):
    """'pid N on host' of each recorded run whose lock files are still there
    and whose process may be running: for the message of a refused run."""
    snakemake_dir = Path(snakemake_dir)
    holders = []
    for record in sorted((snakemake_dir / HOLDERS).glob("*.json")):
        try:
            holder = json.loads(record.read_text())
            held = [n for n in holder.get("locks") or {} if (snakemake_dir / "locks" / n).exists()]
        except (OSError, ValueError, AttributeError):
            continue
        if held and gone(holder) is None:
            holders.append(f"pid {holder.get('pid')} on {holder.get('host')}")
    return holders


def _delete_own_locks(persistence):
    """What this run does when it releases its lock. Snakemake removes its
    own lock files, then the whole .snakemake/locks, other live runs' locks
    with it (runs into another results_dir from the same checkout), and the
    next run on their results would be let in while they write. Only this
    run's files go; `snakemake --unlock` (not through here) still removes all."""
    for lock in persistence._lockfile.values():
        Path(lock).unlink(missing_ok=True)
    persistence._lockfile.clear()


def guard_snakemake_lock(logger):
    """Make Snakemake's taking of its lock clear stale locks first and
    record the holder right after, and its release remove only this run's
    lock files; True when installed.

    Why here: the Snakefile has no hook that runs only in a run that will
    take the lock, before it does. At parse time a dry run cannot be told
    from a real one (workflow.dryrun is False in both: the executor is chosen
    after parsing), and onstart runs after the lock was taken, when a killed
    run's lock on the same files has already refused the run. Snakemake's
    Persistence.lock is called only by runs that take the lock (a run,
    --touch, --cleanup-shadow, --containerize); dry runs bind lock_warn_only
    instead, and --summary, --lint, --list... never lock.
    """
    try:
        from snakemake.exceptions import LockException
        from snakemake.persistence import PersistenceBase
    except ImportError:
        return False
    original = getattr(PersistenceBase, "lock", None)
    if original is None:
        return False
    if getattr(original, "ccdreduce_guard", False):
        return True

    @contextmanager
    def lock(self):
        lock_dir = getattr(self, "_lockdir", None)
        if lock_dir is None:  # not the file-based persistence: nothing of ours
            with original(self):
                yield
            return
        snakemake_dir = Path(lock_dir).parent
        if hasattr(self, "_delete_locks") and hasattr(self, "_lockfile"):
            self._delete_locks = partial(_delete_own_locks, self)
        for message in clear_stale(snakemake_dir):
            logger.warning(message)
        record = None
        try:
            with original(self):
                record = record_holder(snakemake_dir, getattr(self, "_lockfile", {}).values())
                yield
        except LockException:
            holders = live_holders(snakemake_dir) if record is None else []
            if holders:
                logger.warning(
                    f"the lock is held by a run that is still running ({', '.join(holders)}); "
                    "it is left alone: wait for that run to end, or stop it"
                )
            raise
        finally:
            if record is not None:
                forget_holder(record)

    lock.ccdreduce_guard = True
    PersistenceBase.lock = lock
    return True
