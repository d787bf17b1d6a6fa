"""Warm worker processes (ccdreduce.workers): rule scripts run in a Python
that keeps its imports between jobs, one job at a time, each job's log its
own, failures reported, a dead worker replaced."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ccdreduce import workers

SCRIPT = """
import os, time
from ccdreduce import runlog

log = runlog.start(snakemake)
log.info("job %s in pid %d", snakemake.wildcards.name, os.getpid())
if snakemake.params.action == "fail":
    raise ValueError(f"bad input in {snakemake.input.frame}: no EXPTIME. Fix: add it")
if snakemake.params.action == "die":
    os.kill(os.getpid(), 9)
if snakemake.params.action == "exit0":
    raise SystemExit(0)
if snakemake.params.action == "sleep":
    with open(snakemake.output.result, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)
with open(snakemake.output.result, "w") as out:
    out.write(f"{os.getpid()} {snakemake.params.values['x'] * 2} {snakemake.threads}")
"""


class FakeNamedlist(list):
    """The part of Snakemake's Namedlist that Named.of reads."""

    def __init__(self, names):
        super().__init__(names.values())
        self._names = {name: (i, None) for i, name in enumerate(names)}


@pytest.fixture
def pool():
    pool = workers.Pool()
    yield pool
    pool.close()


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(SCRIPT))
    return path


def job(tmp_path, name, action="write"):
    return workers.Job(
        FakeNamedlist({"frame": str(tmp_path / "raw.fits")}),
        FakeNamedlist({"result": str(tmp_path / f"{name}.txt")}),
        FakeNamedlist({"action": action, "values": {"x": 21}}),
        FakeNamedlist({"name": name}),
        2,
        FakeNamedlist({"mem_mb": 1000}),
        FakeNamedlist({"log": str(tmp_path / f"{name}.log")}),
        {"results_dir": str(tmp_path)},
        "test_rule",
    )


def test_a_job_reads_like_snakemakes_object_and_pickles():
    named = workers.Named.of(FakeNamedlist({"master": "calib/bias.fits", "preview": "b.png"}))
    assert named.master == "calib/bias.fits" and named[1] == "b.png"
    assert list(named.keys()) == ["master", "preview"] and named.get("nothing") is None
    copy = pickle.loads(pickle.dumps(named))
    assert copy.preview == "b.png" and list(copy) == ["calib/bias.fits", "b.png"]
    with pytest.raises(AttributeError):
        named.missing  # noqa: B018


def test_jobs_run_in_one_warm_worker_each_with_its_own_log(pool, script, tmp_path):
    pool.run(script, job(tmp_path, "a"))
    pool.run(script, job(tmp_path, "b"))
    pid_a, value, threads = (tmp_path / "a.txt").read_text().split()
    pid_b = (tmp_path / "b.txt").read_text().split()[0]
    assert pid_a == pid_b != str(os.getpid())  # the same worker, not this process
    assert (value, threads) == ("42", "2")
    log_a, log_b = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    assert "job a in pid" in log_a and "job b" not in log_a
    assert "job b in pid" in log_b and "job a" not in log_b


def test_a_failing_script_fails_its_job_with_the_error_and_its_log_has_the_traceback(
    pool, script, tmp_path
):
    with pytest.raises(workers.JobFailed, match="no EXPTIME. Fix: add it"):
        pool.run(script, job(tmp_path, "bad", action="fail"))
    pool.run(script, job(tmp_path, "after"))  # the worker serves the next job
    pool.run(script, job(tmp_path, "exit", action="exit0"))  # sys.exit(0) is success
    log = (tmp_path / "bad.log").read_text()
    assert "Traceback" in log and "ValueError: bad input in" in log
    assert (tmp_path / "after.txt").exists()


def test_a_worker_that_dies_fails_its_job_and_the_next_job_gets_a_new_one(pool, script, tmp_path):
    pool.run(script, job(tmp_path, "first"))
    with pytest.raises(workers.JobFailed, match=f"ended \\(exit code -{signal.SIGKILL}"):
        pool.run(script, job(tmp_path, "killed", action="die"))
    pool.run(script, job(tmp_path, "second"))
    first = (tmp_path / "first.txt").read_text().split()[0]
    second = (tmp_path / "second.txt").read_text().split()[0]
    assert first != second


def test_a_worker_ends_when_snakemake_is_killed_even_in_the_middle_of_a_job(script, tmp_path):
    # a process standing in for Snakemake, sending a job that runs for a minute
    code = (
        "import pickle, sys; sys.path.insert(0, sys.argv[1]); from ccdreduce import workers; "
        "workers.run(sys.argv[2], pickle.load(open(sys.argv[3], 'rb')))"
    )
    (tmp_path / "job.pickle").write_bytes(pickle.dumps(job(tmp_path, "long", action="sleep")))
    scripts = workers.SCRIPTS
    parent = subprocess.Popen(
        [sys.executable, "-c", code, scripts, script, tmp_path / "job.pickle"]
    )
    result = tmp_path / "long.txt"
    deadline = time.monotonic() + 60
    while not (result.exists() and result.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(result.read_text())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the worker outlived Snakemake"


def _alive(pid):
    try:
        status = open(f"/proc/{pid}/stat").read().split()[2]
    except FileNotFoundError:
        return False
    return status != "Z"  # a zombie has ended, its parent gone before reaping it


class OnlyHere:
    """A param of a class the worker cannot import (it lives in this test)."""


def test_a_job_the_worker_cannot_read_fails_alone(pool, script, tmp_path):
    strange = job(tmp_path, "strange")
    strange.params = workers.Named([OnlyHere()], {"thing": (0, None)})
    with pytest.raises(workers.JobFailed, match="could not be read by the worker"):
        pool.run(script, strange)
    pool.run(script, job(tmp_path, "after"))  # the same worker serves on
    assert (tmp_path / "after.txt").exists()


def test_an_error_whose_message_fails_is_still_reported(pool, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text(
        "class Odd(Exception):\n    def __str__(self):\n        raise RuntimeError\nraise Odd()\n"
    )
    with pytest.raises(workers.JobFailed, match="Odd"):
        pool.run(broken, job(tmp_path, "odd"))


def test_a_worker_killed_while_idle_fails_no_job(pool, script, tmp_path):
    pool.run(script, job(tmp_path, "first"))
    first = int((tmp_path / "first.txt").read_text().split()[0])
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    pool.run(script, job(tmp_path, "second"))  # on a new worker
    assert int((tmp_path / "second.txt").read_text().split()[0]) != first
    assert not os.path.exists(f"/proc/{first}")  # reaped, not left a zombie


def test_workers_run_numpys_blas_on_one_thread(pool, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\nopen(snakemake.output.result, 'w').write(os.environ['OMP_NUM_THREADS'])\n"
    )
    pool.run(probe, job(tmp_path, "probe"))
    assert (tmp_path / "probe.txt").read_text() == "1"


@pytest.mark.parametrize(
    ("argv", "runs"),
    [
        (["/x/.venv/bin/snakemake", "--cores", "2"], True),
        (["/x/.venv/bin/snakemake", "--cores", "2", "all", "--config", "a=1"], True),
        (["/usr/lib/python3/site-packages/snakemake/__main__.py", "-c2"], True),
        (["/x/.venv/bin/snakemake", "-n"], False),
        (["/x/.venv/bin/snakemake", "-np", "--cores", "2"], False),
        (["/x/.venv/bin/snakemake", "--lint"], False),
        (["/x/.venv/bin/snakemake", "--report", "report.html"], False),
        (["/x/.venv/bin/snakemake", "-c2", "--report", "r.html", "--report-after-run"], True),
        (["/x/.venv/bin/snakemake", "-c2", "-F"], True),
        (["/x/.venv/bin/snakemake", "--cores", "all", "--forcerun", "combine_stack"], True),
        (["/x/.venv/bin/snakemake", "--unlock"], False),
        (["/x/.venv/bin/snakemake", "--profile", "profiles/slurm"], False),
        (["/x/.venv/bin/snakemake", "--executor", "slurm", "-j", "4"], False),
        (["/x/.venv/bin/pytest", "tests"], False),  # Snakemake's API from a program
    ],
)
def test_workers_start_early_only_for_a_run_that_runs_jobs_here(argv, runs, quick_scontrol):
    assert workers.runs_jobs_here(argv) is runs


@pytest.fixture
def quick_scontrol(tmp_path, monkeypatch):
    """Snakemake's parser imports the SLURM plugin, which asks `scontrol`: with
    slurm-client installed and no controller that waits ~9 s; a stand-in
    that fails at once makes the plugin take its defaults."""
    stand_in = tmp_path / "bin" / "scontrol"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 1\n")
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_in.parent}{os.pathsep}{os.environ['PATH']}")


def test_early_started_workers_come_with_the_jobs_imports_made(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys\n"
        "from ccdreduce import times\n"
        "ready = all(m in sys.modules for m in ('photutils.aperture', 'matplotlib.figure',"
        " 'ccdreduce.scaling', 'ccdreduce.register'))\n"
        "iers = times._earth.get('source')\n"
        "open(snakemake.output.result, 'w').write(f'{ready} {iers} {os.getppid()}')\n"
    )
    pool = workers.Pool()
    try:
        server = pool.start(preload=True)
        pool.run(probe, job(tmp_path, "probe"))
        ready, iers, parent = (tmp_path / "probe.txt").read_text().split()
        # forked from the process that made the imports and read the IERS table
        assert (ready, iers, int(parent)) == ("True", "bundled", server.process.pid)
    finally:
        pool.close()


def test_jobs_run_on_when_the_process_workers_are_forked_from_was_killed(pool, script, tmp_path):
    pool.run(script, job(tmp_path, "first"))
    server = pool.start()
    server.process.kill()
    server.process.wait()
    first = int((tmp_path / "first.txt").read_text().split()[0])
    os.kill(first, signal.SIGKILL)  # its worker ends with it; either way a new one serves
    time.sleep(0.2)
    pool.run(script, job(tmp_path, "second"))
    assert (tmp_path / "second.txt").exists()


def test_a_running_job_lives_on_when_the_process_it_was_forked_from_ends(pool, tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import time\ntime.sleep(1.5)\nopen(snakemake.output.result, 'w').write('done')\n"
    )
    server = pool.start(preload=False)
    killer = threading.Timer(0.5, server.process.kill)
    killer.start()
    pool.run(slow, job(tmp_path, "slow"))  # the worker watches Snakemake, not its parent
    killer.join()
    assert (tmp_path / "slow.txt").read_text() == "done"


def test_where_workers_cannot_be_forked_each_is_started_anew(script, tmp_path):
    pool = workers.Pool()
    try:
        pool.start(forking=False)
        pool.run(script, job(tmp_path, "a"))
        pool.run(script, job(tmp_path, "b"))
        assert (tmp_path / "a.txt").read_text().split()[0] == (
            tmp_path / "b.txt"
        ).read_text().split()[0]
        with pytest.raises(workers.JobFailed, match=f"exit code -{signal.SIGKILL}"):
            pool.run(script, job(tmp_path, "killed", action="die"))
    finally:
        pool.close()


def test_a_job_runs_where_snakemake_is_when_it_runs(pool, tmp_path, monkeypatch):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nopen('here.txt', 'w').write(os.getcwd())\n")
    monkeypatch.chdir(tmp_path)
    pool.run(probe, job(tmp_path, "first"))  # the worker started here
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pool.run(probe, job(tmp_path, "second"))
    assert (elsewhere / "here.txt").read_text() == str(elsewhere)


def test_the_masters_start_before_the_last_imports_and_no_job_gets_a_worker_not_ready(tmp_path):
    steps, needs = workers._preload_plan()
    # the masters' script needs the fewest imports, the frames' plot the most
    assert 0 < needs["make_master.py"] < needs["scale_frames.py"] <= len(steps)
    assert workers._needed(tmp_path / "not_listed.py") == len(steps)  # waits for all
    probe = (
        "import os, sys\n"
        "loaded = ' '.join(str(m in sys.modules) for m in ('ccdreduce.masters', "
        "'photutils.aperture', 'matplotlib.figure'))\n"
        "open(snakemake.output.result, 'w').write(f'{loaded} {os.getpid()} {os.getppid()}')\n"
    )
    for name in ("make_master.py", "scale_frames.py"):  # named as the rule scripts
        (tmp_path / name).write_text(probe)
    pool = workers.Pool()
    try:
        server = pool.start(preload=True)
        ran = {}
        for name in ("make_master.py", "scale_frames.py", "make_master.py"):
            pool.run(tmp_path / name, job(tmp_path, "probe"))
            ran.setdefault(name, []).append((tmp_path / "probe.txt").read_text().split())
    finally:
        pool.close()
    (first_master, photutils, matplotlib, master_pid, parent), again = ran["make_master.py"]
    frames = ran["scale_frames.py"][0]
    assert int(parent) == int(frames[4]) == server.process.pid  # all forked from it
    assert first_master == "True" and frames[:3] == ["True"] * 3  # each ready for its script
    if photutils == "False":  # forked half-ready: never given the frames' job
        assert frames[3] != master_pid
    assert again[:3] == ["True"] * 3  # the half-ready worker went once all were ready


def test_each_job_reports_its_own_cpu_time_and_peak_memory(pool, tmp_path):
    busy = tmp_path / "busy.py"
    busy.write_text(
        "import time, numpy as np\n"
        "block = np.ones(200 * 2**20 // 8)  # 200 MB, touched\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end:\n"
        "    pass\n"
    )
    idle = tmp_path / "idle.py"
    idle.write_text("import time\ntime.sleep(0.3)\n")
    heavy = pool.run(busy, job(tmp_path, "busy"))
    light = pool.run(idle, job(tmp_path, "idle"))  # the same worker, after the heavy job
    assert 0.3 <= heavy["cpu_time"] < 1.5 and light["cpu_time"] < 0.1
    assert heavy["max_rss"] > 200
    if Path("/proc/self/clear_refs").exists():  # Linux: the peak is the job's own
        assert light["max_rss"] < heavy["max_rss"] - 150


def test_a_jobs_timing_file_has_snakemakes_benchmark_columns(tmp_path):
    from ccdreduce import runlog

    path = tmp_path / "benchmarks" / "calib" / "n1" / "bias.tsv"
    runlog.write_benchmark(path, 75.25, {"cpu_time": 61.5, "max_rss": 812.345})
    header, values = (line.split("\t") for line in path.read_text().splitlines())
    assert dict(zip(header, values, strict=True)) == {
        "s": "75.2500",
        "h:m:s": "0:01:15",
        "max_rss": "812.35",
        "cpu_time": "61.50",
    }
