"""Rule scripts run in warm Python processes instead of one fresh Python
per job (issue 16).

A `script:` job starts Python, unpickles Snakemake's preamble and imports
numpy, astropy and photutils before its first line of work: about 1.1 s a
job here, more than the work of most of a night's jobs (a master of nine
small frames is ~0.3 s of work). The rules therefore call `run_script` from
a short `run:` block, and the script runs in a worker: a Python process
started once, which keeps its imports for the next job.

- A worker runs one job at a time, the whole script as Snakemake would
  (``runpy``, with a ``snakemake`` object that has the same attributes), so
  no two jobs share an interpreter while they run: each job's logging,
  warnings and matplotlib state are its worker's alone.
- Snakemake runs at most ``--cores`` jobs at once, so the pool grows to at
  most that many workers; they end when Snakemake ends (their connection
  closes) or with it (same process group: Ctrl-C, ``kill -- -PGID``).
- A job that fails raises here with the script's error (its traceback is in
  the job's log, as before); a worker that dies (killed, out of memory)
  fails its job, and the next job gets a new worker.

The scripts stay flat procedures over ``snakemake.input`` etc.: the same file
runs as a `script:` too, and the tests import the package, not the scripts.
"""

import atexit
import logging
import os
import pickle
import runpy
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from . import runlog

SCRIPTS = Path(__file__).resolve().parents[1]
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class Named(list):
    """A list whose items can also be read by name (``output.master``), the
    part of Snakemake's Namedlist that scripts use, as plain picklable data."""

    def __init__(self, items=(), names=None):
        super().__init__(items)
        self._names = dict(names or {})

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._names:
            raise AttributeError(name)
        start, end = self._names[name]
        return self[start] if end is None else Named(self[start:end])

    def keys(self):
        return self._names.keys()

    def items(self):
        return ((name, getattr(self, name)) for name in self._names)

    def get(self, name, default=None):
        return getattr(self, name) if name in self._names else default

    @classmethod
    def of(cls, namedlist):
        """Plain copy of a Snakemake Namedlist (paths as ``str``)."""
        values = [str(v) if isinstance(v, str) else v for v in namedlist]
        names = dict(namedlist._names) if hasattr(namedlist, "_names") else {}
        return cls(values, names)


class Job:
    """What a rule script reads as ``snakemake``: input, output, params,
    wildcards, log, threads, resources, config, rule."""

    def __init__(self, input, output, params, wildcards, threads, resources, log, config, rule):
        self.input, self.output, self.params = Named.of(input), Named.of(output), Named.of(params)
        self.wildcards, self.log = Named.of(wildcards), Named.of(log)
        self.resources = Named.of(resources)
        self.threads, self.config, self.rule = threads, config, rule

    @classmethod
    def of_run_block(cls, names, config):
        """From a run block's ``locals()`` (Snakemake passes a run block
        input, output, params, wildcards, threads, resources, log, rule)."""
        fields = ("input", "output", "params", "wildcards", "threads", "resources", "log")
        return cls(*(names[field] for field in fields), config, names["rule"])


# --- inside a worker ----------------------------------------------------------


def run_script(script, job):
    """Run ``script`` with ``snakemake = job`` in this process; returns None,
    or the error (one line) when the script failed."""
    try:
        runpy.run_path(str(script), init_globals={"snakemake": job}, run_name="__main__")
        return None
    except SystemExit as exc:  # a script's sys.exit(0) is a success
        if exc.code in (None, 0):
            return None
        return _failed(job, exc)
    except BaseException as exc:  # noqa: BLE001 - reported to Snakemake, not lost
        return _failed(job, exc)
    finally:
        _close_logging()


def _failed(job, exc):
    """Log the traceback where the script's log goes (its file and stderr),
    as a crashed script did; the one-line error for Snakemake."""
    if logging.getLogger().handlers:
        runlog.log_crash(exc)
    else:  # before the script set up its log
        text = "".join(traceback.format_exception(exc))
        sys.stderr.write(text)
        if job.log:
            with open(job.log[0], "a") as file:
                file.write(text)
    return _one_line(exc)


def _one_line(exc):
    """``Type: message``, even for an exception whose str() fails."""
    try:
        return "".join(traceback.format_exception_only(exc)).strip()
    except Exception:  # noqa: BLE001 - a broken __str__ must not end the worker
        return f"{type(exc).__name__} (its message could not be written)"


def _close_logging():
    """The next job in this worker starts with no handlers, and this job's
    log file is flushed and closed before Snakemake looks at it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def _end_with(parent):
    """Exit when Snakemake (``parent``) is gone, even in the middle of a job:
    a run killed with SIGKILL must not leave a worker writing its outputs
    while the next run makes them again."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def serve(fd):
    """A worker's loop: run the jobs sent over connection ``fd`` until it closes."""
    threading.Thread(target=_end_with, args=(os.getppid(),), daemon=True).start()
    connection = Connection(fd)
    while True:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError, KeyboardInterrupt):  # Snakemake ended, or Ctrl-C
            return
        try:
            script, job = pickle.loads(message)
        except Exception as exc:  # noqa: BLE001 - e.g. a param of a class not importable here
            connection.send(f"the job could not be read by the worker: {_one_line(exc)}")
            continue
        connection.send(run_script(script, job))


# --- in Snakemake's process -----------------------------------------------------


class JobFailed(Exception):
    """A rule script failed (its log says more); raised in Snakemake's process."""


class _Worker:
    def __init__(self):
        mine, theirs = socket.socketpair()
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from ccdreduce.workers import serve; serve(int(sys.argv[2]))"
        )
        # numpy's BLAS with one thread, as Snakemake sets it for a 1-thread
        # job: jobs of two threads use them through their own thread pools
        env = dict(os.environ, **dict.fromkeys(BLAS_THREADS, "1"))
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(SCRIPTS), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self.connection = Connection(mine.detach())

    def alive(self):
        return self.process.poll() is None

    def close(self):
        self.connection.close()


class Pool:
    """Idle workers, taken by one job at a time and given back after it."""

    def __init__(self):
        self._idle, self._lock = [], threading.Lock()
        atexit.register(self.close)

    def _take(self):
        """An idle worker that is still alive (one killed while idle is
        dropped, so that no job fails for it), else a new one."""
        while True:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                return _Worker()
            if worker.alive():
                return worker
            worker.close()

    def run(self, script, job):
        name = Path(script).name
        try:
            message = pickle.dumps((str(script), job))
        except Exception as exc:  # noqa: BLE001 - a param that cannot be sent
            raise JobFailed(f"{name} (rule {job.rule}): its job cannot be sent: {exc}") from None
        worker = self._take()
        try:
            worker.connection.send_bytes(message)
            error = worker.connection.recv()
        except (EOFError, OSError):
            worker.close()
            code = worker.process.wait()
            raise JobFailed(
                f"the Python process running {name} for rule {job.rule} ended "
                f"(exit code {code}: killed, or out of memory?); its log: "
                f"{', '.join(job.log) or 'none'}"
            ) from None
        with self._lock:
            self._idle.append(worker)
        if error is not None:
            raise JobFailed(f"{name} (rule {job.rule}) failed: {error}")

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


_POOL = Pool()


def run(script, job):
    """Run rule script ``script`` (a path) for ``job`` in a warm worker."""
    _POOL.run(script, job)
