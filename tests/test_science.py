"""A science frame calibrated, stamped, written and catalogued
(ccdreduce.science), on a raw frame with stars of known position."""

import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from ccdreduce import science
from ccdreduce.calibrate import Masters, Settings
from ccdreduce.policy import Recipe

STARS = [(30.5, 40.25, 8000.0), (90.0, 20.0, 5000.0), (70.0, 70.0, 12000.0)]


def write_light(path):
    """A raw light: a pedestal, sky and three Gaussian stars (sigma 1.5 px)."""
    yy, xx = np.indices((100, 120), dtype=float)
    image = np.full(yy.shape, 1000.0 + 200.0) + np.random.default_rng(3).normal(0, 5, yy.shape)
    for x, y, flux in STARS:
        image += flux / (2 * np.pi * 1.5**2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.5)
    header = fits.Header({"IMAGETYP": "Light Frame", "EXPTIME": 60.0, "FILTER": "R"})
    header["DATE-OBS"] = "2025-03-02T01:00:00"
    fits.PrimaryHDU(image.astype(np.uint16), header=header).writeto(path)
    return path


def test_a_science_frame_is_calibrated_stamped_written_and_catalogued(tmp_path):
    raw = write_light(tmp_path / "light.fit")
    recipe = Recipe(notes=["no masters: test"], uncorrected=["bias", "dark", "flat"])
    night = science.NightSettings(
        settings=Settings(),
        masters=Masters(tmp_path),
        times={"date_obs_is": "start", "site": {}, "iers": "bundled"},
        detect_sigma=5.0,
        night="2025-03-01",
        config={"test": True},
        noise={"camera": {"gain": 1.5, "read_noise": 6.0}},
    )
    frame = {
        "id": "2025-03-01/light",
        "stem": "light",
        "calibrated": str(tmp_path / "light.fits"),
        "catalog": str(tmp_path / "light.ecsv"),
        "path": str(raw),
        "raw": "2025-03-01/light.fit",
        "exposure": 60.0,
        "date_obs": "2025-03-02T01:00:00",
        "recipe": recipe.as_dict(),
        "overrides": {"OBJECT": "M 42"},
    }
    lines, warnings = science.calibrate_and_catalogue(frame, night)
    assert lines[0] == "2025-03-01/light.fit: policy: no masters: test"
    # no master at all: said in words, in the log and the header
    assert warnings == ["2025-03-01/light.fit: uncalibrated, left uncorrected: bias, dark, flat"]
    header = fits.getheader(tmp_path / "light.fits")
    assert header["CALSTATE"] == "uncalibrated"
    assert header["BUNIT"] == "adu" and header["RAWFILE"] == "2025-03-01/light.fit"
    assert (header["GAIN"], header["RDNOISE"], header["NOISESRC"]) == (1.5, 6.0, "config")
    assert header["OBJECT"] == "M 42"  # the override, said in HISTORY
    assert any("OBJECT = 'M 42' from header_overrides" in str(h) for h in header["HISTORY"])
    assert header["TIMESYS"] == "TT"
    assert header["DATE-BEG"] == Time("2025-03-02T01:00:00", scale="utc").tt.isot
    stars = Table.read(tmp_path / "light.ecsv", format="ascii.ecsv")
    assert len(stars) == 3 and stars.meta["frame"] == "2025-03-01/light"
    brightest = stars[np.argmax(stars["flux"])]
    assert (brightest["x"], brightest["y"]) == (pytest.approx(70.0, abs=0.05),) * 2
    summary = re.fullmatch(
        r"2025-03-01/light.fit: 3 stars, FWHM ([\d.]+) px, sky ([\d.]+) ADU, noise [\d.]+ ADU",
        lines[-1],
    )
    assert float(summary[1]) == pytest.approx(2.3548 * 1.5, rel=0.1)  # FWHM of sigma 1.5 px
    assert float(summary[2]) == pytest.approx(1200.0, abs=1.0)
