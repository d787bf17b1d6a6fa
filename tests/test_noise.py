"""The noise model (ccdreduce.noise): where gain and read noise come from,
and photon transfer on simulated biases and flats against the simulator's
camera (gain 1.5 e-/ADU, read noise 6 e-)."""

import numpy as np
import pytest
from astropy.io import fits

from ccdreduce import noise
from ccdreduce.simulate import Camera, Sky, _rng, expose

KEYWORDS = {"gain": ["EGAIN", "GAIN"], "read_noise": ["RDNOISE", "READNOIS", "RDNOIS", "RON"]}


@pytest.fixture(scope="module")
def sky():
    return Sky(Camera(), seed=7)


def raw_frames(sky, kind, count, **how):
    rng = _rng(7, "noise test", kind)
    frames = [expose(sky, rng, kind, how.pop("exposure", 0.0), **how)[0] for _ in range(count)]
    nx = sky.camera.nx
    return [f[:, :nx].astype(np.float32) for f in frames]


def test_read_noise_and_gain_by_photon_transfer_match_the_camera(sky):
    camera = sky.camera
    biases = raw_frames(sky, "bias", 6)
    rn_adu = noise.read_noise_adu(biases)
    assert rn_adu * camera.gain == pytest.approx(camera.read_noise, rel=0.03)
    bias = np.mean(biases, axis=0)
    flats = [f - bias for f in raw_frames(sky, "flat", 8, exposure=2.0, filt="R")]
    # the flats' dark current (2 s) is negligible here; the job subtracts the dark
    levels = [float(np.median(f)) for f in flats]
    gain = noise.gain_from_flats(flats, levels, rn_adu)
    assert gain == pytest.approx(camera.gain, rel=0.03)


def test_flats_are_paired_by_level_each_once():
    assert noise.flat_pairs([100, 30000, 101, 29000, 15000]) == [(0, 2), (3, 1)]
    assert noise.flat_pairs([100]) == []
    assert noise.gain_from_flats([np.ones((4, 4))], [1.0]) is None


def test_header_beats_config_beats_measured_beats_sky():
    header = fits.Header({"EGAIN": 2.58, "RDNOISE": 9.0})
    model, notes = noise.resolve(header, KEYWORDS, {"gain": 1.0, "read_noise": 5.0}, (1.4, 6.0))
    assert (model.gain, model.read_noise, model.source, notes) == (2.58, 9.0, "header", [])
    model, _ = noise.resolve(fits.Header(), KEYWORDS, {"gain": 1.0, "read_noise": 5.0}, (1.4, 6))
    assert (model.gain, model.read_noise, model.source) == (1.0, 5.0, "config")
    model, _ = noise.resolve(fits.Header(), KEYWORDS, {"gain": None}, (1.4, 7.0))
    assert (model.gain, model.read_noise, model.source) == (1.4, 7.0, "measured")
    # the real BSU night: EGAIN only; read noise measured in ADU, rescaled to the gain used
    model, _ = noise.resolve(fits.Header({"EGAIN": 2.8}), KEYWORDS, {}, (1.4, 7.0))
    assert model.read_noise == pytest.approx(14.0) and model.source == "header+measured"
    assert model.cards()["NOISESRC"][0] == "header+measured"


def test_a_gain_setting_in_gain_is_not_taken_for_e_per_adu():
    header = fits.Header({"GAIN": 120, "OFFSET": 30})  # N.I.N.A. on a CMOS camera
    model, notes = noise.resolve(header, KEYWORDS, {"gain": 0.8, "read_noise": 3.5})
    assert (model.gain, model.source) == (0.8, "config")
    assert len(notes) == 1 and "GAIN = 120 is not used" in notes[0]
    assert "camera.gain" in notes[0]
    # EGAIN first: a N.I.N.A. frame with both uses EGAIN
    model, notes = noise.resolve(fits.Header({"GAIN": 120, "EGAIN": 0.25, "RON": 1.6}), KEYWORDS)
    assert (model.gain, model.read_noise, notes) == (0.25, 1.6, [])


def test_the_sky_gives_what_nothing_else_gave():
    rng = np.random.default_rng(5)
    gain, read_noise, level = 1.5, 6.0, 900.0
    data = level + rng.normal(0, np.sqrt(level / gain + (read_noise / gain) ** 2), (300, 300))
    model, _ = noise.resolve(
        fits.Header({"EGAIN": gain}), KEYWORDS, sky=lambda: noise.sky_statistics(data)
    )
    assert model.source == "header+sky"
    assert model.read_noise == pytest.approx(read_noise, rel=0.3)  # a small share of the sky's
    model, _ = noise.resolve(
        fits.Header(), KEYWORDS, {"read_noise": 6.0}, sky=lambda: noise.sky_statistics(data)
    )
    assert model.gain == pytest.approx(gain, rel=0.03) and model.source == "sky+config"


def test_variance_of_a_raw_pixel():
    model = noise.NoiseModel(2.0, 10.0, "config", "config")
    np.testing.assert_allclose(model.variance(np.array([-5.0, 0.0, 100.0])), [25, 25, 75])


def test_the_real_bsu_night_gain_from_header_read_noise_and_gain_by_photon_transfer():
    """The BSU night (SBIG STXL-6303, 2x2, EGAIN 2.58, no biases): read
    noise from pairs of 1.5 s darks (bias included; dark current negligible
    at -31 C), gain from its flats minus the dark. Measured 6.57 ADU (17 e-
    at EGAIN) and 2.81 (R) / 2.82 (V) e-/ADU: 9 % above EGAIN; these flats
    sit at 25,000-35,000 ADU, 65-90 % of the binned pixel's full well, where
    a CCD's response begins to compress its variance."""
    from conftest import REAL_NIGHT

    folder = REAL_NIGHT / "2022-10-29"
    if not folder.is_dir():
        pytest.skip(f"real data not present at {REAL_NIGHT}")
    light = sorted((folder / "SN2022yid" / "R").glob("*.fit"))[0]
    model, notes = noise.resolve(fits.getheader(light), KEYWORDS, measured=(2.81, 18.5))
    assert (model.gain, model.gain_source, notes) == (pytest.approx(2.58), "header", [])
    assert model.read_noise == pytest.approx(18.5 / 2.81 * 2.58)  # measured ADU, header gain
    darks = [fits.getdata(f).astype(np.float32) for f in sorted((folder / "Darks/1p5s").glob("*"))]
    rn = noise.read_noise_adu(darks)
    assert 6.0 < rn < 7.0
    dark = np.median(darks, axis=0)
    for filt in ("R", "V"):
        flats = [
            fits.getdata(f).astype(np.float32) - dark
            for f in sorted((folder / "Flats" / filt).glob("*"))
        ]
        levels = [float(np.median(f)) for f in flats]
        assert len(noise.flat_pairs(levels)) == 6
        assert noise.gain_from_flats(flats, levels, rn) == pytest.approx(2.58, rel=0.12)


def _grbg_sky(levels, shape=(256, 256), read_noise=3.0, seed=3):
    """A GRBG mosaic of a flat sky: each colour at its own level, Poisson at
    gain 1 plus read noise."""
    from ccdreduce import bayer

    rng = np.random.default_rng(seed)
    sites = bayer.colour_masks("GRBG", shape)
    expected = np.zeros(shape)
    for colour, level in levels.items():
        expected[sites[colour]] = level
    return rng.poisson(expected) + rng.normal(0, read_noise, shape), expected


def test_a_mosaic_sky_is_measured_one_colour_at_a_time():
    """Neighbours on a mosaic are other colours: their difference is colour.
    Across colours this sky read 114 ADU of noise."""
    data, expected = _grbg_sky({"R": 300, "G": 500, "B": 400})
    true_noise = np.sqrt(expected.mean() + 9.0)  # mean variance of the four sub-grids
    level, measured = noise.sky_statistics(data, mosaic=True)
    assert abs(level - expected.mean()) < 1.0
    assert abs(measured / true_noise - 1) < 0.03, (measured, true_noise)
    assert noise.sky_statistics(data)[1] > 4 * true_noise  # what it read across colours


def test_a_mosaic_flat_gives_the_gain_one_colour_at_a_time():
    from ccdreduce import bayer

    rng = np.random.default_rng(5)
    sites = bayer.colour_masks("GRBG", (256, 256))
    response = np.where(sites["R"], 0.6, np.where(sites["B"], 0.8, 1.0))
    flats = [
        rng.poisson(level * response) + rng.normal(0, 3, response.shape) for level in (2e4, 2.1e4)
    ]
    levels = [float(np.median(f)) for f in flats]
    gain = noise.gain_from_flats(flats, levels, 3.0, mosaic=True)
    assert abs(gain - 1.0) < 0.02, gain  # one level for all colours read 1.055
