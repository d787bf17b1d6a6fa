"""Single-frame cosmic-ray detection (calibration.cosmic_rays: lacosmic)
on a simulated light with known hits and stars: how many hits it finds,
how many stars it touches."""

import numpy as np
import pytest

from ccdreduce import noise, science
from ccdreduce.calibrate import WorkFrame
from ccdreduce.fitsfile import MASK_BAD_PIXEL, MASK_COSMIC_RAY
from ccdreduce.simulate import Camera, Sky, _rng, _unbinned_positions, expose

SETTINGS = {"method": "lacosmic", "sigclip": 4.5, "sigfrac": 0.3, "objlim": 5.0, "niter": 4}


@pytest.fixture(scope="module")
def light():
    """A 120 s R light calibrated with the true bias, dark and flat."""
    pytest.importorskip("astroscrappy")
    sky = Sky(Camera(), seed=3)
    c = sky.camera
    raw, truth = expose(sky, _rng(3, "cr"), "light", 120.0, filt="R", pointing=(0, 0))
    data = raw[:, : c.nx].astype(np.float32) - sky.bias[:, : c.nx]
    data -= sky.dark_current * 120.0 / c.gain
    data /= sky.flats["R"]
    mask = (raw[:, : c.nx] >= c.saturation).astype(np.uint8)  # MASK_SATURATED, as load_raw
    # hot pixels, as the night's bad-pixel map marks them: their dark's
    # Poisson noise (up to 70 e- here) would look like hits
    mask[sky.hot] |= MASK_BAD_PIXEL
    return sky, data.astype(np.float32), truth, mask


def test_lacosmic_finds_the_hits_and_spares_the_stars(light):
    sky, data, truth, saturated = light
    c = sky.camera
    frame = WorkFrame("sim", data.copy(), None, saturated.copy())
    frame.noise = noise.NoiseModel(c.gain, c.read_noise, "config", "config")
    said = science.mark_cosmic_rays(frame, SETTINGS)
    flagged = (frame.mask & MASK_COSMIC_RAY) > 0
    hits = truth["cosmic_rays"]
    found = [flagged[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].any() for x, y in hits]
    # stars in the frame with their true total in e-; one is hurt when a
    # flagged pixel lies within 2 px of its centre
    xs, ys = _unbinned_positions(c, sky.stars["x"], sky.stars["y"], (0, 0), 0.0)
    inside = (xs > 3) & (xs < c.nx - 4) & (ys > 3) & (ys < c.ny - 4)
    hit_near = np.array(
        [
            any(abs(hx - x) <= 4 and abs(hy - y) <= 4 for hx, hy in hits)
            for x, y in zip(xs, ys, strict=True)
        ]
    )
    stars = inside & ~hit_near  # a star a true hit lands on may rightly be flagged
    hurt = [
        flagged[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3].any()
        for x, y in zip(xs[stars], ys[stars], strict=True)
    ]
    near_hit = np.zeros_like(flagged)
    for x, y in hits:  # a track runs up to 3 px from where it starts
        near_hit[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4] = True
    false = int((flagged & ~near_hit).sum())
    print(
        f"{said}; hits found {sum(found)}/{len(hits)}, stars touched {sum(hurt)}/{len(hurt)}, "
        f"flagged pixels {int(flagged.sum())}, {false} of them away from every hit"
    )
    assert false <= 10
    assert len(hits) > 30
    assert np.mean(found) > 0.9
    assert sum(hurt) <= 0.02 * len(hurt) + 1


def test_a_colour_mosaic_is_not_searched_for_cosmic_rays():
    """On a mosaic LA Cosmic compares a pixel with other colours and marked
    the cores of red stars; the frame is left to the stacks' rejection."""
    from astropy.io import fits

    header = fits.Header({"BAYERPAT": "GRBG"})
    data = np.full((64, 64), 100.0, np.float32)
    data[::2, 1::2] = 20.0  # the R sites of a blue sky
    frame = WorkFrame("x.fits", data, header, np.zeros(data.shape, np.uint8))
    said = science.mark_cosmic_rays(frame, {"method": "lacosmic"})
    assert said.startswith("cosmic rays not searched: a colour mosaic")
    assert not frame.mask.any()
