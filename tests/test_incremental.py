"""Rerun only what changed: a new night, a replaced frame, a changed
parameter. Small simulated nights; each step is checked with a dry run,
then run, so the next starts from an up-to-date tree."""

import os
import re

import numpy as np
import pytest
from astropy.io import fits
from conftest import run_snakemake

from ccdreduce.simulate import Camera, NightSpec, Sky, simulate_night

CAMERA = Camera(ny=192, nx=192, overscan=8)


def spec(name, start, pointing):
    return NightSpec(
        name,
        "maxim",
        start,
        pointing,
        n_bias=3,
        darks={30.0: 3},
        flats={"R": (2.0, 3)},
        lights={("R", 30.0): 3},
    )


def planned(result):
    """Output paths of the jobs a dry run would run."""
    outputs = []
    for line in result.stdout.splitlines():
        match = re.match(r"\s+output: (.*)$", line)
        if match:
            outputs += [p.strip() for p in match.group(1).split(",")]
    return outputs


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    folder = tmp_path_factory.mktemp("incremental")
    sky = Sky(CAMERA, seed=7)
    raw, results = folder / "raw", folder / "results"
    for night in (
        spec("2025-03-01", "2025-03-01T20:00:00", (0.0, 0.0)),
        spec("2025-03-02", "2025-03-02T20:00:00", (12.0, -8.0)),
    ):
        simulate_night(sky, night, raw)
    config = [
        "--config",
        f"raw_dir={raw}",
        f"results_dir={results}",
        f"trim_section=[1:{CAMERA.nx},1:{CAMERA.ny}]",
    ]
    run_snakemake(*config)
    return {"sky": sky, "raw": raw, "results": results, "config": config, "folder": folder}


def dry(tree, *extra):
    return planned(run_snakemake("-n", *extra, *tree["config"]))


def dry_with(tree, name, yaml_text):
    """The dry run's plan with some configuration changed (a --configfile)."""
    settings = tree["folder"] / f"{name}.yaml"
    settings.write_text(yaml_text)
    return dry(tree, "--configfile", settings)


def test_1_a_finished_tree_has_nothing_to_do(tree):
    assert dry(tree) == []


def test_2_a_new_night_runs_only_its_own_jobs_and_the_stacks(tree):
    before = (tree["results"] / "stacks" / "NGC_2362" / "R" / "reference.lock").read_text()
    simulate_night(
        tree["sky"], spec("2025-03-03", "2025-03-03T20:00:00", (-10.0, 6.0)), tree["raw"]
    )
    outputs = dry(tree)
    old = [p for p in outputs if "/2025-03-01/" in p or "/2025-03-02/" in p]
    assert old == []
    new = [p for p in outputs if "/2025-03-03/" in p]
    assert any("/calibrated/2025-03-03/" in p for p in new)
    assert any("/registered/2025-03-03/" in p for p in new)
    assert {p.rsplit("/", 1)[1] for p in outputs if "/stacks/" in p} >= {
        "average.fits",
        "median.fits",
        "minmax.fits",
        "sigclip.fits",
        "frames.ecsv",
    }
    run_snakemake(*tree["config"])
    # 5. the reference stayed, so the old registered frames stay valid
    after = (tree["results"] / "stacks" / "NGC_2362" / "R" / "reference.lock").read_text()
    assert after == before


def test_3_a_replaced_raw_frame_reruns_only_what_depends_on_it(tree):
    path = next((tree["raw"] / "2025-03-01").rglob("light_R_30s_*"))
    stem = path.name.split(".")[0]
    with fits.open(path) as hdul:
        data, header = hdul[0].data.astype(np.int32) + 5, hdul[0].header
    path.unlink()
    fits.PrimaryHDU(np.clip(data, 0, 65535).astype(np.uint16), header=header).writeto(path)
    os.utime(path)
    outputs = dry(tree)
    per_frame = [p for p in outputs if re.search(r"/(calibrated|catalogs|registered)/", p)]
    assert sorted(p.rsplit("/", 1)[1].split(".")[0] for p in per_frame) == [stem] * 3
    assert not any("/calib/2025-03-01/" in p and p.endswith(".fits") for p in outputs)
    assert not any("/2025-03-02/" in p or "/2025-03-03/" in p for p in outputs)
    run_snakemake(*tree["config"])


def test_4_a_combine_parameter_reruns_only_that_combine(tree):
    outputs = dry_with(
        tree,
        "sigclip",
        "stacking:\n  combine:\n    sigclip: {method: sigclip, sigma_lower: 2.5, sigma_upper: 3, "
        "maxiters: 10, cenfunc: median, stdfunc: std}\n",
    )
    assert sorted(p.rsplit("/", 1)[1] for p in outputs) == [
        "sigclip.fits",
        "sigclip.png",
        "stats.ecsv",
    ]


def test_4_a_flat_parameter_reruns_the_flats_and_what_they_calibrate(tree):
    outputs = dry_with(
        tree,
        "flat",
        "calibration:\n  combine:\n    flat: {method: sigclip, sigma_lower: 4, sigma_upper: 4, "
        "maxiters: 1, cenfunc: median, stdfunc: mad_std}\n",
    )
    assert sum(p.endswith("/flat_R.fits") for p in outputs) == 3
    assert not any(p.endswith(("/bias.fits", "s.fits")) and "/calib/" in p for p in outputs)
    assert sum("/calibrated/" in p for p in outputs) == 9


def test_4_min_flat_reruns_calibrated_frames_but_not_masters(tree):
    outputs = dry_with(tree, "min_flat", "calibration:\n  min_flat: 0.1\n")
    assert not any("/calib/" in p and p.endswith(".fits") for p in outputs)
    assert sum("/calibrated/" in p for p in outputs) == 9


def test_6_editing_a_science_module_reruns_the_rules_that_use_it(tree):
    from ccdreduce import codedeps

    module = codedeps.PACKAGE / "stars.py"
    original = module.read_text()
    try:
        module.write_text(original + "\n# edited\n")
        outputs = dry(tree)
    finally:
        module.write_text(original)
    assert outputs and all(re.search(r"/(catalogs|registered|stacks)/", p) for p in outputs), (
        outputs
    )
    assert dry(tree) == []  # back to the original: nothing to do
