"""The project keeps its promises: one set of pins, clean lint and format."""

import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, SNAKEMAKE

BIN = Path(sys.executable).parent


def pins(lines):
    return dict(
        re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip()).groups()
        for line in lines
        if "==" in line and not line.strip().startswith("#")
    )


def test_conda_env_repeats_the_pins_of_requirements_txt():
    required = pins((REPO / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs" / "reduce.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip) == required
    assert "python=3.11" in env["dependencies"]
    for name in ("snakemake", "astropy", "ccdproc", "photutils", "numpy", "scipy", "pyyaml"):
        assert name in required


def run(*command):
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_python_is_ruff_clean_and_formatted():
    check = run(str(BIN / "ruff"), "check", ".")
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = run(str(BIN / "ruff"), "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_snakefile_is_formatted():
    result = run(str(BIN / "snakefmt"), "--check", "Snakefile", "rules")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_is_clean(demo):
    result = run(
        str(SNAKEMAKE),
        "--lint",
        "--config",
        f"raw_dir={demo / 'raw'}",
        f"results_dir={demo / 'lint-results'}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, re.M)
