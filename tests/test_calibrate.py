"""Calibrating science frames: the stages on exact numbers, then the
workflow's calibrated demo frames against the simulator's truth."""

import numpy as np
import pytest
from astropy.io import fits

from ccdreduce.calibrate import STAGES, Masters, Settings, calibrate_frame
from ccdreduce.fitsfile import MASK_BAD_FLAT, MASK_SATURATED, read_product, write_image

SHAPE = (30, 40)


def recipe(**kwargs):
    base = {
        "bias": None,
        "dark": None,
        "dark_scale": 0.0,
        "dark_includes_bias": False,
        "flat": None,
        "overscan": False,
        "notes": [],
        "uncorrected": [],
    }
    return base | kwargs


def test_stages_run_in_the_recipe_order():
    assert [name for name, _ in STAGES] == ["overscan", "trim", "bias", "dark", "flat"]


def test_bias_scaled_dark_and_flat_give_back_the_sky(tmp_path):
    rng = np.random.default_rng(1)
    ny, nx = SHAPE
    bias = 1000 + rng.normal(0, 5, (ny, nx + 8))
    dark60 = rng.gamma(2, 1.0, (ny, nx))  # ADU in 60 s
    flat = rng.uniform(0.8, 1.1, (ny, nx))
    sky = rng.uniform(100, 200, (ny, nx))
    raw = bias.copy()
    raw[:, :nx] += sky * flat + dark60 * 45 / 60
    write_image(tmp_path / "calib/n/bias.fits", bias[:, :nx], fits.Header())
    write_image(tmp_path / "calib/n/dark_60s.fits", dark60, fits.Header())
    write_image(tmp_path / "calib/n/flat_R.fits", flat, fits.Header())
    fits.PrimaryHDU(raw.astype(np.float32)).writeto(tmp_path / "raw.fits")
    settings = Settings(trim_section=f"[1:{nx},1:{ny}]")
    result = calibrate_frame(
        tmp_path / "raw.fits",
        recipe(
            bias="calib/n/bias.fits",
            dark="calib/n/dark_60s.fits",
            dark_scale=0.75,
            flat="calib/n/flat_R.fits",
        ),
        settings,
        Masters(tmp_path),
    )
    assert result.data.dtype == np.float32 and result.data.shape == SHAPE
    np.testing.assert_allclose(result.data, sky, rtol=2e-5)
    # without the dark's scale the answer is off by the dark current
    wrong = calibrate_frame(
        tmp_path / "raw.fits",
        recipe(
            bias="calib/n/bias.fits",
            dark="calib/n/dark_60s.fits",
            dark_scale=1.0,
            flat="calib/n/flat_R.fits",
        ),
        settings,
        Masters(tmp_path),
    )
    assert np.abs(wrong.data - sky).max() > 1.0


def test_overscan_levels_are_subtracted_per_frame_or_per_row(tmp_path):
    ny, nx = SHAPE
    rows = np.arange(ny)[:, None]
    raw = np.full((ny, nx + 8), 500.0) + 2.0 * rows
    fits.PrimaryHDU(raw.astype(np.float32)).writeto(tmp_path / "raw.fits")
    for model, expected_rows in (("row", 0.0), ("median", 2.0 * rows - np.median(2.0 * rows))):
        settings = Settings(
            trim_section=f"[1:{nx},1:{ny}]",
            overscan_section=f"[{nx + 2}:{nx + 8},1:{ny}]",
            overscan_model=model,
        )
        result = calibrate_frame(
            tmp_path / "raw.fits", recipe(overscan=True), settings, Masters(tmp_path)
        )
        np.testing.assert_allclose(result.data, np.broadcast_to(expected_rows, SHAPE), atol=1e-3)


def test_saturated_and_unflattenable_pixels_are_flagged(tmp_path):
    raw = np.full(SHAPE, 2000, dtype=np.uint16)
    raw[5, 6] = 65535
    fits.PrimaryHDU(raw).writeto(tmp_path / "raw.fits")
    flat = np.ones(SHAPE)
    flat[10, 11] = 0.01
    flat[12, 13] = np.nan
    write_image(tmp_path / "flat.fits", flat, fits.Header())
    result = calibrate_frame(
        tmp_path / "raw.fits", recipe(flat="flat.fits"), Settings(), Masters(tmp_path)
    )
    assert result.mask[5, 6] == MASK_SATURATED
    assert result.mask[10, 11] == MASK_BAD_FLAT and np.isnan(result.data[10, 11])
    assert result.mask[12, 13] == MASK_BAD_FLAT and np.isnan(result.data[12, 13])
    assert (result.mask != 0).sum() == 3


def test_trim_outside_the_frame_names_file_and_fix(tmp_path):
    fits.PrimaryHDU(np.zeros(SHAPE, np.uint16)).writeto(tmp_path / "raw.fits")
    with pytest.raises(ValueError, match=r"raw.fits: trim_section .*Fix: set trim_section"):
        calibrate_frame(
            tmp_path / "raw.fits",
            recipe(),
            Settings(trim_section="[1:4096,1:4096]"),
            Masters(tmp_path),
        )


# --- the workflow's calibrated demo frames against the truth -----------------


def star_photometry(image, xs, ys):
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    positions = np.column_stack([xs, ys])
    aperture = CircularAperture(positions, r=12)
    annulus = CircularAnnulus(positions, r_in=18, r_out=28)
    background = ApertureStats(image, annulus, sigma_clip=None).median
    table = aperture_photometry(image, aperture)
    return np.asarray(table["aperture_sum"]) - background * aperture.area


def truth_stars(truth, record, margin=35):
    """Isolated, unsaturated, bright stars of a frame, in frame pixels."""
    stars = truth.data["stars"]
    gain = truth.camera["gain"]
    x = np.asarray(stars["x"]) - record["pointing"][0]
    y = np.asarray(stars["y"]) - record["pointing"][1]
    adu = np.asarray(stars[record["filter"]]) * record["exposure"] * record["transparency"] / gain
    n = truth.camera["nx"]
    inside = (x > margin) & (x < n - margin) & (y > margin) & (y < n - margin)
    peak = adu / (1.2 * record["fwhm"] ** 2)  # a Moffat's peak, roughly
    isolated = np.array(
        [
            np.all((np.hypot(x - xi, y - yi) > 30) | (adu < 0.02 * ai) | (np.arange(len(x)) == i))
            for i, (xi, yi, ai) in enumerate(zip(x, y, adu, strict=True))
        ]
    )
    keep = inside & isolated & (adu > 15000) & (peak < 30000)
    return x[keep], y[keep], adu[keep]


def flux_ratios(demo_run, truth, night, flat_back=False):
    """Measured/true flux of the bright stars of every calibrated frame of a
    night (each frame's ratios over their median), and their radius^2."""
    ratios, radii, levels = [], [], []
    half = truth.camera["nx"] / 2
    for record in truth.frames_of(night=night, kind="light"):
        if record["transparency"] < 0.5:  # the clouded frames have too few bright stars
            continue
        path = demo_run["results"] / "calibrated" / night / f"{record['stem']}.fits"
        data = read_product(path)[0].astype(np.float64)
        if flat_back:  # undo the flat field: what an uncalibrated frame would give
            data = data * truth.active(f"flat_{record['filter']}")
        x, y, adu = truth_stars(truth, record)
        ratio = star_photometry(data, x, y) / adu
        levels.append(np.median(ratio))
        ratios.append(ratio / np.median(ratio))
        radii.append(((x - half) ** 2 + (y - half) ** 2) / (2 * half**2))
    return np.concatenate(ratios), np.concatenate(radii), np.array(levels)


@pytest.mark.parametrize("night", ["2025-03-01", "2025-03-02", "2025-03-05"])
def test_star_fluxes_are_recovered_flat_across_the_field(demo_run, truth, night):
    """Night 1 complete (.fits), night 2 tile-compressed (.fits.fz) with a
    borrowed bias, night 3 (.fts) with borrowed flats and a scaled dark."""
    ratio, r2, levels = flux_ratios(demo_run, truth, night)
    assert len(ratio) >= 80
    # an r=12 px aperture holds ~99 % of a Moffat(beta=3) star
    assert 0.97 < np.median(levels) < 1.01, levels
    robust = 1.4826 * np.median(np.abs(ratio - 1))
    assert robust < 0.01, robust
    assert abs(clipped_slope(r2, ratio)) < 0.01
    # the same frames without the flat show the vignetting: the test can fail
    ratio, r2, _ = flux_ratios(demo_run, truth, night, flat_back=True)
    assert clipped_slope(r2, ratio) < -0.08


def clipped_slope(r2, ratio):
    """Slope of ratio against r^2, after dropping 4-sigma outliers (a cosmic
    ray or a faint neighbour in one aperture)."""
    spread = 1.4826 * np.median(np.abs(ratio - np.median(ratio)))
    keep = np.abs(ratio - np.median(ratio)) < 4 * spread
    return np.polyfit(r2[keep], ratio[keep], 1)[0]


def test_scaled_dark_removes_hot_pixels(demo_run, truth):
    from scipy.ndimage import median_filter

    record = truth.frames_of(stem="light_R_45s_021")[0]  # 45 s with the 60 s dark x 0.75
    data, header, _ = read_product(
        demo_run["results"] / "calibrated" / record["night"] / "light_R_45s_021.fits"
    )
    assert header["DARKSCAL"] == pytest.approx(0.75)
    rate = truth.active("dark_current")
    hot = truth.image("hot_pixels").astype(bool) & (rate > 10)  # > 300 ADU in 45 s
    residual = (data - median_filter(data, size=5))[hot]
    sky_noise = 1.4826 * np.median(np.abs(data - np.median(data)))
    assert np.median(np.abs(residual)) < 2 * sky_noise
    # had the dark not been scaled (x1), the hot pixels would be over-subtracted by a third
    unscaled = residual - 0.25 * (rate[hot] * 60 / truth.camera["gain"])
    assert np.median(np.abs(unscaled)) > 4 * sky_noise


def test_saturation_is_flagged_in_the_mask(demo_run, truth):
    record = truth.frames_of(stem="light_V_60s_036")[0]
    raw = fits.getdata(demo_run["raw"] / record["file"])[:512, :512]
    _, _, mask = read_product(
        demo_run["results"] / "calibrated" / record["night"] / "light_V_60s_036.fits"
    )
    saturated = raw >= 65535
    assert saturated.sum() > 0
    np.testing.assert_array_equal((mask & MASK_SATURATED) > 0, saturated)
