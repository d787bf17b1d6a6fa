"""Rule scripts run in warm Python processes instead of one fresh Python
per job (issue 16).

A `script:` job starts Python, unpickles Snakemake's preamble and imports
numpy, astropy and photutils before its first line of work: about 1.1 s a
job here, more than the work of most of a night's jobs (a master of nine
small frames is ~0.3 s of work). The rules therefore call `run_script` from
a short `run:` block, and the script runs in a worker: a Python process
started once, which keeps its imports for the next job.

- Workers are forked from one process (``forking_server``) which, for a
  run that runs jobs here, is started while Snakemake still parses the
  workflow and makes the jobs' imports and reads the IERS table then, on
  the other core, once for all workers (``start``, PRELOAD). A worker is
  forked as soon as its script's imports are made (the masters' first) and
  only ever runs scripts it was forked ready for.
- A worker runs one job at a time, the whole script as Snakemake would
  (``runpy``, with a ``snakemake`` object that has the same attributes), so
  no two jobs share an interpreter while they run: each job's logging,
  warnings and matplotlib state are its worker's alone.
- Snakemake runs at most ``--cores`` jobs at once, so the pool grows to at
  most that many workers (and as many half-ready ones, early in a run,
  let go once workers come ready for all); they end when Snakemake ends (their connection
  closes), when it is killed (they watch Snakemake's process, also should
  the process they were forked from end first) or with it (same process
  group: Ctrl-C, ``kill -- -PGID``).
- A job that fails raises here with the script's error (its traceback is in
  the job's log, as before); a worker that dies (killed, out of memory)
  fails its job, and the next job gets a new worker.

The scripts stay flat procedures over ``snakemake.input`` etc.: the same file
runs as a `script:` too, and the tests import the package, not the scripts.
"""

import atexit
import contextlib
import functools
import importlib
import io
import logging
import os
import pickle
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from . import runlog
from .codedeps import package_imports

SCRIPTS = Path(__file__).resolve().parents[1]
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
UNKNOWN = -(2**31)  # an exit code the forking server does not know
#: What the process workers are forked from makes ready: the rule scripts'
#: imports, what each imports inside functions (not seen in the script's own
#: imports), and IERS, the bundled Earth-orientation table
#: (ccdreduce.times.use_iers).
PRELOAD = (
    (
        "make_master.py",
        "astropy.io.fits",
        "scipy.ndimage",
        "astropy.visualization",
        "PIL.Image",
        "PIL.ImageDraw",
        "PIL.ImageFont",
    ),
    ("calibrate_night.py", "IERS"),
    ("frame_table.py",),
    ("choose_reference.py",),
    ("register_night.py", "scipy.spatial", "astropy.wcs"),
    (
        "scale_frames.py",
        "photutils.aperture",
        "matplotlib.figure",
        "matplotlib.backends.backend_agg",
    ),
    ("combine_stack.py", "astropy.table"),
    ("stack_stats.py",),
    ("colour_preview.py",),
)


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
        self.workdir = os.getcwd()

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
        os.chdir(job.workdir)  # where Snakemake is now, not where it was at the start
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


def _measured(script, job):
    """run_script, with the job's CPU seconds (all this worker's threads) and
    its peak memory in MB: (error or None, usage)."""
    import resource  # POSIX only, like the workers

    _reset_peak_memory()
    before = resource.getrusage(resource.RUSAGE_SELF)
    error = run_script(script, job)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return error, {"cpu_time": cpu, "max_rss": _peak_memory_mb(after)}


def _reset_peak_memory():
    """Linux keeps a process's peak resident memory for its life; a worker
    runs many jobs, so the peak is reset before each (clear_refs 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_mb(usage):
    """Peak resident memory since the reset (VmHWM), else for the process's
    life (ru_maxrss: bytes on macOS, kB elsewhere)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024
    return usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


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


def _end_with(snakemake, parent):
    """Exit when Snakemake is gone, even in the middle of a job: a run killed
    with SIGKILL must not leave a worker writing its outputs while the next
    run makes them again. ``snakemake``: a pidfd of Snakemake's process
    (readable once it has ended), else None and the ``parent`` process is
    watched (Snakemake itself, for a worker it started)."""
    if snakemake is not None:
        select.select([snakemake], [], [])
        os._exit(1)
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _leave():
    """End this process now: its work is done or its Snakemake gone. Python's
    own ending (freeing every module's objects) takes ~0.4 s with numpy,
    astropy and matplotlib loaded, and a caller reading Snakemake's output
    through a pipe waits for it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def serve(fd, snakemake=None):
    """A worker's loop: run the jobs sent over connection ``fd`` until it
    closes (``snakemake``: see _end_with)."""
    threading.Thread(target=_end_with, args=(snakemake, os.getppid()), daemon=True).start()
    connection = Connection(fd)
    while True:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError, KeyboardInterrupt):  # Snakemake ended, or Ctrl-C
            _leave()
        try:
            script, job = pickle.loads(message)
        except Exception as exc:  # noqa: BLE001 - e.g. a param of a class not importable here
            connection.send((f"the job could not be read by the worker: {_one_line(exc)}", None))
            continue
        connection.send(_measured(script, job))


# --- in Snakemake's process -----------------------------------------------------


class JobFailed(Exception):
    """A rule script failed (its log says more); raised in Snakemake's process."""


#: A worker forked once its server had made all the preload (or had none to
#: make): ready for any script.
READY = 2**31 - 1


@functools.cache
def _preload_plan():
    """(steps, needs): PRELOAD as single steps in order (a module's name, or
    IERS), and for each script how many of them a worker must have been
    forked after to be ready for it (a script not in PRELOAD: all)."""
    steps, needs = [], {}
    for script, *extra in PRELOAD:
        package = sorted(f"ccdreduce.{name}" for name in package_imports(SCRIPTS / script))
        for step in (*package, *extra):
            if step not in steps:
                steps.append(step)
        needs[script] = 1 + max(steps.index(step) for step in (*package, *extra))
    return tuple(steps), needs


def _needed(script):
    """The preload steps a worker needs for rule script ``script`` (a path)."""
    try:
        steps, needs = _preload_plan()
    except Exception:  # noqa: BLE001 - e.g. a script being edited: only ready workers
        return READY
    return needs.get(Path(script).name, len(steps))


def _preload(step):
    """Import one module, or read the bundled IERS table: once, in the process
    workers are forked from, so that each starts ready (a fresh worker paid
    ~1.5 s of imports and 0.4 s of IERS parsing in its first jobs). What
    fails here fails again in the job that needs it, with its error there."""
    try:
        if step == "IERS":
            from . import times

            times.use_iers("bundled")
        else:
            importlib.import_module(step)
    except Exception:  # noqa: BLE001, S110 - the job that needs it says why
        pass


def forking_server(fd, preload):
    """The process workers are forked from, after making the jobs' imports
    (PRELOAD) when ``preload``. It answers requests on ``fd`` (an AF_UNIX
    SOCK_SEQPACKET socket): ``F``, a script's name and a connection's file
    descriptor, answered with the new worker's pid (-1: the fork failed) and
    how many preload steps it has (READY: all); or ``W`` and a pid, answered
    with that ended worker's exit code (as subprocess gives it; UNKNOWN if
    none). Numbers travel as 4 signed bytes. Its workers watch Snakemake
    itself (a pidfd), so that they live on should this process end.

    A worker is forked as soon as the steps its script needs are made
    (PRELOAD lists the scripts in the order the workflow runs them), so the
    masters start while the later scripts' imports are still being made,
    and it is only given jobs of scripts it is ready for: a worker forked
    half-ready that imported the rest itself paid the imports again (with
    two of them three times over on two cores, the demo 1.4 s slower). Once
    the parse of the workflow got faster (0.5 s less), the masters waited
    for the last imports: forked early, the demo took 3 % less (7.68 ->
    7.43 s, medians of 8 alternating runs)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is Snakemake's to handle
    try:
        snakemake = os.pidfd_open(os.getppid())
    except (AttributeError, OSError):  # a kernel before 5.3: watch the parent
        snakemake = None
    threading.Thread(target=_end_with, args=(snakemake, os.getppid()), daemon=True).start()
    try:
        steps, needs = _preload_plan() if preload else ((), {})
    except Exception:  # noqa: BLE001 - e.g. a script being edited: no preload, no traceback
        steps, needs = (), {}
    _Server(socket.socket(fileno=fd), snakemake, steps, needs).run()


class _Server:
    """forking_server's state: what it has preloaded, the fork request that
    waits for more (Snakemake's side asks one thing at a time) and the exit
    codes of ended workers."""

    def __init__(self, control, snakemake, steps, needs):
        self.control, self.snakemake = control, snakemake
        self.steps, self.needs, self.done = steps, needs, 0
        self.waiting, self.ended = [], {}

    def run(self):
        for step in self.steps:
            _preload(step)
            self.done += 1
            while select.select([self.control], [], [], 0)[0]:
                self.answer(*self.receive())
            self.waiting = [request for request in self.waiting if not self.answer(*request)]
        while True:
            self.answer(*self.receive())

    def receive(self):
        try:
            message, fds, _, _ = socket.recv_fds(self.control, 1024, 1)
        except OSError:
            _leave()
        if not message:  # Snakemake closed its end
            _leave()
        return message, fds

    def answer(self, message, fds):
        """Answer a request; False (kept for later) for a fork whose script
        needs steps not made yet."""
        _reap(self.ended)
        if message[:1] == b"W":
            self.control.send(_packed(_exit_code(_unpacked(message[1:5]), self.ended)))
            return True
        if message[:1] != b"F":
            self.control.send(_packed(None))
            return True
        script = message[1:].decode(errors="replace")
        if self.done < self.needs.get(script, len(self.steps)):
            if (message, fds) not in self.waiting:
                self.waiting.append((message, fds))
            return False
        try:
            pid = os.fork()
        except OSError:  # no memory, or the process limit
            pid = -1
        if pid == 0:
            self.control.close()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            serve(fds[0], self.snakemake)
        for descriptor in fds:
            os.close(descriptor)
        ready = READY if self.done == len(self.steps) else self.done
        self.control.send(_packed(pid) + _packed(ready))
        return True


def _packed(number):
    """A pid or exit code as the 4 bytes the two sides exchange (None: unknown)."""
    return (UNKNOWN if number is None else number).to_bytes(4, "big", signed=True)


def _unpacked(data):
    number = int.from_bytes(data, "big", signed=True)
    return None if number == UNKNOWN else number


def _reap(ended):
    """Collect the ended workers' exit codes ({pid: code}): none stays a zombie."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        ended[pid] = os.waitstatus_to_exitcode(status)


def _exit_code(pid, ended):
    """Exit code of ended worker ``pid``, as subprocess gives it (-9: SIGKILL)."""
    deadline = time.monotonic() + 5
    while pid not in ended and time.monotonic() < deadline:
        time.sleep(0.01)
        _reap(ended)
    return ended.pop(pid, None)


#: Workers are forked from a server where fork after imports is safe and
#: SOCK_SEQPACKET exists (Linux); elsewhere (macOS: no SOCK_SEQPACKET, and
#: its system libraries are not safe to fork after use) each is started anew.
FORK = sys.platform.startswith("linux")


def _python(code, *args, fds=()):
    """A Python running ``code`` with the package importable and ``fds``
    passed; numpy's BLAS on one thread, as Snakemake sets it for a 1-thread
    job (jobs of two threads use them through their own thread pools)."""
    env = dict(os.environ, **dict.fromkeys(BLAS_THREADS, "1"))
    code = f"import sys; sys.path.insert(0, sys.argv[1]); {code}"
    return subprocess.Popen(
        [sys.executable, "-c", code, str(SCRIPTS), *map(str, args)],
        pass_fds=fds,
        stdin=subprocess.DEVNULL,
        env=env,
    )


class _ForkingServer:
    """Snakemake's side of ``forking_server``."""

    def __init__(self, preload):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = "from ccdreduce.workers import forking_server; "
        code += "forking_server(int(sys.argv[2]), sys.argv[3] == '1')"
        self.process = _python(code, theirs.fileno(), int(preload), fds=(theirs.fileno(),))
        theirs.close()
        self.control, self._lock = mine, threading.Lock()

    def _ask(self, message, fds=(), size=4):
        with self._lock:
            socket.send_fds(self.control, [message], list(fds))
            reply = self.control.recv(size)
        if len(reply) < size:
            raise OSError("the process that starts workers has ended")
        return reply

    def alive(self):
        return self.process.poll() is None

    def fork(self, script):
        """A new worker ready for rule script ``script`` (see forking_server)."""
        ours, theirs = socket.socketpair()
        try:
            reply = self._ask(b"F" + Path(script).name.encode(), [theirs.fileno()], 8)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        pid, ready = _unpacked(reply[:4]), _unpacked(reply[4:])
        if pid is None or pid < 0:
            ours.close()
            raise OSError("a worker could not be forked (out of memory, or of processes?)")
        return _Worker(Connection(ours.detach()), pid, self, ready)

    def exit_code(self, pid):
        try:
            return _unpacked(self._ask(b"W" + _packed(pid)))
        except OSError:
            return None

    def close(self):
        self.control.close()


class _Starter:
    """Where workers cannot be forked (FORK): each started as a Python of its
    own, which makes its imports in its first jobs."""

    def __init__(self, preload=False):
        self._processes = {}

    def alive(self):
        return True

    def fork(self, script):
        ours, theirs = socket.socketpair()
        code = "from ccdreduce.workers import serve; serve(int(sys.argv[2]))"
        process = _python(code, theirs.fileno(), fds=(theirs.fileno(),))
        theirs.close()
        self._processes[process.pid] = process
        return _Worker(Connection(ours.detach()), process.pid, self)

    def exit_code(self, pid):
        try:
            return self._processes.pop(pid).wait(timeout=5)
        except (KeyError, subprocess.TimeoutExpired):
            return None

    def close(self):
        pass


class _Worker:
    """A worker as Snakemake's side sees it; ``ready``: the preload steps it
    was forked with (READY: all, or it imports what it needs itself)."""

    def __init__(self, connection, pid, server, ready=READY):
        self.connection, self.pid, self._server, self.ready = connection, pid, server, ready

    def alive(self):
        """An idle worker has nothing to say: a readable connection is its end."""
        try:
            return not self.connection.poll(0)
        except OSError:
            return False

    def exit_code(self):
        return self._server.exit_code(self.pid)

    def close(self):
        self.connection.close()


class Pool:
    """Idle workers, taken by one job at a time and given back after it."""

    def __init__(self):
        self._idle, self._lock, self._server = [], threading.Lock(), None
        self._all_ready = False  # a worker came ready for any script
        atexit.register(self.close)

    def start(self, preload=True, forking=FORK):
        """Start the process workers are forked from, now (while Snakemake
        still parses and plans, its imports are made on the other core)."""
        with self._lock:
            if self._server is None or not self._server.alive():
                self._server = (_ForkingServer if forking else _Starter)(preload)
            return self._server

    def _new_worker(self, script):
        server = self.start(preload=False)
        try:
            worker = server.fork(script)
        except OSError:  # it ended (killed?): one more try with a new one
            with self._lock:
                if self._server is server:  # not already replaced by another job's thread
                    self._server = None
            worker = self.start(preload=False).fork(script)
        if worker.ready == READY:
            self._all_ready = True
        return worker

    def _take(self, script):
        """An idle worker ready for ``script`` and still alive (one killed
        while idle is dropped, so that no job fails for it), else a new one.
        Once workers are forked ready for all, the half-ready ones go."""
        needed = _needed(script)
        while True:
            with self._lock:
                fit = [w for w in self._idle if w.ready == READY or w.ready >= needed]
                worker = fit[-1] if fit else None
                if worker is not None:
                    self._idle.remove(worker)
                spent = [w for w in self._idle if w.ready != READY] if self._all_ready else []
                self._idle = [w for w in self._idle if w not in spent]
            for idle in spent:
                idle.close()
            if worker is None:
                return self._new_worker(script)
            if worker.alive():
                return worker
            worker.close()

    def run(self, script, job):
        name = Path(script).name
        try:
            message = pickle.dumps((str(script), job))
        except Exception as exc:  # noqa: BLE001 - a param that cannot be sent
            raise JobFailed(f"{name} (rule {job.rule}): its job cannot be sent: {exc}") from None
        worker = self._take(script)
        try:
            worker.connection.send_bytes(message)
            error, usage = worker.connection.recv()
        except (EOFError, OSError):
            worker.close()
            code = worker.exit_code()
            raise JobFailed(
                f"the Python process running {name} for rule {job.rule} ended "
                f"({'' if code is None else f'exit code {code}: '}killed, or out of "
                f"memory?); its log: "
                f"{', '.join(job.log) or 'none'}"
            ) from None
        with self._lock:
            self._idle.append(worker)
        if error is not None:
            raise JobFailed(f"{name} (rule {job.rule}) failed: {error}")
        return usage

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
            server, self._server = self._server, None
        for worker in idle:
            worker.close()
        if server is not None:
            server.close()


_POOL = Pool()


def start():
    """Start the workers' imports now, before the first job (see Pool.start);
    a speed-up only: if it cannot start, the first job starts it."""
    with contextlib.suppress(OSError):
        _POOL.start(preload=True)


#: Snakemake's command-line options under which it runs no job here
NO_JOBS_OPTIONS = (
    "dryrun",
    "lint",
    "report",
    "unlock",
    "touch",
    "summary",
    "detailed_summary",
    "list_rules",
    "list_target_rules",
    "list_changes",
    "list_input_changes",
    "list_params_changes",
    "list_untracked",
    "list_conda_envs",
    "dag",
    "d3dag",
    "rulegraph",
    "filegraph",
    "cleanup_metadata",
    "cleanup_shadow",
    "delete_all_output",
    "delete_temp_output",
    "archive",
    "containerize",
    "export_cwl",
    "generate_unit_tests",
    "print_compilation",
    "conda_create_envs_only",
    "conda_cleanup_envs",
    "version",
    "help",
)


def runs_jobs_here(argv):
    """Whether the Snakemake started with ``argv`` runs jobs on this machine:
    not a dry run, lint, report, listing, unlock or touch, not a cluster
    executor or profile, not Snakemake's API called by another program. Read
    with Snakemake's own parser, because the run's settings are not known yet
    while the Snakefile is parsed (when the workers are best started); a
    wrong guess costs only time, never a result."""
    if "snakemake" not in Path(argv[0]).parts[-2:]:  # snakemake, python -m snakemake
        return False
    try:
        from snakemake.cli import get_argument_parser

        with contextlib.redirect_stderr(io.StringIO()):  # a parse error: Snakemake's to say
            args, _ = get_argument_parser().parse_known_args(argv[1:])
    except (Exception, SystemExit):  # noqa: BLE001 - only a guess
        return False
    if getattr(args, "executor", None) not in (None, "local") or getattr(args, "profile", None):
        return False
    if getattr(args, "report", None) and getattr(args, "report_after_run", False):
        return True  # runs, then writes the report
    return not any(getattr(args, name, None) for name in NO_JOBS_OPTIONS)


def run(script, job):
    """Run rule script ``script`` (a path) for ``job`` in a warm worker;
    returns the job's CPU seconds and peak memory (``cpu_time``, ``max_rss``
    in MB) as the worker measured them."""
    return _POOL.run(script, job)
