"""Masters made by masters.make_master from one simulated night, against the
simulator's truth. (What the workflow stamps on them, and which night's
masters a night borrows, is tested in test_provenance and test_policy.)"""

import numpy as np
import pytest
import yaml
from conftest import REPO, Truth

from ccdreduce.calibrate import Masters, Settings
from ccdreduce.fitsfile import write_image
from ccdreduce.masters import make_master
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
        image, header = make_master(
            kind, [(p, recipe(**how)) for p in paths], settings, COMBINE[kind], masters
        )
        write_image(folder / name, image, header)
        made[name] = (image.astype(np.float64), header, len(paths))

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
    assert n == 7 and "BUNIT" not in header  # a ratio
    true_flat = truth.active(f"flat_{filt}")
    assert np.median(data) == pytest.approx(1.0, abs=1e-6)
    rms = np.sqrt(np.mean((data / true_flat - 1) ** 2))
    assert rms < 0.005, rms
    # the other filter's flat is not a match: the test can tell flats apart
    other = truth.active(f"flat_{'R' if filt == 'V' else 'V'}")
    assert np.sqrt(np.mean((data / other - 1) ** 2)) > 2 * rms
