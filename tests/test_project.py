"""The project keeps its promises: one set of pins, clean lint and format."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, run_snakemake

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


def clean_checkout(folder):
    """The repository's files as a fresh clone has them (tracked, or new and
    not ignored, as in the working tree): no demo/, results/ or .snakemake/."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    assert listed.returncode == 0, listed.stderr
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    return folder


def test_snakemake_lint_is_clean_on_a_fresh_clone_with_the_test_config(tmp_path):
    clone = clean_checkout(tmp_path / "clone")
    assert not (clone / "demo").exists() and not (clone / "results").exists()
    assert sorted(p.name for p in (clone / ".test" / "raw").rglob("*.fits"))  # committed
    result = run_snakemake(
        "--lint", "--configfile", ".test/config/config.yaml", cwd=clone, check=False
    )
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "Congratulations, your workflow is in a good condition!" in said
    assert "Lints for" not in said
    # parsing wrote only the header cache, and under .test/results
    assert (clone / ".test" / "results" / ".cache").is_dir()
    assert not (clone / "results").exists() and not (clone / "demo").exists()
    # the Makefile's lint target lints the same way
    makefile = (REPO / "Makefile").read_text()
    assert "snakemake --lint --configfile .test/config/config.yaml" in makefile


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_every_report_output_has_a_caption_that_exists():
    rules = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    flagged = rules.count("report(")
    captions = re.findall(r'caption="\.\./(report/[\w.-]+\.rst)"', rules)
    assert flagged and len(captions) == flagged
    for caption in captions:
        assert len((REPO / caption).read_text().split()) > 20, caption
    workflow = (REPO / "report" / "workflow.rst").read_text()
    for stage in ("registration", "scaling", "combine", "stacking.methods"):
        assert stage in workflow


def test_license_and_workflow_catalog_settings():
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the ccdreduce developers" in license_text
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert "raw_dir=" in usage["mandatory-flags"]["flags"]
    # the catalog claims per-rule conda environments only if rules name them
    rules = "".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    assert usage["software-stack-deployment"]["conda"] is ("conda:" in rules)
