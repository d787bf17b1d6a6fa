"""Masters made by masters.make_master from one simulated night, against the
simulator's truth. (What the workflow stamps on them, and which night's
masters a night borrows, is tested in test_provenance and test_policy.)"""

import numpy as np
import pytest
import yaml
from conftest import REPO, Truth

from ccdreduce.calibrate import Masters, Settings
from ccdreduce.fitsfile import write_image
from ccdreduce.masters import build_master
from ccdreduce.simulate import NightSpec, simulate

NIGHT = "2025-03-01"
#: How config.yaml combines each kind of master
COMBINE = yaml.safe_load((REPO / "config.yaml").read_text())["calibration"]["combine"]


def recipe(**kwargs):
    """A recipe as policy makes one for the demo config (no overscan)."""
    base = {"bias": None, "dark": None, "dark_scale": 0.0, "flat": None, "overscan": False}
    return base | {"dark_includes_bias": False, "notes": [], "uncorrected": []} | kwargs


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """The demo's first night (calibration frames only), its masters made
    in the workflow's order: bias, darks on the bias, flats on both."""
    folder = tmp_path_factory.mktemp("masters")
    simulate(folder, nights=[NightSpec(NIGHT, "maxim", "2025-03-02T00:40:00", (0, 0), lights={})])
    truth = Truth(folder / "truth")
    settings = Settings(
        trim_section=truth.data["trim_section"], overscan_section=truth.data["overscan_section"]
    )
    masters = Masters(folder)
    made = {}

    def make(kind, name, frames, **how):
        paths = [folder / "raw" / f["file"] for f in frames]
        master = build_master(
            kind, [(p, recipe(**how)) for p in paths], settings, COMBINE[kind], masters
        )
        image, header = master.image, master.header
        write_image(folder / name, image, header, mask=master.mask, uncertainty=master.sigma)
        made[name] = (image.astype(np.float64), header, len(paths))
        made[name + " sigma"] = master.sigma.astype(np.float64)

    make("bias", "bias.fits", truth.frames_of(kind="bias"))
    make("dark", "dark_60s.fits", truth.frames_of(kind="dark", exposure=60.0), bias="bias.fits")
    for filt in ("V", "R"):
        flats = truth.frames_of(kind="flat", filter=filt)
        scale = flats[0]["exposure"] / 60.0
        how = {"bias": "bias.fits", "dark": "dark_60s.fits", "dark_scale": scale}
        make("flat", f"flat_{filt}.fits", flats, **how)
    return truth, made


def test_master_bias_is_the_true_bias_within_its_noise(night):
    truth, made = night
    camera = truth.camera
    data, header, n = made["bias.fits"]
    assert n == 7 and header["BUNIT"] == "adu"
    residual = data - truth.active("bias")
    # read noise and integer rounding of each raw frame, averaged over n
    expected = np.sqrt((camera["read_noise"] / camera["gain"]) ** 2 + 1 / 12) / np.sqrt(n)
    assert abs(residual.mean()) < 0.05
    assert 0.95 < residual.std() / expected < 1.1, (residual.std(), expected)


def test_master_dark_recovers_dark_current_and_hot_pixels(night):
    truth, made = night
    gain = truth.camera["gain"]
    rate = truth.active("dark_current")  # e-/s, truth is active-area sized already
    hot = truth.image("hot_pixels").astype(bool)
    data, header, n = made["dark_60s.fits"]
    assert n == 5 and header["BUNIT"] == "adu"
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


@pytest.mark.parametrize("filt", ["V", "R"])
def test_master_flat_within_half_a_percent_rms_of_the_true_flat(night, filt):
    truth, made = night
    data, header, n = made[f"flat_{filt}.fits"]
    assert n == 7 and header["BUNIT"] == "adu/adu"  # a ratio
    true_flat = truth.active(f"flat_{filt}")
    assert np.median(data) == pytest.approx(1.0, abs=1e-6)
    rms = np.sqrt(np.mean((data / true_flat - 1) ** 2))
    assert rms < 0.005, rms
    # the other filter's flat is not a match: the test can tell flats apart
    other = truth.active(f"flat_{'R' if filt == 'V' else 'V'}")
    assert np.sqrt(np.mean((data / other - 1) ** 2)) > 2 * rms


def test_the_biases_and_flats_measure_the_cameras_read_noise_and_gain(night):
    truth, made = night
    camera = truth.camera
    bias = made["bias.fits"][1]
    assert bias["RDNOIADU"] * camera["gain"] == pytest.approx(camera["read_noise"], rel=0.03)
    for filt in ("V", "R"):
        flat = made[f"flat_{filt}.fits"][1]
        assert flat["NOISESRC"] == "measured"
        assert flat["GAIN"] == pytest.approx(camera["gain"], rel=0.03)
        assert flat["RDNOISE"] == pytest.approx(camera["read_noise"], rel=0.05)


def test_a_masters_uncertainty_is_its_scatter_about_the_truth(night):
    """UNCERT, the combine's scatter uncertainty, against the master's true
    error: the bias's error from the true bias, the dark's away from hot
    pixels, the flat's from the true flat."""
    truth, made = night
    hot = truth.image("hot_pixels").astype(bool)
    bias_error = made["bias.fits"][0] - truth.active("bias")
    cases = {
        "bias.fits": bias_error,
        # every dark had the master bias subtracted: its error is common to
        # them (not in their scatter) and comes back here
        "dark_60s.fits": made["dark_60s.fits"][0]
        - truth.active("dark_current") * 60 / truth.camera["gain"]
        + bias_error,
    }
    for filt in ("V", "R"):
        cases[f"flat_{filt}.fits"] = made[f"flat_{filt}.fits"][0] - truth.active(f"flat_{filt}")
    for name, error in cases.items():
        sigma = made[name + " sigma"]
        if name.startswith("dark"):
            error, sigma = error[~hot], sigma[~hot]
        if name.startswith("flat"):  # the true flat's scale is free
            error = error - np.median(error)
        # rms, not median: a standard deviation from 5 values is a chi
        # variable, its median 8 % below sigma; its square's mean is sigma^2
        predicted = np.sqrt(np.mean(sigma**2))
        ratio = predicted / (1.4826 * np.median(np.abs(error - np.median(error))))
        assert 0.9 < ratio < 1.1, (name, ratio)


def test_ccddata_reads_the_masters_with_unit_mask_and_uncertainty(night, tmp_path_factory):
    from astropy.nddata import CCDData, StdDevUncertainty

    truth, made = night
    folder = truth.folder.parent
    for name, unit in (("bias.fits", "adu"), ("dark_60s.fits", "adu"), ("flat_R.fits", "")):
        ccd = CCDData.read(folder / name)
        assert ccd.unit.to_string() == unit
        assert isinstance(ccd.uncertainty, StdDevUncertainty)
        np.testing.assert_allclose(ccd.uncertainty.array, made[name + " sigma"], rtol=1e-6)
        assert ccd.mask is not None and not ccd.mask.any()
