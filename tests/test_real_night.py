"""The real BSU night (../shared/data/bsu-2022-10-29): no bias frames, darks
only at 1 s and 1.5 s, science at 60 s and 120 s. Runs when the folder is
there, skips otherwise."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import REAL_NIGHT, checksums, run_snakemake

pytestmark = pytest.mark.skipif(
    not REAL_NIGHT.is_dir(), reason=f"real data not present at {REAL_NIGHT}"
)
NIGHT = "2022-10-29"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    results = folder / "results"
    # the SN2022yid frames say OBJECT = 'Brutus_10292022': fixed without touching them
    overrides = folder / "overrides.yaml"
    overrides.write_text('header_overrides:\n  "2022-10-29/SN2022yid/*": {OBJECT: SN2022yid}\n')
    before = checksums(REAL_NIGHT)
    run_snakemake(
        "--configfile",
        overrides,
        "--config",
        f"raw_dir={REAL_NIGHT}",
        f"results_dir={results}",
        "trim_section=",
    )
    return results, before


def test_real_night_is_calibrated_with_a_stated_policy(real_run):
    results, _ = real_run
    table = Table.read(results / "calib" / NIGHT / "frames.ecsv")
    assert len(table) == 67 and set(table["status"]) == {"used"}
    lights = table[table["type"] == "light"]
    assert len(lights) == 23
    for row in lights:
        assert row["bias"] == "none" and row["dark"] == f"calib/{NIGHT}/dark_1.5s.fits"
        assert row["dark_scale"] == 1.0
        assert "no bias frames and no" in row["policy"]
        assert "subtracted unscaled as bias + 1.5 s of dark current" in row["policy"]
        remaining = row["exposure"] - 1.5
        assert (
            row["uncorrected"] == f"dark current of the remaining {remaining:g} s (hot pixels stay)"
        )
    flats = table[table["type"] == "flat"]
    assert all("dark 1.5 s (own night) serves as bias + dark" in p for p in flats["policy"])
    assert sorted(p.name for p in (results / "calib" / NIGHT).glob("*.fits")) == [
        "bad_pixels.fits",  # the calibrate job's, from these masters
        "dark_1.5s.fits",
        "dark_1s.fits",
        "flat_R.fits",
        "flat_V.fits",
    ]
    log = (results / "logs" / "calibrated" / f"{NIGHT}.log").read_text()  # one job per night
    assert any(
        "SN2022yid_10292022-0006_R_120s" in line
        and "left uncorrected: dark current of the remaining 118.5 s" in line
        for line in log.splitlines()
    )


def test_real_calibrated_frames_say_so_in_their_headers(real_run):
    results, _ = real_run
    header = fits.getheader(results / "calibrated" / NIGHT / "NGC6760_10272022-0001_V_60s.fits")
    assert header["DARKBIAS"] is True and header["BIASFILE"] == "none"
    assert header["UNCORR"] == "dark current of the remaining 58.5 s (hot pixels stay)"
    assert "JD" not in header and "JD-HELIO" not in header  # MaxIm's UTC Julian dates
    # times from SITELAT/SITELONG and OBJCTRA/OBJCTDEC: 60 s from 00:10:25 UTC
    assert header["UTC-OBS"] == "2022-10-30T00:10:25" and header["TIMESYS"] == "TT"
    assert header["DATE-OBS"] == header["DATE-BEG"] == "2022-10-30T00:11:34.184"  # on TT
    assert header["DATE-AVG"] == "2022-10-30T00:12:04.184"
    assert 2459882.50 < header["BJD_TDB"] < 2459882.51
    assert 1.6 < header["AIRMASS"] < 1.9  # NGC 6760 at ~34 deg in the evening


def test_real_flat_field_flattens_the_sky(real_run):
    """Vignetting and dust donuts gone: the sky's large-scale spread drops."""
    results, _ = real_run
    name = "SN2022yid_10292022-0006_R_120s"
    raw = fits.getdata(REAL_NIGHT / NIGHT / "SN2022yid" / "R" / f"{name}.fit").astype(float)
    dark = fits.getdata(results / "calib" / NIGHT / "dark_1.5s.fits")
    calibrated = fits.getdata(results / "calibrated" / NIGHT / f"{name}.fits")

    def spread(image):
        ny, nx = image.shape
        medians = np.array(
            [
                np.nanmedian(
                    image[i * ny // 8 : (i + 1) * ny // 8, j * nx // 8 : (j + 1) * nx // 8]
                )
                for i in range(8)
                for j in range(8)
            ]
        )
        return medians.std() / np.median(medians)

    assert spread(raw - dark) > 0.02  # vignetting is plain before
    assert spread(calibrated) < 0.006
    assert spread(calibrated) < spread(raw - dark) / 5


def unregistered_average(results, table):
    """The frames scaled and averaged without moving them, with the weights
    the average stack used (noise-weighted by default)."""
    from ccdreduce.stars import background

    frames = []
    for row in table:
        data = fits.getdata(results / "calibrated" / row["night"] / f"{row['stem']}.fits")
        frames.append((data - background(data).level) * row["scale"])
    return np.average(frames, axis=0, weights=np.asarray(table["weight"], float)).astype(np.float32)


def fwhm_ratio(stack, unregistered):
    """Median over 60 bright stars of FWHM(unregistered) / FWHM(stack),
    the same stars measured in both images."""
    from ccdreduce.stars import detect, measure_at

    stars, _ = detect(stack, fwhm_guess=7.0)
    good = ~stars["saturated"]
    x, y = stars["x"][good][:60], stars["y"][good][:60]
    a, b = measure_at(stack, x, y, 7.0), measure_at(unregistered, x, y, 7.0)
    ok = a["ok"] & b["ok"]
    return float(np.median(b["fwhm"][ok] / a["fwhm"][ok]))


def test_real_sn2022yid_frames_register_and_stack(real_run):
    from ccdreduce.stars import background, detect, measure_at

    results, _ = real_run
    folder = results / "stacks" / "SN2022yid" / "R"
    table = Table.read(folder / "frames.ecsv")
    assert len(table) == 20 and table["used"].all()
    # the shifts agree with following the 20 brightest stars frame by frame
    reference = fits.getdata(
        results / "calibrated" / NIGHT / f"{table.meta['reference'].split('/')[1]}.fits"
    )
    stars, _ = detect(reference, fwhm_guess=7.0)
    x, y = stars["x"][~stars["saturated"]][:20], stars["y"][~stars["saturated"]][:20]
    for row in table[table["fwhm"] < 10]:
        frame = fits.getdata(results / "calibrated" / NIGHT / f"{row['stem']}.fits")
        seen = measure_at(frame, x, y, 7.0)
        assert abs(np.median(x - seen["x"]) - row["dx_measured"]) < 0.1
        assert abs(np.median(y - seen["y"]) - row["dy_measured"]) < 0.1
    stack = fits.getdata(folder / "average.fits").astype(np.float32)
    one = fits.getdata(
        results / "registered" / NIGHT / "SN2022yid" / "R" / f"{table['stem'][0]}.fits"
    )
    assert background(stack).noise < background(one).noise / 3  # 20 frames: ~1/sqrt(20)
    # This night drifts ~1.3 px under an 8.5 px FWHM, which would widen an
    # unregistered average by ~0.5 %: registered, the stack is no blurrier.
    assert fwhm_ratio(stack, unregistered_average(results, table)) > 0.995


def test_real_ngc6760_drift_is_taken_out(real_run):
    """Its three frames drift ~5 px in y (binned pixels) in 8 minutes."""
    results, _ = real_run
    folder = results / "stacks" / "NGC6760_10272022" / "V"
    table = Table.read(folder / "frames.ecsv")
    assert table["used"].all() and len(table) == 3
    assert np.ptp(np.asarray(table["dy_measured"])) > 4
    stack = fits.getdata(folder / "average.fits").astype(np.float32)
    assert fwhm_ratio(stack, unregistered_average(results, table)) > 1.03


def test_real_raw_files_are_untouched(real_run):
    _, before = real_run
    assert checksums(REAL_NIGHT) == before
