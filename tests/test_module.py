"""The workflow used as a module of another workflow (`module ccd: ...` and
`use rule * from ccd as ccd_*`): the host's folder has no scripts/, schemas/
or envs/ of its own, so every path must resolve from this workflow's files.
Dry runs only."""

import re
import textwrap

import yaml
from conftest import REPO, run_snakemake
from helpers import small_tree


def job_counts(dry_run_output):
    table = dry_run_output.split("Job stats:")[1]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def outputs(dry_run_output):
    """Every output path the dry run plans."""
    found = set()
    for line in dry_run_output.splitlines():
        if match := re.match(r"\s+output: (.*)$", line):
            found.update(p.strip() for p in match.group(1).split(","))
    return found


def test_a_host_workflow_plans_every_job_of_the_module_under_its_prefix(tmp_path):
    _, raw, results, _ = small_tree(tmp_path / "data")  # 2 nights, one R stack
    host = tmp_path / "host"
    host.mkdir()
    settings = {"raw_dir": str(raw), "results_dir": str(results), "trim_section": "[1:192,1:192]"}
    (host / "config.yaml").write_text(yaml.safe_dump({"ccd": settings}))
    (host / "Snakefile").write_text(
        textwrap.dedent(
            f"""\
            configfile: "config.yaml"


            module ccd:
                snakefile:
                    "{REPO / "Snakefile"}"
                config:
                    config["ccd"]


            use rule * from ccd as ccd_*


            rule all:
                default_target: True
                input:
                    rules.ccd_all.input,
            """
        )
    )
    hosted = run_snakemake("-n", cwd=host)  # fails naming the error, if any

    methods = len(yaml.safe_load((REPO / "config.yaml").read_text())["stacking"]["methods"])
    per_night = ("master_bias", "master_dark", "master_flat", "calibrate", "frame_table")
    expected = {f"ccd_{rule}": 2 for rule in per_night} | {
        "ccd_register": 2,  # one per night of the one stack
        "ccd_choose_reference": 1,
        "ccd_scale_frames": 1,
        "ccd_combine_stack": methods,
        "ccd_stack_stats": 1,
        "all": 1,
    }
    counts = job_counts(hosted.stdout)
    assert counts == expected | {"total": sum(expected.values())}
    assert f"{results}/stacks/NGC_2362/R/median.fits" in outputs(hosted.stdout)

    # the same plan as the workflow run on its own, rule names aside
    alone = run_snakemake("-n", "--config", *(f"{k}={v}" for k, v in settings.items()))
    assert {
        ("ccd_" + rule if rule not in ("all", "total") else rule): n
        for rule, n in job_counts(alone.stdout).items()
    } == counts
    assert outputs(alone.stdout) == outputs(hosted.stdout)
