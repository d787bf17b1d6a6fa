"""Issue 15: a night of lights only (a smart telescope: no bias, dark or
flat frames anywhere, no overscan) stacks with on_missing: uncalibrated,
and says so in the frame table, the night log, the job logs and the
headers; with on_missing: error the run stops naming night, frame and the
fix. The workflow runs once on simulate.lights_only_night() (eight 20 s R
frames, 256 x 192 pixels, an even response: the stack can be held against
the stars' truth without a flat).
"""

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.stats import mad_std
from astropy.table import Table
from conftest import Truth, run_snakemake

from ccdreduce import catalog, layout, scaling, simulate

GROUP = "NGC_2362/R"


def write_config(folder, **calibration):
    path = folder / f"config_{'_'.join(calibration.values()) or 'default'}.yaml"
    settings = {
        "raw_dir": str(folder / "raw"),
        "results_dir": str(folder / "results"),
        "trim_section": None,  # no overscan strip to cut off
        "calibration": calibration,
    }
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(scope="module")
def lights_only(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lights_only")
    night = simulate.lights_only_night()
    simulate.simulate(folder, nights=[night], camera=simulate.smart_camera())
    refused = run_snakemake("-n", "--configfile", write_config(folder), check=False)
    run = run_snakemake("--configfile", write_config(folder, on_missing="uncalibrated"))
    results = folder / "results"
    table = Table.read(layout.stack(results, GROUP, "frames.ecsv"), format="ascii.ecsv")
    truth = Truth(folder / "truth")
    return {
        "night": night.name,
        "results": results,
        "truth": truth,
        "table": table,
        "refused": refused,
        "run": run,
    }


def record_of(truth, row):
    (record,) = truth.frames_of(night=row["night"], stem=row["stem"])
    return record


def reference_record(run):
    night, stem = layout.split_frame_id(run["table"].meta["reference"])
    (record,) = run["truth"].frames_of(night=night, stem=stem)
    return record


def test_on_missing_error_names_night_frame_and_the_new_option(lights_only):
    refused = lights_only["refused"]
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    night = lights_only["night"]
    assert f"night {night}, frame {night}/NGC2362/R/light_R_20s_001.fits: no bias frames" in output
    assert "calibration.on_missing: uncalibrated" in output


def test_the_night_stacks_and_every_product_says_uncalibrated(lights_only):
    results, night = lights_only["results"], lights_only["night"]
    frames = Table.read(layout.calib(results, night, "frames.ecsv"), format="ascii.ecsv")
    assert len(frames) == 8 and set(frames["status"]) == {"used"}
    assert set(frames["calibration"]) == {"uncalibrated"}
    assert all(
        u.startswith("dark current (no darks within 30 d), bias structure, flat field")
        for u in frames["uncorrected"]
    )
    log = Table.read(layout.calib(results, night, "night_log.ecsv"), format="ascii.ecsv")
    assert set(log["calibration"]) == {"uncalibrated: no bias, dark, flat (pedestal subtracted)"}
    for row in frames:
        header = fits.getheader(results / row["output"])
        assert header["CALSTATE"] == "uncalibrated"
        assert header["PEDSRC"] == "p0.5" and 400 < header["PEDESTAL"] < 540
        history = "\n".join(str(h) for h in header["HISTORY"])
        assert "the frame's 0.5th percentile" in history
    calibrate_log = (results / "logs" / "calibrated" / f"{night}.log").read_text()
    assert calibrate_log.count("WARNING") and "uncalibrated, left uncorrected: dark current" in (
        calibrate_log
    )
    table_log = (results / "logs" / "calib" / night / "frames.log").read_text()
    assert "WARNING science frames: 8 uncalibrated" in table_log
    for method in ("average", "median", "minmax", "sigclip"):
        stack = fits.getheader(layout.stack(results, GROUP, f"{method}.fits"))
        assert stack["CALSTATE"] == "uncalibrated" and stack["NCOMBINE"] == 8
        assert "inputs: 8 uncalibrated" in [str(h) for h in stack["HISTORY"]]


def test_every_frame_is_registered_and_scaled_as_the_truth_says(lights_only):
    # registration subtracts the sky, which the pedestal left at ~30 ADU, and
    # finds the stars without a flat; measured: shifts within 0.004 px of the
    # truth, scales within 0.34 % (rms 0.20 %, each within 1.14 scale_err)
    table, truth = lights_only["table"], lights_only["truth"]
    reference = reference_record(lights_only)
    assert all(table["used"]) and min(table["n_match"]) >= 20
    for row in table:
        record = record_of(truth, row)
        expected = simulate.relative_transform(reference, record)[:, 2]
        measured = np.array([row["dx_measured"], row["dy_measured"]])
        assert np.hypot(*(measured - expected)) < 0.05, row["stem"]
        # at one exposure, the scale is the reference's transparency over the frame's
        error = row["scale"] * record["transparency"] / reference["transparency"] - 1
        assert abs(error) < max(3 * row["scale_err"], 0.005), (row["stem"], error)


def bright_isolated(truth, reference, shape, margin=12):
    """True (x, y) on the reference grid and reference ADU of stars brighter
    than 5000 ADU, unsaturated, with no star above 5 % of their flux within
    15 px (the apertures and their sky annuli stay clean)."""
    x, y = simulate.true_positions(truth, reference)
    adu = np.asarray(truth.data["stars"]["R"]) * reference["exposure"]
    adu = adu * reference["transparency"] / truth.camera["gain"]
    ny, nx = shape
    inside = (x > margin) & (x < nx - margin) & (y > margin) & (y < ny - margin)
    d = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(len(x)) * 1e9
    isolated = ~np.any((d < 15) & (adu[None, :] > 0.05 * adu[:, None]), axis=1)
    keep = inside & isolated & (adu > 5000) & (adu < 5e5)
    return x[keep], y[keep], adu[keep]


def test_the_stack_has_the_stars_where_and_as_bright_as_the_truth(lights_only):
    results, truth, table = lights_only["results"], lights_only["truth"], lights_only["table"]
    reference = reference_record(lights_only)
    average = fits.getdata(layout.stack(results, GROUP, "average.fits")).astype(np.float64)
    x, y, adu = bright_isolated(truth, reference, average.shape)
    assert len(x) >= 12  # 16 on this field
    # positions: whole-pixel shifts leave each frame's fraction of a pixel,
    # so the stack's stars sit at the mean of those residuals (measured:
    # median 0.012 px from it, worst 0.044 px)
    residual = [
        np.array([row["dx"], row["dy"]])
        - simulate.relative_transform(reference, record_of(truth, row))[:, 2]
        for row in table
    ]
    expected_x, expected_y = np.array([x, y]) + np.mean(residual, axis=0)[:, None]
    stars, _ = catalog.measure(average.astype(np.float32), None, "stack", 20.0, 5.0)
    sx, sy = np.asarray(stars["x"]), np.asarray(stars["y"])
    distance = np.hypot(sx[:, None] - expected_x[None], sy[:, None] - expected_y[None])
    found = distance.min(axis=0)
    assert np.median(found) < 0.03 and found.max() < 0.1, found
    # photometry against the truth (an even response: no flat was needed).
    # An 8 px aperture holds 98.2 % of a Moffat (beta 3, FWHM 3.2 px); the
    # average keeps the hot pixels no dark took away (measured: median
    # 0.979, scatter 1.1 %, worst 2.6 %), sigma clipping rejects them
    # (median 0.959, scatter 0.6 %, worst 1.3 %: whole-pixel shifts make the
    # star cores differ, and it clips their highest values)
    for method, low, scatter, worst in (
        ("average", 0.96, 0.02, 0.04),
        ("sigclip", 0.94, 0.012, 0.025),
    ):
        image = fits.getdata(layout.stack(results, GROUP, f"{method}.fits")).astype(np.float64)
        ratio = scaling.aperture_fluxes(image, x, y, radius=8.0) / adu
        assert np.isfinite(ratio).all()
        relative = ratio / np.median(ratio) - 1
        assert low < np.median(ratio) < 1.0, (method, np.median(ratio))
        assert np.std(relative) < scatter and np.abs(relative).max() < worst, (method, relative)


def test_an_uncalibrated_frames_uncertainty_is_its_sky_noise(lights_only):
    # no gain anywhere (GAIN = 80 is a setting): the model is fitted to the
    # pedestal-subtracted sky (away from stars), its gain a lower bound.
    # Against the scatter of star-free pixels (neighbour differences: the
    # bias columns and the even sky are not noise) UNCERT is 0.97-0.98 on
    # these frames (1.13-1.18 while the sky's noise was read with the stars)
    results, truth, table = lights_only["results"], lights_only["truth"], lights_only["table"]
    for row in table[:3]:
        record = record_of(truth, row)
        path = layout.calibrated(results, row["night"], row["stem"])
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data.astype(np.float64)
            uncert = hdul["UNCERT"].data.astype(np.float64)
        assert header["NOISESRC"] == "sky" and header["GAIN"] < truth.camera["gain"]
        free = simulate.star_free(truth, record, data.shape, record["sky_sigma_adu"])
        pairs = free[:, 1:] & free[:, :-1]
        scatter = mad_std((data[:, 1:] - data[:, :-1])[pairs]) / np.sqrt(2)
        ratio = np.median(uncert[free]) / scatter
        assert 0.9 < ratio < 1.1, (row["stem"], ratio)
    log = (results / "logs" / "calibrated" / f"{lights_only['night']}.log").read_text()
    assert "the pedestal took most of the sky with the bias" in log
