"""Resampling onto the stack grid: flux, centroids and widths of synthetic
stars of known flux and position, no-data edges, masks, the whole-pixel
paths and the union canvas."""

import numpy as np
import pytest
from scipy.special import erf

from ccdreduce import register
from ccdreduce.register import shift_image, shift_mask
from ccdreduce.resample import (
    canvas,
    compose,
    footprint,
    kind_of,
    noise_gain,
    snap,
    translation,
    warp,
    warp_sigma,
)

FLUX = 10_000.0


def turn(deg, scale=1.0, centre=(0.0, 0.0), to=(0.0, 0.0)):
    """The transform turning by ``deg`` and scaling about ``centre`` of the
    frame, which lands at ``to`` on the output grid."""
    t = np.radians(deg)
    c, s = scale * np.cos(t), scale * np.sin(t)
    linear = np.array([[c, -s], [s, c]])
    return np.column_stack([linear, np.asarray(to) - linear @ centre])


def _profile(coord, centre, sigma):
    """A Gaussian integrated over each pixel along one axis."""
    edge = np.sqrt(2) * sigma
    return 0.5 * (erf((coord + 0.5 - centre) / edge) - erf((coord - 0.5 - centre) / edge))


def stars(shape, positions, fwhm, flux=FLUX):
    """Pixel-integrated Gaussian stars of ``flux`` each on a zero sky."""
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    yy, xx = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
    image = np.zeros(shape)
    for x, y in positions:
        image += flux * _profile(xx, x, sigma) * _profile(yy, y, sigma)
    return image.astype(np.float32)


def measure(image, x, y, radius):
    """Flux, centroid (x, y) and FWHM (from the second moment) in a circle."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    inside = np.hypot(xx - x, yy - y) < radius
    values, xs, ys = image[inside], xx[inside], yy[inside]
    flux = values.sum()
    cx, cy = (values * xs).sum() / flux, (values * ys).sum() / flux
    variance = (values * ((xs - cx) ** 2 + (ys - cy) ** 2)).sum() / flux / 2
    return flux, cx, cy, 2 * np.sqrt(2 * np.log(2)) * np.sqrt(variance)


def moved(transform, xy):
    return transform @ [xy[0], xy[1], 1.0]


# a turn or scale about the frame's middle, landing off whole pixels
GEOMETRIES = [(0.8, 1.0), (30.0, 1.0), (90.0, 1.0), (180.0, 1.0), (0.0, 0.5), (0.0, 2.0)]


@pytest.mark.parametrize("method", ["spline3", "lanczos3"])
@pytest.mark.parametrize("fwhm", [3.0, 4.0])
@pytest.mark.parametrize("deg, scale", GEOMETRIES)
def test_stars_keep_flux_width_and_place(deg, scale, fwhm, method):
    n = 96
    rng = np.random.default_rng(int(deg * 10 + scale * 100 + fwhm))
    # far enough apart that one star's aperture holds no other
    positions = np.array([[28, 28], [68, 28], [28, 68], [68, 68]]) + rng.uniform(-0.5, 0.5, (4, 2))
    frame = stars((n, n), positions, fwhm)
    out_n = int(n * scale)
    middle = out_n / 2 - 0.5
    transform = turn(deg, scale, (47.5, 47.5), (middle + 0.237, middle - 0.411))
    assert kind_of(transform) == "general"
    out, _ = warp(frame, transform, (out_n, out_n), method=method)
    # Lanczos-3 weights carry a first moment of up to 0.02 px (module text)
    centroid_tol = 0.002 if method == "spline3" else 0.025
    for xy in positions:
        flux0, _, _, fwhm0 = measure(frame, *xy, radius=5 * fwhm)
        x, y = moved(transform, xy)
        flux, cx, cy, width = measure(out, x, y, radius=5 * fwhm * scale)
        assert abs(flux / flux0 - 1) < 2e-3
        assert abs(cx - x) < centroid_tol and abs(cy - y) < centroid_tol
        assert abs(width / (fwhm0 * scale) - 1) < 0.05


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_total_flux_kept_when_the_scale_changes(scale):
    # a 2x2-binned frame onto a 1x1 grid (scale 2) gives each output pixel a
    # quarter of the frame pixel's counts, and the other way round
    n = 80
    positions = np.random.default_rng(3).uniform(15, 65, (8, 2))
    frame = stars((n, n), positions, fwhm=3.5)
    out_n = int(n * scale)
    transform = turn(0.0, scale, (39.5, 39.5), (out_n / 2 - 0.5 + 0.3, out_n / 2 - 0.5 + 0.1))
    out, _ = warp(frame, transform, (out_n, out_n))
    assert abs(np.nansum(out) / (8 * FLUX) - 1) < 2e-3
    flat, _ = warp(np.full((n, n), 100.0, np.float32), transform, (out_n, out_n))
    assert np.nanmax(np.abs(flat - 100.0 / scale**2)) < 1e-3


def test_a_flat_frame_stays_flat_to_its_edges():
    # no zero padding: the pixels next to the frame's edge are not darkened
    flat = np.full((60, 70), 250.0, np.float32)
    out, _ = warp(flat, turn(7.0, 1.0, (35, 30), (34.6, 30.2)), (60, 70))
    finite = np.isfinite(out)
    assert np.abs(out[finite] - 250.0).max() < 1e-3
    assert finite.sum() > 0.8 * out.size


def test_source_outside_the_frame_is_nan_like_the_whole_pixel_shift():
    frame = np.ones((30, 40), np.float32)
    # 0.7 px rounds to 1: the first column is uncovered either way
    out, _ = warp(frame, translation(0.7, 0.2), (30, 40))
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1:]).all()
    assert np.isfinite(out).sum() == np.isfinite(shift_image(frame, 0.7, 0.2)).sum()


def noisy_sky(shape, seed, sigma=10.0):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(10, min(shape) - 10, (6, 2))
    return stars(shape, positions, 3.5) + rng.normal(0, sigma, shape).astype(np.float32)


@pytest.mark.parametrize("method", ["spline3", "lanczos3"])
def test_a_nan_block_stays_nan_and_its_border_does_not_ring(method):
    reach = 3
    frame = noisy_sky((100, 100), seed=5)
    holed = frame.copy()
    holed[40:52, 45:60] = np.nan
    holed[70:, 20] = np.nan  # a bad column
    transform = turn(0.8, 1.0, (50, 50), (50.3, 49.8))
    clean, _ = warp(frame, transform, frame.shape, method=method)
    out, _ = warp(holed, transform, frame.shape, method=method)
    # every output pixel sampling the hole is NaN
    inverse = np.linalg.inv(np.vstack([transform, [0, 0, 1]]))
    yy, xx = np.mgrid[0:100, 0:100]
    sx = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
    sy = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
    in_hole = (sx > 44.5) & (sx < 59.5) & (sy > 39.5) & (sy < 51.5)
    assert np.isnan(out[in_hole]).all()
    # NaN grows by less than `reach` frame pixels around it, no further
    near = (sx > 45 - reach) & (sx < 59 + reach) & (sy > 40 - reach) & (sy < 51 + reach)
    column = (np.abs(sx - 20) < reach) & (sy > 70 - reach)
    frame_edge = (sx < 0.5) | (sx > 98.5) | (sy < 0.5) | (sy > 98.5)
    assert not np.isnan(out[~(near | column | frame_edge)]).any()
    # the pixels kept next to the hole are those of the frame without it:
    # no ringing from the no-data edge, within a few % of the noise (10)
    border = np.isfinite(out) & (sx > 40) & (sx < 64) & (sy > 35) & (sy < 56)
    assert border.sum() > 150
    # (the spline's prefilter reaches past its core, decaying by 0.27 a
    # pixel: measured 0.024 sigma here, 0.13 at worst over 20 skies; Lanczos
    # nothing)
    assert np.abs(out[border] - clean[border]).max() < (1.0 if method == "spline3" else 1e-3)


def test_rot90_and_rot180_are_exact_permutations():
    frame = noisy_sky((50, 70), seed=1)
    ny, nx = frame.shape
    half_turn = np.array([[-1.0, 0, nx - 1 + 3], [0, -1.0, ny - 1 - 2]])
    out, _ = warp(frame, half_turn, frame.shape)
    assert kind_of(half_turn) == "rot90"
    np.testing.assert_array_equal(out[:-2, 3:], np.rot90(frame, 2)[2:, :-3])
    assert np.isnan(out[-2:]).all() and np.isnan(out[:, :3]).all()
    # +90 deg: x_out = -y + (ny - 1), y_out = x; output shape (nx, ny)
    quarter = np.array([[0.0, -1.0, ny - 1], [1.0, 0.0, 0.0]])
    out, _ = warp(frame, quarter, (nx, ny))
    for x, y in [(0, 0), (69, 0), (13, 41)]:
        assert out[x, ny - 1 - y] == frame[y, x]
    np.testing.assert_array_equal(out, np.rot90(frame, -1))


def test_a_turn_within_tolerance_is_still_a_permutation():
    frame = noisy_sky((40, 40), seed=2)
    almost = turn(180.004)
    almost[:, 2] = 39  # the frame's corner (39, 39) at the output's (0, 0)
    assert kind_of(almost) == "rot90"
    out, _ = warp(frame, almost, frame.shape)
    np.testing.assert_array_equal(out, frame[::-1, ::-1])


@pytest.mark.parametrize("dx, dy", [(3, -2), (-7, 0), (0, 0), (45, 12), (3.4, -2.6), (-0.5, 0.49)])
def test_resample_integer_is_todays_whole_pixel_shift(dx, dy):
    # `resample: integer` snaps the measured transform: frames and masks
    # identical to register.shift_image and shift_mask
    frame = noisy_sky((30, 40), seed=4)
    mask = (np.random.default_rng(1).random((30, 40)) < 0.1).astype(np.uint8)
    whole = snap(translation(dx, dy))
    out, out_mask = warp(frame, whole, frame.shape, mask=mask)
    np.testing.assert_array_equal(out, shift_image(frame, dx, dy))
    np.testing.assert_array_equal(out_mask, shift_mask(mask, dx, dy))


def test_mask_bits_follow_the_pixels():
    frame = np.ones((40, 50), np.float32)
    mask = np.zeros((40, 50), np.uint8)
    mask[10, 20] = 1  # saturated
    mask[30, 5] = 2  # bad flat
    # whole pixels: each bit moves with its pixel
    flip = np.array([[-1.0, 0, 49], [0, -1.0, 39]])
    _, moved_mask = warp(frame, flip, frame.shape, mask=mask)
    assert moved_mask[39 - 10, 49 - 20] == 1 and moved_mask[39 - 30, 49 - 5] == 2
    assert moved_mask.sum() == 3 and moved_mask.dtype == np.uint8
    # interpolated: the output pixels whose 2x2 core holds the pixel
    transform = turn(25.0, 1.0, (25, 20), (25.3, 20.4))
    _, moved_mask = warp(frame, transform, frame.shape, mask=mask)
    for bit, xy in [(1, (20, 10)), (2, (5, 30))]:
        x, y = moved(transform, xy)
        assert moved_mask[int(round(y)), int(round(x))] & bit
        # source points within the 2x2 core's area of 4 frame pixels
        assert 2 <= np.count_nonzero(moved_mask & bit) <= 6
    # uncovered pixels get 0, like register.shift_mask
    _, far = warp(frame, translation(0.5, 100.2), frame.shape, mask=np.full_like(mask, 3))
    assert not far.any()


def test_kind_of_and_snap():
    assert kind_of(translation(3.2, -1.7)) == "translation"
    assert kind_of(turn(0.005)) == "translation"
    assert kind_of(turn(0.02)) == "general"
    assert kind_of(turn(0.0, 1.00005)) == "translation"
    assert kind_of(turn(0.0, 1.001)) == "general"
    assert kind_of(turn(90.0, 1.0, (0, 0), (99, 0))) == "rot90"
    assert kind_of(turn(270.0, 1.0, (0, 0), (0, 99))) == "rot90"
    assert kind_of(turn(180.0, 1.0, (0, 0), (99.5, 99))) == "general"  # half a pixel
    assert kind_of(turn(0.0, 2.0)) == "general"
    snapped = snap(turn(180.003, 1.0, (0, 0), (99.4, 98.7)))
    np.testing.assert_array_equal(snapped, [[-1, 0, 99], [0, -1, 99]])
    assert snap(turn(12.0)) is None
    # the one convention of rotation: register's (REGROT, rotation_deg)
    assert register.rotation_of(turn(-33.0, 0.5)) == pytest.approx(33.0)
    assert register.scale_of(turn(-33.0, 0.5)) == pytest.approx(0.5)


def test_canvas_reference_is_the_reference_grid():
    shape, offset = canvas([turn(30.0)], [(50, 60)], (80, 90))
    assert shape == (80, 90)
    np.testing.assert_array_equal(offset, translation(0, 0))


def test_canvas_union_covers_every_corner_and_no_more():
    shapes = [(100, 120), (100, 120), (50, 60), (100, 120)]
    transforms = [
        translation(0, 0),  # the reference
        turn(30.0, 1.0, (60, 50), (70.3, 40.8)),
        turn(0.0, 2.0, (0, 0), (-20.2, 13.6)),  # 2x2-binned
        turn(180.0, 1.0, (0, 0), (119 + 25, 99 - 31)),  # flipped, off by (25, -31)
    ]
    (ny, nx), offset = canvas(transforms, shapes, (100, 120), mode="union")
    corners = np.vstack(
        [footprint(compose(offset, t), s) for t, s in zip(transforms, shapes, strict=True)]
    )
    assert corners.min() >= -0.5 - 1e-9
    assert corners[:, 0].max() <= nx - 0.5 + 1e-9 and corners[:, 1].max() <= ny - 0.5 + 1e-9
    # smallest: one pixel less on either side would cut a corner off
    assert corners[:, 0].min() < 0.5 and corners[:, 1].min() < 0.5
    assert corners[:, 0].max() > nx - 1.5 and corners[:, 1].max() > ny - 1.5
    # whole-pixel offset: the reference stays on whole pixels
    assert kind_of(compose(offset, transforms[0])) == "translation"
    np.testing.assert_array_equal(offset[:, 2], np.round(offset[:, 2]))
    # every frame's flux lands on it
    for transform, shape in zip(transforms, shapes, strict=True):
        frame = stars(shape, [(shape[1] / 2, shape[0] / 2)], 3.5)
        frame[:3] = frame[-3:] = 1.0  # something at the frame's edges too
        out, _ = warp(frame, compose(offset, transform), (ny, nx))
        assert abs(np.nansum(out) / frame.sum() - 1) < 2e-3


@pytest.mark.parametrize("method", ["spline3", "lanczos3"])
@pytest.mark.parametrize(
    "transform",
    [
        [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]],  # half a pixel both ways: the most smoothing
        [[1.0, 0.0, 3.3], [0.0, 1.0, -7.0]],
        [[np.cos(0.014), -np.sin(0.014), 3.2], [np.sin(0.014), np.cos(0.014), -1.7]],
        [[0.5, 0.0, 10.3], [0.0, 0.5, 20.1]],  # a 2x2-binned frame's scale
    ],
)
def test_predicted_sigma_of_an_interpolated_white_noise_frame_is_its_measured_scatter(
    method, transform
):
    rng = np.random.default_rng(21)
    noise = rng.normal(0.0, 2.0, (300, 300)).astype(np.float32)
    sigma = np.full(noise.shape, 2.0, np.float32)
    sigma[:, 150:] = 3.0  # the right half noisier: the map is moved, not one number
    noise[:, 150:] *= 1.5
    transform = np.array(transform)
    out, _ = warp(noise, transform, noise.shape, method=method)
    predicted = warp_sigma(sigma, transform, noise.shape, method=method)
    assert np.array_equal(np.isfinite(predicted), np.isfinite(out))
    back = np.linalg.inv(np.vstack([transform, [0, 0, 1]]))
    yy, xx = np.indices(noise.shape)
    source_x = back[0, 0] * xx + back[0, 1] * yy + back[0, 2]
    for half in (source_x < 140, source_x > 160):  # away from the step between halves
        inside = np.isfinite(out) & half
        measured = np.std(out[inside])
        expected = np.sqrt(np.mean(predicted[inside] ** 2))
        assert abs(measured / expected - 1) < 0.03, (measured, expected)


def test_noise_gain_is_one_at_whole_pixels_and_least_at_half_a_pixel():
    gain = noise_gain(np.array([0.0, 0.25, 0.5, 1.0, 2.5]))
    assert gain[0] == pytest.approx(1.0, abs=1e-6) and gain[3] == pytest.approx(1.0, abs=1e-6)
    assert gain[2] == pytest.approx(gain[4]) and gain[2] < gain[1] < 1.0
    assert gain[2] == pytest.approx(0.8696, abs=1e-3)
