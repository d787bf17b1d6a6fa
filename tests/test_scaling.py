"""Scale factors and the stack's frame table (ccdreduce.scaling), on
synthetic stars of known flux; the workflow's scaling of the demo nights is
tested against the truth in test_stacking."""

import logging

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from ccdreduce import scaling
from ccdreduce.fitsfile import write_image

SHAPE = (160, 200)
STARS = [
    (40.0, 40.0, 20000.0),
    (150.0, 50.0, 12000.0),
    (100.0, 110.0, 30000.0),
    (60.0, 120.0, 8000.0),
]
SIGMA = 1.5  # Gaussian sigma, px: FWHM 3.53 px


def sky_with_stars(scale=1.0, sky=100.0, shift=(0.0, 0.0), noise=0.0, seed=1):
    """A sky of ``sky`` ADU with STARS (total flux / ``scale``) at their
    positions + ``shift``; the truth is in STARS."""
    yy, xx = np.indices(SHAPE, dtype=float)
    image = np.full(SHAPE, sky)
    for x, y, flux in STARS:
        r2 = (xx - x - shift[0]) ** 2 + (yy - y - shift[1]) ** 2
        image += flux / scale / (2 * np.pi * SIGMA**2) * np.exp(-r2 / (2 * SIGMA**2))
    if noise:
        image += np.random.default_rng(seed).normal(0, noise, SHAPE)
    return image


def reference_record(xs=None, exposure=60.0):
    stars = {
        "x": np.array([s[0] for s in STARS]),
        "y": np.array([s[1] for s in STARS]),
        "flux": np.array([s[2] for s in STARS]),
        "peak": np.array([s[2] / (2 * np.pi * SIGMA**2) for s in STARS]),
        "saturated": np.zeros(len(STARS), bool),
    }
    return {
        "reference": "n1/ref",
        "how": "test",
        "fwhm": 2.3548 * SIGMA,
        "shape": list(SHAPE),
        "exposure": exposure,
        "stars": stars,
    }


CFG = {
    "aperture_fwhm": 3.0,
    "max_peak_adu": 50000,
    "max_stars": 50,
    "min_stars": 3,
    "min_transparency": 0.5,
    "max_transparency": 1.5,
}


def test_aperture_sums_recover_the_flux_of_known_stars():
    image = sky_with_stars()
    x, y, flux = (np.array(v) for v in zip(*STARS, strict=True))
    measured = scaling.aperture_fluxes(image, x, y, radius=3 * 2.3548 * SIGMA)
    # a 3 FWHM aperture holds all but 2e-11 of a Gaussian's light
    np.testing.assert_allclose(measured, flux, rtol=2e-3)
    image[110, 100] = np.nan  # missing data inside the third star's aperture
    measured = scaling.aperture_fluxes(image, x, y, radius=3 * 2.3548 * SIGMA)
    assert np.isnan(measured[2]) and np.isfinite(measured[[0, 1, 3]]).all()


def test_masked_pixels_are_filled_for_photometry_but_no_data_still_refuses():
    from ccdreduce.fitsfile import MASK_BAD_PIXEL, MASK_NO_DATA

    image = sky_with_stars(noise=2.0)
    x, y, flux = (np.array(v) for v in zip(*STARS, strict=True))
    mask = np.zeros(SHAPE, np.uint8)
    # registered frames are NaN wherever MASK has a bit: hot pixels in the
    # wings of stars 0 and 2 (a filled core pixel would lose ~5 % of the
    # star: the median of its neighbours is below a peak) ...
    for row, col in ((42, 43), (112, 101)):
        image[row, col], mask[row, col] = np.nan, MASK_BAD_PIXEL
    # ... and star 1's aperture runs off the registered frame's edge
    image[:, 158:], mask[:, 158:] = np.nan, MASK_NO_DATA
    radius = 3 * 2.3548 * SIGMA
    measured = scaling.aperture_fluxes(scaling.with_defects_filled(image, mask), x, y, radius)
    np.testing.assert_allclose(measured[[0, 2, 3]], flux[[0, 2, 3]], rtol=0.02)
    assert np.isnan(measured[1])
    # unfilled, each of the stars with a hot pixel would be lost
    assert np.isnan(scaling.aperture_fluxes(image, x, y, radius)[[0, 2]]).all()


def test_scale_factor_is_the_clipped_median_ratio_with_its_error():
    ref = np.array([1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0])
    frame = ref / 2 * np.array([1.0, 1.01, 0.99, 1.0, 1.02, 0.98])
    frame[0] *= 10  # one star blended in the frame: clipped, not averaged in
    scale, error, count = scaling.scale_factor(ref, frame)
    assert count == 5 and scale == pytest.approx(2.0, rel=1e-9)
    assert 0.005 < error < 0.03
    assert scaling.scale_factor(ref, np.full(6, np.nan))[2] == 0


def _star_fluxes(rng, true_flux, gain, sky_noise, area):
    """Aperture fluxes (ADU) of stars of ``true_flux`` with Poisson and sky
    noise, and their errors from scaling.flux_error."""
    sigma = scaling.flux_error(true_flux, area, sky_noise, 4 * area, gain)
    return true_flux + rng.normal(0.0, sigma), sigma


def test_snr_weighted_scale_factors_beat_the_median_against_known_truth():
    # 40 stars over two decades of brightness, as a frame's photometry stars
    # are; the frame through 20 % cloud; 300 seeded trials
    rng = np.random.default_rng(14)
    true_ref = 10 ** rng.uniform(3.0, 5.0, 40)
    truth, gain, area = 1.25, 1.5, 50.0
    median_err, weighted_err, claimed = [], [], []
    for _ in range(300):
        ref, ref_sigma = _star_fluxes(rng, true_ref, gain, 8.0, area)
        frame, sigma = _star_fluxes(rng, true_ref / truth, gain, 8.0, area)
        median_err.append(scaling.scale_factor(ref, frame)[0] / truth - 1)
        scale, error, count = scaling.scale_factor(ref, frame, ref_err=ref_sigma, err=sigma)
        weighted_err.append(scale / truth - 1)
        claimed.append(error / scale)
        assert count >= 36  # clipping leaves honest stars in
    rms_median = np.sqrt(np.mean(np.square(median_err)))
    rms_weighted = np.sqrt(np.mean(np.square(weighted_err)))
    # 0.73 here: the per-star floor (STAR_ERROR_FLOOR) caps the bright stars' weight
    assert rms_weighted < 0.8 * rms_median, (rms_weighted, rms_median)
    # nearly unbiased: errors from measured fluxes lean weights a little
    assert abs(np.mean(weighted_err)) < 0.3 * rms_weighted
    # the claimed error is the error against the truth (floored per star)
    assert 0.7 < rms_weighted / np.sqrt(np.mean(np.square(claimed))) < 1.3


def test_flux_errors_follow_the_noise_model():
    # sky only without a gain; Poisson flux / gain added with one
    sky_only = np.atleast_1d(scaling.flux_error(np.array([1e4]), 50.0, 10.0, 200.0))
    assert sky_only[0] == pytest.approx(np.sqrt(50 * 100 + 2500 * np.pi / 2 * 100 / 200))
    with_gain = np.atleast_1d(scaling.flux_error(np.array([1e4]), 50.0, 10.0, 200.0, gain=2.0))
    assert with_gain[0] ** 2 == pytest.approx(sky_only[0] ** 2 + 1e4 / 2.0)
    assert scaling.frame_gain({"GAIN": 1.5}) == 1.5
    assert scaling.frame_gain({"GAIN": 120}) is None and scaling.frame_gain({}) is None


def test_photometry_stars_skip_saturated_crowded_and_edge_stars():
    reference = reference_record()
    stars = reference["stars"]
    stars["saturated"][2] = True  # the brightest
    stars["x"] = np.append(stars["x"], [3.0, 62.0])  # at the edge; beside star 4
    stars["y"] = np.append(stars["y"], [80.0, 121.0])
    for key, value in (("flux", 9e4), ("peak", 100.0), ("saturated", False)):
        stars[key] = np.append(stars[key], [value, value])
    xs, ys, radius = scaling.photometry_stars(reference, CFG)
    assert radius == pytest.approx(3 * 2.3548 * SIGMA)
    assert list(zip(xs, ys, strict=True)) == [(40.0, 40.0), (150.0, 50.0)]


def test_frames_are_measured_scaled_and_tabled_with_units(tmp_path):
    reference = reference_record()
    frames, truth = [], {"ref": 1.0, "thin": 1.25, "cloud": 4.0}
    for stem, scale in truth.items():
        header = fits.Header({"REGSTAT": "ok", "DX": 0.0, "DXMEAS": 0.3, "DYMEAS": -0.2})
        path = tmp_path / f"{stem}.fits"
        write_image(path, sky_with_stars(scale, sky=0.0, noise=0.5), header)
        catalog_path = tmp_path / f"{stem}.ecsv"
        meta = {"exposure": 60.0, "fwhm": 2.3548 * SIGMA, "noise": 0.5}
        Table(
            {
                "x": [1.0],
                "y": [1.0],
                "flux": [1.0],
                "peak": [1.0],
                "fwhm": [1.0],
                "saturated": [False],
            },
            meta=meta,
        ).write(catalog_path, format="ascii.ecsv")
        frames.append(
            {
                "id": f"n1/{stem}",
                "night": "n1",
                "stem": stem,
                "file": f"n1/{stem}.fit",
                "catalog": catalog_path,
                "registered": path,
            }
        )
    reference["reference"] = "n1/ref"
    rows, photometry = scaling.measure_frames(frames, reference, CFG, logging.getLogger())
    by_stem = {row["stem"]: row for row in rows}
    for stem, scale in truth.items():
        assert by_stem[stem]["scale"] == pytest.approx(scale, rel=5e-3), stem
    assert by_stem["thin"]["transparency"] == pytest.approx(0.8, rel=2e-3)
    thin = by_stem["thin"]  # weight: inverse variance of the scaled frame, 1 / (noise x scale)^2
    assert thin["used"] and thin["weight"] == pytest.approx(1 / (0.5 * thin["scale"]) ** 2)
    assert not by_stem["cloud"]["used"] and by_stem["cloud"]["reason"].startswith("heavy cloud")
    table = scaling.frames_table(rows, reference, photometry)
    assert tuple(table.colnames) == scaling.COLUMNS
    assert str(table["dx"].unit) == "pix" and str(table["exposure"].unit) == "s"
    assert table["scale"].description.startswith("factor that brings")
    path = tmp_path / "frames.ecsv"
    table.write(path, format="ascii.ecsv")
    back = Table.read(path, format="ascii.ecsv")
    assert str(back["sky"].unit) == "adu" and back["weight"].unit == table["weight"].unit
    assert np.isnan(back["dy"][0]) and back["dx"][0] == 0.0  # a card the header lacks: NaN
    assert back.meta["reference"] == "n1/ref" and len(back.meta["photometry_stars_x"]) == 4
    line = scaling.log_line(by_stem["cloud"])
    assert (
        line.startswith("n1/cloud: EXCLUDED dx +0.30 dy -0.20 scale 4.00") and "heavy cloud" in line
    )


def test_the_method_comparison_measures_sky_noise_and_flux_ratios():
    reference = sky_with_stars(sky=0.0, noise=2.0, seed=1)
    stacked = sky_with_stars(sky=0.0, noise=1.0, seed=2) * 1.01
    frames = Table(
        {"night": ["n1"], "stem": ["ref"], "fwhm": [2.3548 * SIGMA], "used": [True]},
        meta={
            "reference": "n1/ref",
            "aperture_radius": 3 * 2.3548 * SIGMA,
            "photometry_stars_x": [s[0] for s in STARS],
            "photometry_stars_y": [s[1] for s in STARS],
        },
    )
    table = scaling.method_comparison(frames, [("reference", reference), ("average", stacked)])
    assert list(table["image"]) == ["reference", "average"]
    assert str(table["sky_std"].unit) == "adu" and table["star2_ratio"].unit is None
    assert table["star3_sum"].description.startswith("aperture sum")
    assert table["sky_std"][0] == pytest.approx(2.0, rel=0.05)
    assert table["sky_std"][1] == pytest.approx(1.01, rel=0.05)
    assert table["median_ratio"][0] == 1.0
    assert table["median_ratio"][1] == pytest.approx(1.01, abs=0.003)
    assert table["star1_ratio"][1] == pytest.approx(1.01, abs=0.003)


def test_a_frame_is_judged_by_its_stars_and_its_transparency():
    cfg = {"min_stars": 3, "min_transparency": 0.5, "max_transparency": 1.5}
    ref = np.array([1000.0, 2000.0, 4000.0, 8000.0])
    clear = scaling.judge_frame(ref, ref / 2, exposure=30, ref_exposure=60, noise=10, cfg=cfg)
    assert clear["used"] and clear["scale"] == pytest.approx(2.0)
    assert clear["transparency"] == pytest.approx(1.0)  # half the light in half the time
    assert clear["weight"] == pytest.approx(1 / 20**2)
    cloud = scaling.judge_frame(ref, ref / 5, exposure=60, ref_exposure=60, noise=10, cfg=cfg)
    assert not cloud["used"] and cloud["reason"].startswith("heavy cloud: transparency 0.20")
    few = scaling.judge_frame(ref[:2], ref[:2], exposure=60, ref_exposure=60, noise=10, cfg=cfg)
    assert not few["used"] and few["reason"] == "only 2 stars to scale on (3 needed)"


def test_a_frame_brighter_than_any_sky_allows_is_left_out():
    # the frame: scale 0.367, transparency 2.72 through the same exposure
    cfg = {"min_stars": 3, "min_transparency": 0.5, "max_transparency": 1.5}
    ref = np.array([1000.0, 2000.0, 4000.0, 8000.0])
    bright = scaling.judge_frame(ref, ref / 0.367, exposure=60, ref_exposure=60, noise=10, cfg=cfg)
    assert bright["transparency"] == pytest.approx(2.72, abs=0.01)
    assert not bright["used"] and bright["weight"] == 0
    assert bright["reason"].startswith(
        "more light per second than the reference: transparency 2.72"
    )


def _selection_rows():
    """Ten used frames: FWHM 4.0-4.18 px but one at 7 px, one with a sky
    of 5000 ADU, one trailed (roundness 1.6), one through thin cloud (40
    stars instead of ~200); the reference is the sharpest."""
    rows = []
    for i in range(10):
        rows.append(
            {
                "fwhm": 4.0 + 0.02 * i,
                "roundness": 1.05 + 0.005 * i,
                "n_stars": 200 + i,
                "sky": 900.0 + 10 * i,
                "used": True,
                "weight": 1.0,
                "weight_seeing": 1.0,
                "reason": "",
            }
        )
    rows[3]["fwhm"] = 7.0
    rows[5]["sky"] = 5000.0
    rows[7]["roundness"] = 1.6
    rows[8]["n_stars"] = 40
    return rows, [f"n1/f{i}" for i in range(10)]


def test_selection_thresholds_leave_out_the_frames_beyond_them_with_the_reason():
    rows, ids = _selection_rows()
    select = {"fwhm": "3 sigma", "roundness": 1.3, "stars": "3 sigma", "sky": 2000}
    notes = scaling.select_frames(rows, ids, "n1/f0", select)
    out = {frame: row["reason"] for frame, row in zip(ids, rows, strict=True) if not row["used"]}
    assert sorted(out) == ["n1/f3", "n1/f5", "n1/f7", "n1/f8"]
    assert out["n1/f3"].startswith("selection: FWHM 7 px beyond")
    assert "stacking.select.fwhm: 3 sigma from the median" in out["n1/f3"]
    assert out["n1/f5"].startswith("selection: sky 5000 ADU beyond 2000 ADU")
    assert "roundness (axis ratio) 1.6 beyond 1.3" in out["n1/f7"]
    assert out["n1/f8"].startswith("selection: star count 40 beyond")  # too few
    assert all(rows[i]["weight"] == 0 and rows[i]["weight_seeing"] == 0 for i in (3, 5, 7, 8))
    assert len(notes) == 4 and all("left out" in note for note in notes)


def test_selection_never_leaves_out_the_reference_and_null_is_off():
    rows, ids = _selection_rows()
    notes = scaling.select_frames(rows, ids, "n1/f3", {"fwhm": 5.0, "sky": None})
    assert rows[3]["used"] and rows[3]["reason"] == ""
    assert notes == [
        "n1/f3: the reference kept despite selection: FWHM 7 px beyond 5 px "
        "(stacking.select.fwhm: max 5)"
    ]
    assert scaling.select_frames(rows, ids, "n1/f0", {}) == []
    with pytest.raises(ValueError, match="k sigma"):
        scaling.parse_threshold("two sigma")


def test_the_seeing_weight_is_the_noise_weight_over_the_fwhm_squared():
    assert scaling.seeing_weight(4.0, fwhm=6.0, reference_fwhm=3.0) == pytest.approx(1.0)
    assert scaling.seeing_weight(4.0, fwhm=3.0, reference_fwhm=3.0) == 4.0
    assert scaling.seeing_weight(4.0, fwhm=np.nan, reference_fwhm=3.0) == 0.0
