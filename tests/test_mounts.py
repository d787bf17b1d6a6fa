"""Registration for any mount, end to end: four simulated nights of one
field (a meridian flip halfway, a camera turned 0.8 deg, one turned 90 deg,
one binned 2x2) reduced in one run and stacked, against the simulator's
truth (issue 13's targets)."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import Truth, run_snakemake

from ccdreduce import layout, scaling, simulate
from ccdreduce.stars import detect, median_fwhm

GROUP = "NGC_2362/R"


@pytest.fixture(scope="module")
def mounts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mounts")
    # no overscan: one trim section (none) fits the 1x1 and the 2x2 frames
    simulate.simulate(folder, nights=simulate.mount_nights(), camera=simulate.Camera(overscan=0))
    results = folder / "results"
    run_snakemake(
        "--config",
        f"raw_dir={folder / 'raw'}",
        f"results_dir={results}",
        "trim_section=null",
        # interpolated even where whole pixels would do, so that the applied
        # transform is the measured one, comparable with the truth to 0.05 px
        "stacking={'registration': {'resample': 'subpixel'}}",
    )
    truth = Truth(folder / "truth")
    table = Table.read(results / "stacks" / GROUP / "frames.ecsv", format="ascii.ecsv")
    night, stem = layout.split_frame_id(table.meta["reference"])
    reference = truth.frames_of(night=night, stem=stem)[0]
    return {"results": results, "truth": truth, "table": table, "reference": reference}


def record_of(truth, row):
    return truth.frames_of(night=row["night"], stem=row["stem"])[0]


def test_every_turned_flipped_and_binned_frame_is_used(mounts):
    table = mounts["table"]
    assert len(table) == 16 and table["used"].all(), list(table["reason"])
    by_night = {n: table[table["night"] == n] for n in sorted(set(table["night"]))}
    flipped = by_night["2025-03-10"]
    assert sorted(np.round(np.abs(flipped["rotation_deg"]))) == [0, 0, 180, 180]
    assert list(flipped["pier_side"]) == ["EAST", "EAST", "WEST", "WEST"]
    assert np.allclose(np.abs(by_night["2025-03-12"]["rotation_deg"]), 90, atol=0.01)
    assert np.allclose(by_night["2025-03-13"]["scale_ratio"], 2.0, atol=1e-3)


def test_each_transform_puts_the_true_stars_where_the_references_truth_has_them(mounts):
    truth, table, reference = mounts["truth"], mounts["table"], mounts["reference"]
    x_ref, y_ref = simulate.true_positions(truth, reference)
    n = truth.camera["nx"]
    for row in table:
        record = record_of(truth, row)
        x, y = simulate.true_positions(truth, record)
        landed = np.asarray(row["transform"]) @ np.vstack([x, y, np.ones_like(x)])
        inside = (x_ref > 5) & (x_ref < n - 5) & (y_ref > 5) & (y_ref < n - 5)
        error = np.hypot(landed[0] - x_ref, landed[1] - y_ref)[inside]
        assert np.median(error) < 0.05, (row["night"], row["stem"], np.median(error))


def test_the_average_stack_keeps_star_photometry_and_sharpness(mounts):
    truth, table, reference = mounts["truth"], mounts["table"], mounts["reference"]
    image = fits.getdata(mounts["results"] / "stacks" / GROUP / "average.fits").astype(float)
    # bright isolated stars, inside the stack, and their true flux in reference ADU
    x, y = simulate.true_positions(truth, reference)
    adu = np.asarray(truth.data["stars"]["R"]) * reference["exposure"]
    adu = adu * reference["transparency"] / truth.camera["gain"]
    n = truth.camera["nx"]
    d = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(len(x)) * 1e9
    isolated = ~np.any((d < 30) & (adu[None, :] > 0.01 * adu[:, None]), axis=1)
    keep = (x > 40) & (x < n - 40) & (y > 40) & (y < n - 40) & isolated
    keep &= (adu > 50000) & (adu < 6e5)
    assert keep.sum() >= 8
    ratio = scaling.aperture_fluxes(image, x[keep], y[keep], radius=12.0) / adu[keep]
    relative = ratio / np.nanmedian(ratio)
    assert np.nanstd(relative) <= 0.005, relative
    stars, _ = detect(np.where(np.isfinite(image), image, 0.0), None, threshold=10.0)
    frames_fwhm = float(np.median(table["fwhm"]))
    assert median_fwhm(stars) == pytest.approx(frames_fwhm, rel=0.05)
