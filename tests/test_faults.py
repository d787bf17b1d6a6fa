"""Faults: a run killed during its combines (SIGTERM, SIGKILL) and two runs
started at once on the same results. Small simulated nights."""

import os
import shutil
import signal
import subprocess
import time

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


def start(tree, *extra):
    """snakemake in its own process group, as a terminal or a batch system
    runs it, so that a signal reaches it and the job it is running."""
    return subprocess.Popen(
        [str(SNAKEMAKE), "--cores", "1", *extra, *tree["config"]],
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
        time.sleep(0.3)  # inside the combine job
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
    assert_stacks_as_before(tree)
    assert "Nothing to be done" in run_snakemake("-n", *tree["config"]).stdout


def test_a_second_run_at_the_same_time_refuses_and_nothing_is_corrupted(tree):
    # the first run redoes everything (tens of seconds on one core), so the
    # second surely starts while the first holds the lock
    first = start(tree, "--forceall")
    locks = REPO / ".snakemake" / "locks"
    try:
        assert wait_for(lambda: locks.is_dir() and any(locks.glob("*.lock"))), "no lock taken"
        second = run_snakemake(*tree["config"], check=False)
        output = second.stdout + second.stderr
        assert second.returncode != 0
        assert "LockException" in output and "cannot be locked" in output, output[-2000:]
        first_output, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, first_output[-3000:]
    assert_stacks_as_before(tree)
