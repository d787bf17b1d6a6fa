"""Traps an adversarial sweep found: one bad frame must not fail a stack or a
run, and what can be checked before any job is checked there. Each trap is
replayed on a simulated night with known truth."""

import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import run_snakemake
from helpers import SMALL_CAMERA_SIZE, small_tree, write_night

NIGHT = "2025-03-01"
HOT_COLUMN = 100  # 0-based x of a column that is bright in every science frame


@pytest.fixture(scope="module")
def bad_frames_night(tmp_path_factory):
    """A night of seven science frames: one all NaN, one with EXPTIME 0,
    one of another shape, four good, and a byte-identical copy of a good one
    under another name; a hot column in all."""
    from ccdreduce.simulate import NightSpec, simulate_night

    folder = tmp_path_factory.mktemp("bad_frames")
    sky, raw, results, config = small_tree(folder, nights=())
    spec = NightSpec(
        NIGHT,
        "maxim",
        f"{NIGHT}T20:00:00",
        (0.0, 0.0),
        n_bias=3,
        darks={30.0: 3},
        flats={"R": (2.0, 3)},
        lights={("R", 30.0): 7},
    )
    simulate_night(sky, spec, raw)
    lights = sorted((raw / NIGHT / "NGC2362" / "R").glob("*.fits"))
    for path in lights:
        with fits.open(path, mode="update") as hdul:
            data = hdul[0].data.astype(np.int32)
            data[:, HOT_COLUMN] += 20000
            hdul[0].data = np.clip(data, 0, 65535).astype(np.uint16)
    bad = {"nan": lights[0], "exptime0": lights[1], "shape": lights[2]}
    header = fits.getheader(bad["nan"])
    fits.writeto(
        bad["nan"], np.full((SMALL_CAMERA_SIZE, 200), np.nan, np.float32), header, overwrite=True
    )
    with fits.open(bad["exptime0"], mode="update") as hdul:
        hdul[0].header["EXPTIME"] = hdul[0].header["EXPOSURE"] = 0.0
    header, data = fits.getheader(bad["shape"]), fits.getdata(bad["shape"])
    fits.writeto(bad["shape"], data[:150], header, overwrite=True)
    bad["copy"] = lights[3].with_name("light_R_30s_again.fits")
    shutil.copy2(lights[3], bad["copy"])  # the same frame under another name
    run = run_snakemake(*config, check=False)
    stack = Table.read(results / "stacks" / "NGC_2362" / "R" / "frames.ecsv")
    table = Table.read(results / "calib" / NIGHT / "frames.ecsv")
    return {
        "run": run,
        "results": results,
        "bad": bad,
        "stack": stack,
        "table": table,
        "lights": lights,
    }


def frame_row(table, path):
    return table[[str(f).endswith(path.name) for f in table["file"]]][0]


def test_one_bad_frame_of_each_kind_leaves_the_run_at_exit_0(bad_frames_night):
    run = bad_frames_night["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    stack = bad_frames_night["stack"]
    good = {p.stem for p in bad_frames_night["lights"][3:]}
    assert set(stack["stem"][stack["used"]]) == good  # every good frame is stacked
    header = fits.getheader(bad_frames_night["results"] / "stacks/NGC_2362/R/median.fits")
    assert header["NCOMBINE"] == len(good)


def test_an_all_nan_light_is_left_out_of_its_stack_with_a_reason(bad_frames_night):
    row = frame_row(bad_frames_night["stack"], bad_frames_night["bad"]["nan"])
    assert not row["used"] and "0 found" in row["reason"]
    registered = next(bad_frames_night["results"].glob("registered/*/*/*/light_R_30s_*.fits"))
    header = fits.getheader(registered.parent / bad_frames_night["bad"]["nan"].name)
    assert header["REGSTAT"] == "failed" and "SKYSUB unknown" in str(header["HISTORY"])


def test_a_light_with_exptime_0_is_excluded_before_any_job_with_the_fix(bad_frames_night):
    row = frame_row(bad_frames_night["table"], bad_frames_night["bad"]["exptime0"])
    assert row["status"] == "excluded"
    assert "EXPTIME = 0 s" in row["reason"] and "header_overrides" in row["reason"]
    assert bad_frames_night["bad"]["exptime0"].stem not in bad_frames_night["stack"]["stem"]


def test_one_light_of_another_shape_is_excluded_and_the_night_goes_on(bad_frames_night):
    row = frame_row(bad_frames_night["table"], bad_frames_night["bad"]["shape"])
    assert row["status"] == "excluded"
    assert f"{SMALL_CAMERA_SIZE + 8}x150 pixels" in row["reason"]
    assert "differs from the night's other science frames" in row["reason"]


def test_a_byte_identical_copy_is_counted_once(bad_frames_night):
    original, copy = bad_frames_night["lights"][3], bad_frames_night["bad"]["copy"]
    row = frame_row(bad_frames_night["table"], copy)
    assert row["status"] == "excluded"
    assert row["reason"].startswith(f"byte-identical copy of {NIGHT}/NGC2362/R/{original.name}")
    assert copy.stem not in bad_frames_night["stack"]["stem"]
    assert original.stem in bad_frames_night["stack"]["stem"][bad_frames_night["stack"]["used"]]


def test_a_hot_column_in_every_light_is_not_taken_for_stars(bad_frames_night):
    stack = bad_frames_night["stack"]
    used = stack[stack["used"]]
    # the simulator's seeing is 3.4 px; a column counted as stars gave ~30 px
    assert np.all(used["fwhm"] < 5.0), list(used["fwhm"])
    for stem in used["stem"]:
        catalog = Table.read(bad_frames_night["results"] / "catalogs" / NIGHT / f"{stem}.ecsv")
        # before: about 25 'stars' strung along the column; now at most a real
        # star or two beside it, their light mixed with the column's
        assert np.sum(np.abs(catalog["x"] - HOT_COLUMN) < 1.5) <= 3, stem


def test_a_stack_with_no_usable_frame_points_to_a_file_that_exists(tmp_path):
    sky, raw, results, config = small_tree(tmp_path, nights=((NIGHT, (0.0, 0.0)),))
    # apertures of 20 FWHM fit no star on a 192-pixel frame: nothing to scale on
    extra = tmp_path / "apertures.yaml"
    extra.write_text("stacking:\n  scaling:\n    aperture_fwhm: 20\n")
    result = run_snakemake("--configfile", extra, *config, check=False)
    assert result.returncode != 0
    said = (result.stdout + result.stderr).split("no frame can be stacked; each frame's reason")[1]
    pointed = said.split(" is in ", 1)[1].split(" (lines")[0]
    assert pointed.endswith("frames.log")
    log = open(pointed).read()  # noqa: SIM115 - kept by Snakemake for the failed job
    assert log.count(": EXCLUDED") == 3 and "only 0 stars to scale on" in log


@pytest.mark.parametrize(
    "setting, says",
    [
        ("trim_section=[1:4096,1:4096]", "trim_section [1:4096,1:4096] does not fit frame"),
        ("stacking={'reference': {'M_67/R': '2025-03-01/nosuch'}}", "not one of its frames"),
        ("stacking={'reference': {'M_99/R': '2025-03-01/light_R_30s_0'}}", "no such stack"),
    ],
)
def test_settings_that_cannot_work_stop_before_any_job(tmp_path, setting, says):
    raw, results = tmp_path / "raw", tmp_path / "results"
    write_night(raw, NIGHT, "2025-03-01T20:00:00", shape=(40, 48))
    result = run_snakemake(
        "--config",
        f"raw_dir={raw}",
        f"results_dir={results}",
        "trim_section=null",
        setting,
        check=False,
    )
    assert result.returncode != 0 and says in result.stdout + result.stderr
    assert "Fix:" in result.stdout + result.stderr
    assert not (results / "calib").exists() and not (results / "logs").exists()
