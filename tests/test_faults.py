"""Faults: a run killed during its combines (SIGTERM, SIGKILL), two runs
started at once on the same results, and the lock a killed run leaves while
other runs are live or only looking (dry runs). Small simulated nights."""

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager

import numpy as np
import pytest
from astropy.io import fits
from conftest import REPO, SNAKEMAKE, run_snakemake
from helpers import small_tree

STACK = "NGC_2362/R"
METHODS = ("average", "median", "minmax", "sigclip")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    _, _, results, config = small_tree(folder)
    run_snakemake(*config)
    stacks = results / "stacks" / STACK
    saved = folder / "stacks_before"
    shutil.copytree(stacks, saved)
    return {"results": results, "config": config, "stacks": stacks, "saved": saved}


def start(tree, *extra, config=None):
    """snakemake in its own process group, as a terminal or a batch system
    runs it, so that a signal reaches it and the job it is running."""
    return subprocess.Popen(
        [str(SNAKEMAKE), "--cores", "1", *extra, *(config or tree["config"])],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for(condition, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def remove_stacks(tree):
    for method in METHODS:
        (tree["stacks"] / f"{method}.fits").unlink(missing_ok=True)
        (tree["results"] / "logs" / "stacks" / STACK / f"{method}.log").unlink(missing_ok=True)


def assert_stacks_as_before(tree):
    for method in METHODS:
        made = fits.getdata(tree["stacks"] / f"{method}.fits")
        before = fits.getdata(tree["saved"] / f"{method}.fits")
        assert np.array_equal(made, before, equal_nan=True), method
    assert not list(tree["stacks"].glob(".*.tmp"))


def combine_started(tree):
    logs = tree["results"] / "logs" / "stacks" / STACK
    return any((logs / f"{m}.log").exists() for m in METHODS)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_a_run_killed_during_a_combine_is_completed_by_the_next(tree, signal_number):
    remove_stacks(tree)
    run = start(tree)
    try:
        assert wait_for(lambda: combine_started(tree)), "no combine started"
        time.sleep(0.05)  # inside the combine job (a combine takes ~0.1 s here)
        os.killpg(run.pid, signal_number)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode != 0
    present = [m for m in METHODS if (tree["stacks"] / f"{m}.fits").exists()]
    assert len(present) < len(METHODS), "the run finished before it was killed"
    for method in present:  # whatever is there under a product's name is whole
        assert fits.getdata(tree["stacks"] / f"{method}.fits").shape == (192, 192)
    # after SIGKILL Snakemake could not release its lock; the workflow frees
    # a lock whose holder is gone (ccdreduce.stalelock), so no --unlock
    rerun = run_snakemake(*tree["config"])
    if signal_number == signal.SIGKILL:
        assert "removed the lock left by a run that was killed" in rerun.stderr
        # in words, which files and whose: the lock files of the killed run
        assert f"pid {run.pid} " in rerun.stderr, rerun.stderr[-3000:]
        assert ".input.lock" in rerun.stderr and ".output.lock" in rerun.stderr
    assert_stacks_as_before(tree)
    assert "Nothing to be done" in run_snakemake("-n", *tree["config"]).stdout


def test_a_second_run_at_the_same_time_refuses_and_nothing_is_corrupted(tree):
    # the first run redoes everything; it is stopped (SIGSTOP, its workers
    # too) while it holds the lock, so the second surely starts meanwhile,
    # however fast the first would otherwise be
    first = start(tree, "--forceall")
    locks = REPO / ".snakemake" / "locks"
    try:
        assert wait_for(lambda: locks.is_dir() and any(locks.glob("*.lock"))), "no lock taken"
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            second = run_snakemake(*tree["config"], check=False)
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        output = second.stdout + second.stderr
        assert second.returncode != 0
        assert "LockException" in output and "cannot be locked" in output, output[-2000:]
        first_output, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, first_output[-3000:]
    assert_stacks_as_before(tree)


LOCKS = REPO / ".snakemake" / "locks"


def lock_files():
    """The lock files of Snakemake and the holder records of the workflow,
    with their contents: what a dry run must leave as it is."""
    state = {p: p.read_bytes() for p in LOCKS.glob("*") if p.is_file()}
    for record in (REPO / ".snakemake").glob("ccdreduce-lock-holder*"):
        paths = record.rglob("*") if record.is_dir() else [record]
        state.update({p: p.read_bytes() for p in paths if p.is_file()})
    return state


def kill_during_a_combine(tree):
    remove_stacks(tree)
    run = start(tree)
    try:
        assert wait_for(lambda: combine_started(tree)), "no combine started"
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate(timeout=60)
    return run


def test_a_dry_run_leaves_the_lock_of_a_killed_run_alone(tree):
    killed = kill_during_a_combine(tree)
    before = lock_files()
    assert any(p.name.endswith(".lock") for p in before), "the killed run left no lock"
    # looking is not running: only a run that takes the lock may free one
    for look in (["-n"], ["--summary"]):  # a dry run, and a mode that never locks
        run_snakemake(*look, *tree["config"], check=False)
        assert lock_files() == before, look
    rerun = run_snakemake(*tree["config"])
    assert f"pid {killed.pid} " in rerun.stderr, rerun.stderr[-3000:]
    assert not list(LOCKS.glob("*.lock"))
    assert_stacks_as_before(tree)


def other_results(tree, folder):
    """The --config of a run on the same nights into other results, from the
    same checkout: its lock does not clash with a run on tree's results."""
    return [
        f"results_dir={folder / 'results'}" if a.startswith("results_dir=") else a
        for a in tree["config"]
    ]


def current_locks():
    return {p: p.read_bytes() for p in LOCKS.glob("*.lock")}


@contextmanager
def live_run_holding_its_lock(tree):
    """Run A, stopped (SIGSTOP) during its combines: alive and holding its
    lock for as long as the test needs, whatever the speed of the machine.
    Yields its pid and lock files; resumed at the end, it must finish well."""
    remove_stacks(tree)
    live = start(tree)
    try:
        assert wait_for(lambda: combine_started(tree)), "no combine started"
        os.killpg(live.pid, signal.SIGSTOP)
        assert live.poll() is None, "run A ended before it was stopped"
        locks = current_locks()
        assert locks, "run A holds no lock"
        yield live.pid, locks
        os.killpg(live.pid, signal.SIGCONT)
        output, _ = live.communicate(timeout=300)
    finally:
        if live.poll() is None:
            os.killpg(live.pid, signal.SIGCONT)
            os.killpg(live.pid, signal.SIGKILL)
            live.communicate(timeout=60)
    assert live.returncode == 0, output[-3000:]
    assert_stacks_as_before(tree)


def assert_refused(tree):
    third = run_snakemake(*tree["config"], check=False)
    output = third.stdout + third.stderr
    assert third.returncode != 0
    assert "LockException" in output and "cannot be locked" in output, output[-3000:]
    return third


def test_a_killed_runs_lock_is_freed_but_a_live_runs_lock_is_kept(tree, tmp_path):
    """Run A is live and holds its lock; run B, on other results from the same
    checkout, is killed; run C on A's results frees B's lock only and refuses."""
    with live_run_holding_its_lock(tree) as (live_pid, locks_of_live):
        killed = start(tree, config=other_results(tree, tmp_path))
        try:
            logs = tmp_path / "results" / "logs"
            assert wait_for(lambda: logs.is_dir() and any(logs.rglob("*.log"))), "B ran no job"
        finally:
            os.killpg(killed.pid, signal.SIGKILL)
            output_of_killed, _ = killed.communicate(timeout=60)
        assert "LockException" not in output_of_killed, output_of_killed[-2000:]
        locks_of_killed = set(current_locks()) - set(locks_of_live)
        assert locks_of_killed, "run B left no lock"

        third = assert_refused(tree)
        assert current_locks() == locks_of_live
        assert f"pid {killed.pid} " in third.stderr, third.stderr[-3000:]
        for lock in locks_of_killed:
            assert lock.name in third.stderr, third.stderr[-3000:]
        assert f"still running (pid {live_pid} " in third.stderr, third.stderr[-3000:]


def test_a_run_that_ends_leaves_a_live_runs_lock(tree, tmp_path):
    """Run A is live and holds its lock; run D, on other results from the same
    checkout, ends normally; A's lock stays, so a run on A's results refuses.
    (Snakemake itself removes the whole .snakemake/locks as it releases.)"""
    with live_run_holding_its_lock(tree) as (_, locks_of_live):
        bias = tmp_path / "results" / "calib" / "2025-03-01" / "bias.fits"
        run_snakemake(*other_results(tree, tmp_path), "--", bias)
        assert bias.exists()
        assert current_locks() == locks_of_live
        assert_refused(tree)
