"""The demo workflow on a real single-node SLURM (cluster/local-slurm.sh
starts it from Debian packages) through --profile profiles/slurm: the same
stacks as the local run, with a night's per-frame jobs submitted together.

Skips, with the reason, where SLURM cannot be started (not root, no
apt-get, plugin not installed); stops only the daemons it started."""

import importlib.util
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits
from conftest import REPO, SNAKEMAKE

SCRIPT = REPO / "cluster" / "local-slurm.sh"


def why_not():
    if os.geteuid() != 0:
        return "SLURM needs root here (apt-get install, daemons): run the tests as root"
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        return "no apt-get to install slurmctld, slurmd and munge"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "the SLURM executor plugin is missing: pip install -r requirements-slurm.txt"
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = why_not()
    if reason:
        pytest.skip(reason)
    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    assert started.returncode == 0, started.stdout + started.stderr
    yield
    stopped = subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def slurm_run(slurm, demo_run, tmp_path_factory):
    results = tmp_path_factory.mktemp("slurm") / "results"
    # timeout -k: a hung snakemake (e.g. a status check that never answers)
    # fails the test instead of eating the CI's time
    command = [
        "timeout",
        "-k",
        "30",
        "1500",
        str(SNAKEMAKE),
        "--profile",
        "profiles/slurm",
        "--config",
        f"raw_dir={demo_run['raw']}",
        f"results_dir={results}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"exit {result.returncode}:\n{output[-8000:]}"
    return results, output


def test_every_stack_equals_the_local_run(slurm_run, demo_run):
    results, _ = slurm_run
    local = sorted((demo_run["results"] / "stacks").rglob("*.fits"))
    assert len(local) == 8  # two filters x four methods
    for path in local:
        on_cluster = results / path.relative_to(demo_run["results"])
        a, b = fits.getdata(path), fits.getdata(on_cluster)
        assert np.array_equal(np.isnan(a), np.isnan(b)), path
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-4, equal_nan=True, err_msg=str(path))


def test_a_nights_frames_go_to_the_cluster_together(slurm_run, demo_run):
    _, output = slurm_run
    jobs = int(re.search(r"^total\s+(\d+)$", demo_run["dry_run"], re.M).group(1)) - 1
    submitted = set(re.findall(r"SLURM jobid (\d+)", output))
    # 38 workflow jobs: 3 nights' frames, 3 nights' masters (borrowed masters
    # may join them), 1 batch of registrations, 2 references, 2 stacks
    assert 5 <= len(submitted) <= 12, (len(submitted), jobs)
    assert len(submitted) < jobs / 3
