"""Shared fixtures: simulated nights with known truth, and workflow runs."""

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
REAL_NIGHT = REPO.parent / "shared" / "data" / "bsu-2022-10-29" / "raw"


def default_config(**overrides):
    """config.yaml as the workflow sees it (schema defaults filled in)."""
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(copy.deepcopy(overrides))
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    return config


def run_snakemake(*args, check=True, timeout=900, cwd=REPO):
    """Run the workflow from the repository, as a user would (or the
    Snakefile found in ``cwd``)."""
    result = subprocess.run(
        [str(SNAKEMAKE), "--cores", "2", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(map(str, args))} failed:\n{result.stdout[-4000:]}\n"
            f"{result.stderr[-6000:]}"
        )
    return result


def checksums(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


class Truth:
    """The simulator's truth files."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.data = json.loads((self.folder / "truth.json").read_text())
        self.camera = self.data["camera"]
        self.frames = self.data["frames"]

    def image(self, name):
        return fits.getdata(self.folder / f"{name}.fits").astype(np.float64)

    def active(self, name):
        """A truth image cut to the active (trimmed) area."""
        return self.image(name)[: self.camera["ny"], : self.camera["nx"]]

    def frames_of(self, **match):
        return [f for f in self.frames if all(f.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="session", autouse=True)
def cache_home(tmp_path_factory):
    """The user's cache folder (ccdreduce.times keeps the parsed IERS table
    there) in a temporary folder: tests leave nothing in ~/.cache."""
    folder = tmp_path_factory.mktemp("cache_home")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The demo nights, simulated once per session."""
    from ccdreduce.simulate import simulate

    folder = tmp_path_factory.mktemp("demo")
    simulate(folder)
    return folder


@pytest.fixture(scope="session")
def truth(demo):
    return Truth(demo / "truth")


@pytest.fixture(scope="session")
def demo_run(demo):
    """The whole workflow run once on the demo nights."""
    results = demo / "results"
    raw = demo / "raw"
    before = checksums(raw)
    config = ["--config", f"raw_dir={raw}", f"results_dir={results}"]
    dry = run_snakemake("-n", *config)
    run = run_snakemake(*config)
    return {
        "raw": raw,
        "results": results,
        "config": config,
        "dry_run": dry.stdout,
        "run": run,
        "checksums_before": before,
    }
