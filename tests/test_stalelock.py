"""ccdreduce.stalelock on its own: which lock files a record lets go.
Processes are real (a finished child is a dead holder, this test a live one);
the lock files are written here as Snakemake writes them."""

import json
import os
import socket
import subprocess
import sys

from ccdreduce import stalelock


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(snakemake_dir, name, paths=("results/a.fits",)):
    lock = snakemake_dir / "locks" / name
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("\n".join(paths) + "\n")
    return lock


def write_record(snakemake_dir, pid, locks, host=None):
    folder = snakemake_dir / stalelock.HOLDERS
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / f"{host or socket.gethostname()}.{pid}.json"
    holder = {
        "host": host or socket.gethostname(),
        "pid": pid,
        "locks": {lock.name: stalelock._identity(lock) for lock in locks},
    }
    record.write_text(json.dumps(holder))
    return record


def test_only_the_dead_runs_own_lock_files_go(tmp_path):
    live = [write_lock(tmp_path, "0.input.lock"), write_lock(tmp_path, "0.output.lock")]
    write_record(tmp_path, os.getpid(), live)
    dead = [write_lock(tmp_path, "1.input.lock"), write_lock(tmp_path, "1.output.lock")]
    record = write_record(tmp_path, pid := dead_pid(), dead)
    unrecorded = write_lock(tmp_path, "2.output.lock")  # taken, holder not yet recorded

    (message,) = stalelock.clear_stale(tmp_path)

    assert all(lock.exists() for lock in [*live, unrecorded])
    assert not any(lock.exists() for lock in dead) and not record.exists()
    assert f"pid {pid} on {socket.gethostname()} is gone" in message
    assert all(str(lock) in message for lock in dead)
    assert stalelock.live_holders(tmp_path) == [f"pid {os.getpid()} on {socket.gethostname()}"]


def test_another_hosts_record_is_never_acted_on(tmp_path):
    lock = write_lock(tmp_path, "0.input.lock")
    record = write_record(tmp_path, dead_pid(), [lock], host="elsewhere.invalid")
    assert stalelock.clear_stale(tmp_path) == []
    assert lock.exists() and record.exists()


def test_a_later_lock_under_the_dead_runs_name_is_kept(tmp_path):
    lock = write_lock(tmp_path, "0.input.lock")
    record = write_record(tmp_path, dead_pid(), [lock])
    # the dead run's lock was removed (--unlock) and a live run took the name
    lock.unlink()
    write_lock(tmp_path, "0.input.lock", paths=("results/b.fits", "results/c.fits"))
    assert stalelock.clear_stale(tmp_path) == []
    assert lock.exists() and not record.exists()


def test_a_record_that_cannot_be_read_keeps_every_lock(tmp_path):
    lock = write_lock(tmp_path, "0.input.lock")
    (tmp_path / stalelock.HOLDERS).mkdir()
    (tmp_path / stalelock.HOLDERS / "host.1.json").write_text('{"host": ')
    assert stalelock.clear_stale(tmp_path) == []
    assert lock.exists()
