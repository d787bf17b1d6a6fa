"""The bad-pixel map (ccdreduce.badpixels) against planted truth: the
simulator's hot pixels, and a bad column a few per cent low in the flat and
slightly warm in the dark, which no single pixel's test would find."""

import numpy as np
import pytest
from astropy.io import fits

from ccdreduce import badpixels
from ccdreduce.errors import ConfigProblem
from ccdreduce.simulate import Camera, Sky, _rng, expose

FLAT_COLUMN = (200, slice(150, None))  # x, rows: from a trap at row 150 to the end
DARK_COLUMN = (321, slice(0, 300))


@pytest.fixture(scope="module")
def night():
    """Master dark (60 s) and flat (R) as means of simulated frames, a
    planted bad column in each."""
    sky = Sky(Camera(), seed=11)
    x, rows = FLAT_COLUMN
    sky.flats["R"][rows, x] *= 0.98
    x, rows = DARK_COLUMN
    sky.dark_current[rows, x] += 0.15  # e-/s: 6 ADU in 60 s, 2 sigma of a pixel here
    rng = _rng(11, "bpm")
    nx = sky.camera.nx

    def mean_of(kind, count, **how):
        # a median: the darks' cosmic rays out, as the master's clipping does
        return np.median([expose(sky, rng, kind, **how)[0][:, :nx] for _ in range(count)], axis=0)

    bias = mean_of("bias", 7, exposure=0.0)
    dark = mean_of("dark", 5, exposure=60.0) - bias
    flat = mean_of("flat", 7, exposure=2.0, filt="R") - bias
    return sky, dark, flat / np.median(flat)


def test_hot_pixels_and_bad_columns_are_found_and_little_else(night):
    sky, dark, flat = night
    bpm, said = badpixels.bad_pixel_map([dark], [flat])
    hot = (bpm & badpixels.BPM_HOT) > 0
    assert hot[sky.hot].mean() == 1.0  # every simulated hot pixel (2-40 e-/s)
    assert hot[~sky.hot].sum() <= 5
    column = (bpm & badpixels.BPM_COLUMN) > 0
    x, rows = FLAT_COLUMN
    assert column[rows, x].mean() > 0.9  # a 2 % column: 2 sigma a pixel
    x, rows = DARK_COLUMN
    assert column[rows, x].mean() > 0.9  # 0.15 e-/s warm
    truth = np.zeros_like(column)
    truth[FLAT_COLUMN[1], FLAT_COLUMN[0]] = truth[DARK_COLUMN[1], DARK_COLUMN[0]] = True
    false = column & ~truth
    assert false.sum() < 64, np.argwhere(false)[:10]  # at most two blocks elsewhere
    assert (bpm > 0).mean() < 0.01
    assert said[-1].startswith("bad-pixel map:")


def test_a_dead_pixel_in_the_flat_is_found(night):
    _, _, flat = night
    flat = flat.copy()
    flat[40, 50] = 0.1
    flat[300, 400] *= 0.9
    deviant = badpixels.deviant_pixels(flat)
    assert deviant[40, 50] and deviant[300, 400]
    assert deviant.sum() < 20


def test_a_given_map_joins_and_must_fit(tmp_path, night):
    _, dark, _ = night
    given = np.zeros(dark.shape, np.uint8)
    given[10, 11] = 1
    fits.writeto(tmp_path / "bpm.fits", given)
    mask = badpixels.read_given(tmp_path / "bpm.fits", dark.shape)
    bpm, _ = badpixels.bad_pixel_map([dark], given=mask)
    assert bpm[10, 11] & badpixels.BPM_GIVEN
    fits.writeto(tmp_path / "small.fits", given[:100])
    with pytest.raises(
        ConfigProblem, match=r"small.fits is 512x100, the trimmed frames are 512x512"
    ):
        badpixels.read_given(tmp_path / "small.fits", dark.shape)
