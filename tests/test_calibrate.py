"""Calibrating science frames: the stages on exact numbers, then the
workflow's calibrated demo frames against the simulator's truth."""

import numpy as np
import pytest
from astropy.io import fits

from ccdreduce import noise
from ccdreduce.calibrate import STAGES, Masters, Settings, calibrate_frame, low_level
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
        "pedestal": False,
        "state": "calibrated",  # as policy.Recipe.as_dict gives it
    }
    return base | kwargs


def test_stages_run_in_the_recipe_order():
    assert [name for name, _ in STAGES] == ["overscan", "trim", "bias", "dark", "pedestal", "flat"]


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


# --- the pedestal: no bias, dark or overscan (on_missing: uncalibrated) ------


def sky_frame(path, shape=(200, 200), offset=400.0, sky_e=600.0, gain=2.0, read_noise=5.0):
    """A raw frame of an offset and a flat sky, Poisson and read noise (ADU)."""
    rng = np.random.default_rng(11)
    electrons = rng.poisson(sky_e, shape) + rng.normal(0, read_noise, shape)
    raw = offset + electrons / gain
    raw[7, 9] = 65535  # a saturated pixel is no low level
    fits.PrimaryHDU(np.round(raw).astype(np.uint16)).writeto(path)
    return path


def test_a_configured_pedestal_is_subtracted_and_said(tmp_path):
    raw = sky_frame(tmp_path / "raw.fits")
    result = calibrate_frame(raw, recipe(pedestal=True), Settings(pedestal=400.0), Masters())
    # 600 e- of sky at 2 e-/ADU above the 400 ADU offset
    assert np.median(result.data) == pytest.approx(300.0, abs=0.6)
    assert (result.header["PEDESTAL"], result.header["PEDSRC"]) == (400.0, "config")
    assert "calibration.pedestal 400.00 ADU subtracted" in result.history[0]
    untouched = calibrate_frame(raw, recipe(), Settings(pedestal=400.0), Masters())
    assert np.median(untouched.data) == pytest.approx(700.0, abs=0.6)  # not asked: not done


def test_without_a_configured_pedestal_the_frames_half_percentile_is_taken(tmp_path):
    raw = sky_frame(tmp_path / "raw.fits")
    result = calibrate_frame(raw, recipe(pedestal=True), Settings(), Masters())
    # a Gaussian sky's 0.5th percentile: 2.576 sigma below its level; sigma
    # sqrt(600 + 25) / 2 = 12.5 ADU, so 700 - 32.2 ADU (the estimate's own
    # scatter is 0.3 ADU on 40,000 pixels)
    expected = 700.0 - 2.576 * np.sqrt(625.0) / 2
    assert result.header["PEDESTAL"] == pytest.approx(expected, abs=1.0)
    assert result.header["PEDSRC"] == "p0.5"
    assert "the frame's 0.5th percentile" in result.history[0]
    assert np.median(result.data) == pytest.approx(700.0 - expected, abs=1.0)
    assert low_level(np.array([np.nan, 1.0, 2.0, 3.0]), 50) == 2.0  # NaN left out


def test_the_sky_under_a_pedestal_stays_in_the_uncertainty(tmp_path):
    # gain and read noise known: the Poisson term sees only the ~32 ADU left
    # above the pedestal, not the 300 ADU of sky: without its noise put back
    # UNCERT would be ~2.5x too small
    raw = sky_frame(tmp_path / "raw.fits")
    model = noise.NoiseModel(2.0, 5.0, "config", "config")
    result = calibrate_frame(raw, recipe(pedestal=True), Settings(), Masters(), noise=model)
    scatter = noise.sky_statistics(result.data)[1]
    assert scatter == pytest.approx(12.5, rel=0.03)
    assert np.median(result.uncertainty) == pytest.approx(scatter, rel=0.02)
    assert any("the sky's noise" in line for line in result.history)


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


# -- uncertainty, noise model and bad pixels on a simulated night ---------

NIGHT = "2025-03-01"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """One simulated night (maxim dialect: EGAIN only), its masters made as
    the workflow makes them, and two R lights calibrated and catalogued with
    the night's bad-pixel map."""
    import yaml
    from conftest import REPO, Truth

    from ccdreduce import badpixels, science
    from ccdreduce.masters import build_master
    from ccdreduce.simulate import NightSpec, simulate

    folder = tmp_path_factory.mktemp("uncertainty")
    lights = {("R", 60.0): 2}
    simulate(
        folder, nights=[NightSpec(NIGHT, "maxim", "2025-03-02T00:40:00", (0, 0), lights=lights)]
    )
    truth = Truth(folder / "truth")
    settings = Settings(
        trim_section=truth.data["trim_section"], overscan_section=truth.data["overscan_section"]
    )
    combine = yaml.safe_load((REPO / "config.yaml").read_text())["calibration"]["combine"]
    masters = Masters(folder)
    steps = (
        ("bias", "bias.fits", {"kind": "bias"}, {}),
        ("dark", "dark_60s.fits", {"kind": "dark", "exposure": 60.0}, {"bias": "bias.fits"}),
        (
            "flat",
            "flat_R.fits",
            {"kind": "flat", "filter": "R"},
            {"bias": "bias.fits", "dark": "dark_60s.fits", "dark_scale": 2 / 60},
        ),
    )
    for kind, name, match, how in steps:
        paths = [folder / "raw" / f["file"] for f in truth.frames_of(**match)]
        master = build_master(
            kind, [(p, recipe(**how)) for p in paths], settings, combine[kind], masters
        )
        write_image(
            folder / name, master.image, master.header, master.mask, uncertainty=master.sigma
        )
    light_recipe = recipe(
        bias="bias.fits", dark="dark_60s.fits", dark_scale=1.0, flat="flat_R.fits"
    )
    bpm, _ = badpixels.night_map([light_recipe], masters)
    night = science.NightSettings(
        settings=settings,
        masters=masters,
        times={"date_obs_is": "start", "site": None, "iers": "bundled"},
        detect_sigma=5.0,
        night=NIGHT,
        config={"test": True},
        bad_pixels=bpm,
    )
    frames = truth.frames_of(kind="light")
    for f in frames:
        frame = {
            "id": f"{NIGHT}/{f['stem']}",
            "stem": f["stem"],
            "calibrated": str(folder / f"{f['stem']}.fits"),
            "catalog": str(folder / f"{f['stem']}.ecsv"),
            "path": str(folder / "raw" / f["file"]),
            "raw": f["file"],
            "exposure": f["exposure"],
            "date_obs": f["date_obs"],
            "recipe": light_recipe,
            "overrides": {},
        }
        science.calibrate_and_catalogue(frame, night)
    return folder, truth, frames


def star_free(data, truth, record, radius=25):
    """Pixels farther than ``radius`` from every true star, inside the frame
    (a bright Moffat star's wing is still ~40 ADU at 12 px)."""
    from ccdreduce.simulate import true_positions

    x, y = true_positions(truth.data, record)
    yy, xx = np.indices(data.shape)
    far = np.ones(data.shape, bool)
    for xs, ys in zip(x, y, strict=True):
        if -radius < xs < data.shape[1] + radius and -radius < ys < data.shape[0] + radius:
            far &= (xx - xs) ** 2 + (yy - ys) ** 2 > radius**2
    return far


def test_predicted_sigma_matches_the_sky_scatter(simulated):
    """UNCERT's median in star-free sky over the sky's measured scatter
    (away from flagged pixels and the cosmic rays the frame's truth lists)."""
    from astropy.nddata import CCDData
    from astropy.stats import sigma_clip

    folder, truth, frames = simulated
    for record in frames:
        ccd = CCDData.read(folder / f"{record['stem']}.fits")
        sky = star_free(ccd.data, truth, record) & ~ccd.mask
        for x, y in record["cosmic_rays"]:
            sky[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4] = False
        predicted = float(np.median(ccd.uncertainty.array[sky]))
        # 5-sigma clipped: a faint star's wing or a hit's halo is no sky noise
        measured = float(np.std(sigma_clip(ccd.data[sky], 5, maxiters=None).compressed()))
        assert 0.9 < predicted / measured < 1.1, (predicted, measured)
        assert 0.97 < predicted / measured < 1.03  # measured: 0.999, 1.002
        print(f"{record['stem']}: predicted {predicted:.3f} measured {measured:.3f} ADU")
        assert ccd.unit == "adu" and ccd.mask.dtype == bool


def test_calibrated_frames_say_their_noise_model_and_mark_hot_pixels(simulated):
    from ccdreduce import catalog
    from ccdreduce.fitsfile import MASK_BAD_PIXEL

    folder, truth, frames = simulated
    hot = truth.image("hot_pixels").astype(bool)
    for record in frames:
        data, header, mask = read_product(folder / f"{record['stem']}.fits")
        # EGAIN from the maxim header, read noise measured by the bias and flat jobs
        assert header["GAIN"] == truth.camera["gain"] and header["NOISESRC"] == "header+measured"
        assert header["RDNOISE"] == pytest.approx(truth.camera["read_noise"], rel=0.03)
        flagged = (mask & MASK_BAD_PIXEL) > 0
        assert flagged[hot].mean() > 0.97 and flagged[~hot].sum() < 20
        # no hot pixel taken for a star
        stars, _ = catalog.read(folder / f"{record['stem']}.ecsv")
        xs, ys = np.rint(stars["x"]).astype(int), np.rint(stars["y"]).astype(int)
        assert not flagged[ys, xs].any() or flagged[ys, xs].sum() <= 1
