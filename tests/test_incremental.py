"""Rerun only what changed: a new night, a replaced frame, a changed
parameter. Small simulated nights; each step is checked with a dry run,
then run, so the next starts from an up-to-date tree."""

import os
import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import run_snakemake
from helpers import small_night, small_tree

from ccdreduce.simulate import simulate_night


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
    sky, raw, results, config = small_tree(folder)
    run_snakemake(*config)
    return {"sky": sky, "raw": raw, "results": results, "config": config, "folder": folder}


def dry(tree, *extra):
    return planned(run_snakemake("-n", *extra, *tree["config"]))


def dry_with(tree, name, yaml_text):
    """The dry run's plan with some configuration changed (a --configfile)."""
    settings = tree["folder"] / f"{name}.yaml"
    settings.write_text(yaml_text)
    return dry(tree, "--configfile", settings)


def is_master(path):
    """A master's FITS (calib/<night>/), not the night's bad-pixel map, which
    the calibrate job makes beside them."""
    return "/calib/" in path and path.endswith(".fits") and "/bad_pixels." not in path


def test_1_a_finished_tree_has_nothing_to_do(tree):
    assert dry(tree) == []


def history(path):
    """A FITS file's HISTORY as one string (long notes span several cards)."""
    return "".join(fits.getheader(path)["HISTORY"])


def test_1_minmax_of_six_frames_says_what_it_rejected(tree):
    """Six frames cannot lose the configured 3 low and 3 high: both are
    reduced to 2, and HISTORY says so beside the configured values."""
    folder = tree["results"] / "stacks" / "NGC_2362" / "R"
    assert sum(Table.read(folder / "frames.ecsv")["used"]) == 6  # two nights of three
    text = history(folder / "minmax.fits")
    assert "stack_minmax: n_low = 3" in text and "stack_minmax: n_high = 3" in text
    assert (
        "minmax: 6 frames: rejected 2 low 2 high where all overlap (configured 3/3, "
        "reduced symmetrically to keep >= 1)" in text
    ), text


def test_1_a_stack_entry_with_only_its_method_takes_the_stacking_defaults(tree):
    """`sigclip: {method: sigclip}` used to be 5/5 sigma, one pass, MAD: the
    masters' recipe, filled in by the schema's shared definition. A stack's
    defaults: 3/5 sigma, up to 10 passes, about the median, MAD width never
    below the inputs' noise (issue 14), noise-weighted."""
    settings = tree["folder"] / "bare.yaml"
    settings.write_text(
        "stacking:\n  methods: [average, median, minmax, sigclip, bare]\n"
        "  combine:\n    bare: {method: sigclip}\n"
    )
    target = tree["results"] / "stacks" / "NGC_2362" / "R" / "bare.fits"
    run_snakemake(target, "--configfile", settings, *tree["config"])
    text = history(target)
    for expected in (
        "stack_sigclip: sigma_lower = 3",
        "stack_sigclip: sigma_upper = 5",
        "stack_sigclip: maxiters = 10",
        "stack_sigclip: cenfunc = median",
        "stack_sigclip: stdfunc = mad_std",
        "stack_sigclip: noise_floor = True",
        "stack_sigclip: weights = noise",
    ):
        assert expected in text, (expected, text)
    assert fits.getheader(target)["COMBMETH"] == "sigclip"


def test_2_a_new_night_runs_only_its_own_jobs_and_the_stacks(tree):
    before = (tree["results"] / "stacks" / "NGC_2362" / "R" / "reference.lock").read_text()
    simulate_night(
        tree["sky"], small_night("2025-03-03", "2025-03-03T20:00:00", (-10.0, 6.0)), tree["raw"]
    )
    outputs = dry(tree)
    old = [p for p in outputs if re.search(r"/2025-03-0[12](/|$)", p)]
    assert old == []
    new = [p for p in outputs if re.search(r"/2025-03-03(/|$)", p)]
    assert f"{tree['results']}/calibrated/2025-03-03" in new
    assert f"{tree['results']}/registered/2025-03-03/NGC_2362/R" in new
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
    with fits.open(path) as hdul:
        data, header = hdul[0].data.astype(np.int32) + 5, hdul[0].header
    path.unlink()
    fits.PrimaryHDU(np.clip(data, 0, 65535).astype(np.uint16), header=header).writeto(path)
    os.utime(path)
    outputs = dry(tree)
    # --summary says the same per output file: stale (update pending) or not
    summary = run_snakemake("--summary", *tree["config"]).stdout
    plan = {line.split("\t")[0]: line.split("\t")[-1] for line in summary.splitlines()[1:]}
    assert plan[f"{tree['results']}/calibrated/2025-03-01"] == "update pending"
    assert plan[f"{tree['results']}/calibrated/2025-03-02"] == "no update"
    # calibration runs per night: that night's folders, nothing else
    assert sorted(p for p in outputs if re.search(r"/(calibrated|catalogs)/", p)) == [
        f"{tree['results']}/{kind}/2025-03-01" for kind in ("calibrated", "catalogs")
    ]
    # registration runs per night and stack: that night's folder of the stack
    assert [p for p in outputs if "/registered/" in p] == [
        f"{tree['results']}/registered/2025-03-01/NGC_2362/R"
    ]
    assert not any("/calib/2025-03-01/" in p and is_master(p) for p in outputs)
    assert not any(re.search(r"/2025-03-0[23](/|$)", p) for p in outputs)
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
    assert not any(p.endswith(("/bias.fits", "s.fits")) and is_master(p) for p in outputs)
    assert sum("/calibrated/" in p for p in outputs) == 3  # one job per night


def test_4_min_flat_reruns_calibrated_frames_but_not_masters(tree):
    outputs = dry_with(tree, "min_flat", "calibration:\n  min_flat: 0.1\n")
    assert not any(is_master(p) for p in outputs)
    assert sum("/calibrated/" in p for p in outputs) == 3  # one job per night


def dry_after_editing(tree, path):
    """The dry run's outputs with a comment added to ``path`` (then removed)."""
    original = path.read_text()
    try:
        path.write_text(original + "\n# edited\n")
        return dry(tree)
    finally:
        path.write_text(original)


def test_6_editing_a_science_module_reruns_the_rules_that_use_it(tree):
    from ccdreduce import codedeps

    outputs = dry_after_editing(tree, codedeps.PACKAGE / "stars.py")
    # stars.py runs in the calibrate job (the catalogue), so calibrated frames,
    # registration, stacks and the nights' tables rerun; the masters do not use it
    assert any("/catalogs/" in p for p in outputs)
    assert all(
        re.search(r"/(calibrated|catalogs|registered|stacks)/", p)
        or p.endswith(("/frames.ecsv", "/night_log.ecsv"))
        or "/bad_pixels." in p  # the calibrate job's too
        for p in outputs
    ), outputs
    assert not any(is_master(p) or is_master(p.replace(".png", ".fits")) for p in outputs)
    assert dry(tree) == []  # back to the original: nothing to do


def test_6b_editing_a_rule_script_reruns_that_rule_and_what_follows(tree):
    # rules call their scripts from run: blocks, which Snakemake does not
    # track: the script is part of params.code
    from ccdreduce import codedeps

    outputs = dry_after_editing(tree, codedeps.PACKAGE.parent / "combine_stack.py")
    assert any(p.endswith("/average.fits") for p in outputs)
    assert all("/stacks/" in p for p in outputs), outputs
    assert not any(p.endswith(("/frames.ecsv", "reference.json")) for p in outputs)
    assert dry(tree) == []
