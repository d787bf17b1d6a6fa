"""Masters made by the workflow on simulated nights, against the truth."""

import numpy as np
import pytest
from astropy.io import fits


def master(demo_run, night, name):
    with fits.open(demo_run["results"] / "calib" / night / name) as hdul:
        return hdul[0].data.astype(np.float64), hdul[0].header


def test_master_bias_is_the_true_bias_within_its_noise(demo_run, truth):
    camera = truth.camera
    for night in ("2025-03-01", "2025-03-05"):
        data, header = master(demo_run, night, "bias.fits")
        n = header["NCOMBINE"]
        residual = data - truth.active("bias")
        # read noise and integer rounding of each raw frame, averaged over n
        expected = np.sqrt((camera["read_noise"] / camera["gain"]) ** 2 + 1 / 12) / np.sqrt(n)
        assert abs(residual.mean()) < 0.05
        assert 0.95 < residual.std() / expected < 1.1, (residual.std(), expected)


def test_master_dark_recovers_dark_current_and_hot_pixels(demo_run, truth):
    gain = truth.camera["gain"]
    rate = truth.active("dark_current")  # e-/s, truth is active-area sized already
    hot = truth.image("hot_pixels").astype(bool)
    for night in ("2025-03-01", "2025-03-02"):  # 03-02 uses the borrowed bias of 03-01
        data, header = master(demo_run, night, "dark_60s.fits")
        assert header["DARKBIAS"] is False
        expected = rate * 60 / gain
        cool = ~hot
        assert abs(np.median(data[cool] - expected[cool])) < 0.1  # ADU
        # hot pixels: each recovered within 5 % of its true signal
        ratio = data[hot] / expected[hot]
        assert np.median(np.abs(ratio - 1)) < 0.02 and np.percentile(np.abs(ratio - 1), 95) < 0.05
        # and found: every hot pixel stands out of the noise, few cool ones do
        noise = 1.4826 * np.median(np.abs(data[cool] - np.median(data[cool])))
        found = data > np.median(data) + 8 * noise
        assert found[hot].mean() > 0.99
        assert found[cool].mean() < 1e-3


@pytest.mark.parametrize("night", ["2025-03-01", "2025-03-02"])
@pytest.mark.parametrize("filt", ["V", "R"])
def test_master_flat_within_half_a_percent_rms_of_the_true_flat(demo_run, truth, night, filt):
    data, header = master(demo_run, night, f"flat_{filt}.fits")
    true_flat = truth.active(f"flat_{filt}")
    assert np.median(data) == pytest.approx(1.0, abs=1e-6)
    rms = np.sqrt(np.mean((data / true_flat - 1) ** 2))
    assert rms < 0.005, rms
    # the other filter's flat is not a match: the test can tell flats apart
    other = truth.active(f"flat_{'R' if filt == 'V' else 'V'}")
    assert np.sqrt(np.mean((data / other - 1) ** 2)) > 2 * rms


def test_masters_record_inputs_and_policy(demo_run):
    _, header = master(demo_run, "2025-03-02", "flat_R.fits")
    assert header["NCOMBINE"] == 7
    assert header["IMCMB001"].startswith("2025-03-02/calib/flats/R/")
    assert header["BIASFILE"] == "calib/2025-03-01/bias.fits"
    assert "bias: borrowed from night 2025-03-01" in header["CALPOL"]
    assert header["PROCSTEP"] == "master_flat"
    assert "BUNIT" not in header
    assert "JD" not in header and "UTC-OBS" not in header  # a camera's UTC times
    assert header["TIMESYS"] == "TT" and header["MJD-OBS"] == header["MJD-BEG"]
