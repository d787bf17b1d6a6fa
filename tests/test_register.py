"""Registration: the shift from star lists, and moving images by it."""

import numpy as np
import pytest

from ccdreduce.register import RegistrationFailed, find_shift, shift_image, shift_mask


def star_lists(dx, dy, n=60, seed=0, jitter=0.02, keep=1.0, extra=0):
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0, 1024, (n, 2))
    frame = ref - [dx, dy] + rng.normal(0, jitter, (n, 2))
    frame = frame[rng.random(n) < keep]  # thin cloud: faint stars lost
    frame = np.vstack([frame, rng.uniform(0, 1024, (extra, 2))])  # cosmic rays, a satellite
    return ref, frame


@pytest.mark.parametrize("dx, dy", [(0.3, -0.7), (43.37, -27.52), (-250.25, 180.8), (-3.0, 255.9)])
def test_shifts_up_to_a_quarter_of_the_frame_within_a_hundredth(dx, dy):
    ref, frame = star_lists(dx, dy)
    shift = find_shift(ref, frame, max_shift=256)
    assert abs(shift.dx - dx) < 0.01 and abs(shift.dy - dy) < 0.01
    assert shift.matches >= 55


def test_thin_cloud_and_spurious_sources_do_not_fool_it():
    ref, frame = star_lists(61.4, -12.2, keep=0.3, extra=40)
    shift = find_shift(ref, frame, max_shift=256)
    assert abs(shift.dx - 61.4) < 0.02 and abs(shift.dy + 12.2) < 0.02


def test_a_starless_or_unrelated_frame_fails_with_a_reason():
    ref, _ = star_lists(0, 0)
    with pytest.raises(RegistrationFailed, match="too few stars: 2 found"):
        find_shift(ref, ref[:2], max_shift=256)
    unrelated = np.random.default_rng(9).uniform(0, 1024, (60, 2))
    with pytest.raises(RegistrationFailed, match="match the reference"):
        find_shift(ref, unrelated, max_shift=256, min_matches=10)


def test_integer_shift_moves_pixels_and_fills_nan():
    image = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    moved = shift_image(image, 3.4, -2.6)  # rounds to (3, -3)
    # a star at (x, y) lands at (x + dx, y + dy)
    assert moved[5 - 3, 10 + 3] == image[5, 10]
    assert np.isnan(moved[:, :3]).all() and np.isnan(moved[-3:]).all()
    assert np.isfinite(moved).sum() == (20 - 3) * (30 - 3)
    mask = shift_mask(np.ones((20, 30), np.uint8), 3.4, -2.6)
    assert mask.sum() == (20 - 3) * (30 - 3) and mask.dtype == np.uint8


def test_subpixel_shift_moves_the_centroid():
    yy, xx = np.mgrid[0:41, 0:41]
    star = np.exp(-((xx - 20.0) ** 2 + (yy - 20.0) ** 2) / (2 * 2.0**2)).astype(np.float32)
    moved = shift_image(star, 0.35, -0.6, subpixel=True)
    good = np.isfinite(moved)
    total = moved[good].sum()
    cx = (moved[good] * xx[good]).sum() / total
    cy = (moved[good] * yy[good]).sum() / total
    assert abs(cx - 20.35) < 0.01 and abs(cy - 19.4) < 0.01
    assert np.isnan(moved[:, 0]).all() is np.False_ or np.isnan(moved).any()


def test_a_frame_goes_onto_the_reference_grid_with_its_cards_or_its_reason():
    from ccdreduce.register import onto_reference

    settings = {
        "resample": "integer",
        "max_shift": 0.3,
        "min_matches": 5,
        "sky": "median",
        "background_box": 64,
    }
    ny = nx = 128
    yy, xx = np.mgrid[:ny, :nx]
    rng = np.random.default_rng(3)
    ref_xy = rng.uniform(20, 108, (25, 2))

    def image(offset):  # stars at ref_xy - offset on a sky of 100 ADU
        data = np.full((ny, nx), 100.0, dtype=np.float32)
        for x, y in ref_xy - offset:
            data += 500 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.5)
        return data

    as_lists = {"x": ref_xy[:, 0], "y": ref_xy[:, 1]}
    reference = {"reference": "n1/ref", "stars": as_lists}
    stars = {"x": ref_xy[:, 0] - 7.0, "y": ref_xy[:, 1] + 3.0}
    moved, _, _, cards, message, ok = onto_reference(
        image((7.0, -3.0)), None, stars, {"sky": 100.0}, reference, "n1/f2", settings
    )
    assert ok and "applied (+7, -3)" in message
    assert cards["DX"][0] == 7 and cards["DY"][0] == -3 and cards["REGSTAT"][0] == "ok"
    np.testing.assert_allclose(
        moved[10:-10, 10:-10], image((0, 0))[10:-10, 10:-10] - 100, atol=1e-3
    )
    assert np.isnan(moved[:, :7]).all()  # uncovered columns

    blank, _, _, cards, reason, ok = onto_reference(
        image((0, 0)),
        None,
        {"x": [], "y": []},
        {"sky": 100.0},
        reference,
        "n1/f3",
        settings,
    )
    assert not ok and np.isnan(blank).all()
    assert cards["REGSTAT"][0] == "failed" and cards["REGNOTE"] == reason
    assert "too few stars" in reason
    assert "DX" not in cards


SETTINGS = {
    "resample": "integer",
    "max_shift": 0.25,
    "min_matches": 5,
    "sky": "median",
    "background_box": 64,
}


def register_star_list(ref_xy, frame_xy, shape=(512, 512)):
    """onto_reference on a blank frame: (cards, message, ok)."""
    from ccdreduce.register import onto_reference

    reference = {"reference": "n1/ref", "stars": {"x": ref_xy[:, 0], "y": ref_xy[:, 1]}}
    stars = {"x": frame_xy[:, 0], "y": frame_xy[:, 1]}
    data = np.zeros(shape, np.float32)
    _, _, _, cards, message, ok = onto_reference(
        data, None, stars, {"sky": 0.0}, reference, "n1/frame", SETTINGS
    )
    return cards, message, ok


def turned(xy, degrees, centre=(255.5, 255.5)):
    t = np.radians(degrees)
    x, y = (xy - centre).T
    return np.column_stack([np.cos(t) * x - np.sin(t) * y, np.sin(t) * x + np.cos(t) * y]) + centre


def test_chance_matches_between_unrelated_fields_are_not_a_registration():
    # two unrelated fields of 120 stars: the vote finds 5 chance pairs
    rng = np.random.default_rng(16)
    ref, frame = rng.uniform(15, 497, (120, 2)), rng.uniform(15, 497, (120, 2))
    cards, reason, ok = register_star_list(ref, frame)
    assert not ok and "DX" not in cards
    assert reason.startswith("no consistent match") and "chance matches" in reason


@pytest.mark.parametrize("degrees", [179.6, 180.0])
def test_a_frame_turned_by_180_deg_is_left_out_as_a_meridian_flip(degrees):
    rng = np.random.default_rng(4)
    ref = rng.uniform(0, 511, (80, 2))
    frame = turned(ref, degrees) + [6.0, -9.0] + rng.normal(0, 0.03, ref.shape)
    inside = np.all((frame > 0) & (frame < 511), axis=1)
    cards, reason, ok = register_star_list(ref, frame[inside])
    assert not ok and "DX" not in cards
    assert reason.startswith("rotated by about 180 deg: meridian flip?")
    assert cards["REGROT"][0] == pytest.approx(degrees, abs=0.05)


@pytest.mark.parametrize("degrees", [0.8, -0.3, 0.15])
def test_a_frame_turned_by_under_a_degree_is_left_out_with_the_angle(degrees):
    rng = np.random.default_rng(5)
    ref = rng.uniform(0, 511, (80, 2))
    frame = turned(ref, degrees) - [20.0, 13.0] + rng.normal(0, 0.03, ref.shape)
    inside = np.all((frame > 0) & (frame < 511), axis=1)
    cards, reason, ok = register_star_list(ref, frame[inside])
    assert not ok and "DX" not in cards
    assert reason.startswith(f"rotated by {degrees:+.2f} deg")
    assert cards["REGROT"][0] == pytest.approx(degrees, abs=0.01)


def test_a_rotation_too_small_to_move_the_corners_is_carried_by_the_shift():
    rng = np.random.default_rng(6)
    ref = rng.uniform(0, 511, (80, 2))
    frame = turned(ref, 0.03) - [20.0, 13.0] + rng.normal(0, 0.03, ref.shape)
    inside = np.all((frame > 0) & (frame < 511), axis=1)
    cards, message, ok = register_star_list(ref, frame[inside])
    assert ok and cards["DX"][0] == 20 and cards["DY"][0] == 13
    assert cards["REGROT"][0] == pytest.approx(0.03, abs=0.01)
    assert cards["REGFRAC"][0] > 0.9


def test_a_genuine_match_with_poor_seeing_centroids_is_kept():
    # the real BSU night: FWHM 10 px, matched stars scatter 0.4 px
    rng = np.random.default_rng(7)
    ref = rng.uniform(0, 1535, (120, 2)) * [1.0, 1022 / 1535]
    frame = ref - [4.0, -3.0] + rng.normal(0, 0.3, ref.shape)
    inside = np.all((frame > 0) & (frame < [1535, 1022]), axis=1)
    cards, message, ok = register_star_list(ref, frame[inside], shape=(1023, 1536))
    assert ok, message
    assert cards["DX"][0] == 4 and cards["DY"][0] == -3


# -- data quality and uncertainty on the reference grid ---------------------


def _noisy_frame(shape=(256, 256), sigma=5.0, seed=11):
    """A star-free white-noise frame with its true sigma, a saturated pixel
    and a bad column flagged in its MASK."""
    from ccdreduce.fitsfile import MASK_BAD_PIXEL, MASK_SATURATED

    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, sigma, shape).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    mask[100, 120] = MASK_SATURATED
    mask[:, 60] = MASK_BAD_PIXEL
    return data, mask, np.full(shape, sigma, np.float32)


def _register(data, mask, sigma, frame_xy, ref_xy, **settings):
    from ccdreduce.register import onto_reference

    reference = {"reference": "n1/ref", "stars": {"x": ref_xy[:, 0], "y": ref_xy[:, 1]}}
    stars = {"x": frame_xy[:, 0], "y": frame_xy[:, 1]}
    return onto_reference(
        data, mask, stars, {"sky": 0.0}, reference, "n1/frame", SETTINGS | settings, sigma
    )


def test_an_integer_shift_moves_uncert_and_mask_exactly_and_marks_no_data():
    from ccdreduce.fitsfile import MASK_BAD_PIXEL, MASK_NO_DATA, MASK_SATURATED

    data, mask, sigma = _noisy_frame()
    sigma[50, 50] = 9.0  # a pixel of its own noise travels with its value
    ref_xy = np.random.default_rng(2).uniform(30, 226, (40, 2))
    moved, moved_mask, moved_sigma, cards, _, ok = _register(
        data, mask, sigma, ref_xy - [7, -3], ref_xy
    )
    assert ok and (cards["DX"][0], cards["DY"][0]) == (7, -3)
    # whole pixels: values and sigma exactly as in the frame, 7 px right, 3 px up
    assert moved[47, 47] == data[50, 40] and moved_sigma[47, 47] == 5.0
    assert moved_sigma[47, 57] == 9.0
    # uncovered: the first 7 columns and the last 3 rows
    uncovered = np.zeros(moved.shape, bool)
    uncovered[:, :7] = True
    uncovered[-3:, :] = True
    assert np.all(moved_mask[uncovered] & MASK_NO_DATA)
    assert not np.any(moved_mask[~uncovered] & MASK_NO_DATA)
    # masked pixels: NaN in data and sigma, their bits kept
    assert moved_mask[97, 127] == MASK_SATURATED and np.isnan(moved[97, 127])
    assert np.all(moved_mask[:-3, 67] == MASK_BAD_PIXEL) and np.isnan(moved[:, 67]).all()
    assert np.array_equal(np.isnan(moved), moved_mask != 0)
    assert np.array_equal(np.isnan(moved_sigma), np.isnan(moved))


def test_a_turned_frame_carries_its_noise_as_predicted_and_masks_what_it_reaches():
    from ccdreduce.fitsfile import MASK_NO_DATA

    data, mask, sigma = _noisy_frame(sigma=5.0)
    ref_xy = np.random.default_rng(2).uniform(30, 226, (40, 2))
    frame_xy = turned(ref_xy, 7.0, centre=(127.5, 127.5)) + [2.3, -1.6]
    moved, moved_mask, moved_sigma, cards, _, ok = _register(
        data, mask, sigma, frame_xy, ref_xy, transform="similarity"
    )
    assert ok and cards["REGKIND"][0] == "general" and abs(abs(cards["REGROT"][0]) - 7.0) < 0.05
    # the corners the turned frame does not reach have no data
    assert moved_mask[0, 0] & MASK_NO_DATA and moved_mask[255, 255] & MASK_NO_DATA
    assert moved_mask[128, 128] == 0 and np.isfinite(moved[128, 128])
    assert np.array_equal(np.isnan(moved), moved_mask != 0)
    assert np.array_equal(np.isnan(moved_sigma), np.isnan(moved))
    # the bad column, turned, is masked and NaN all along its way
    assert (moved_mask & ~np.uint8(MASK_NO_DATA)).any(axis=0).sum() > 5
    # predicted sigma against the measured scatter of the interpolated noise
    ok_px = np.isfinite(moved)
    predicted = np.sqrt(np.mean(moved_sigma[ok_px] ** 2))
    measured = np.std(moved[ok_px])
    assert abs(measured / predicted - 1) < 0.03, (measured, predicted)
    assert predicted < 0.95 * 5.0  # interpolation smooths white noise


def test_a_subpixel_shift_carries_its_noise_as_predicted():
    data, mask, sigma = _noisy_frame(sigma=4.0, seed=5)
    mask[:] = 0
    ref_xy = np.random.default_rng(2).uniform(30, 226, (40, 2))
    moved, _, moved_sigma, cards, _, ok = _register(
        data, mask, sigma, ref_xy - [5.5, -2.5], ref_xy, resample="subpixel"
    )
    assert ok and cards["DX"][0] == 5.5
    inner = np.isfinite(moved)
    predicted = float(np.median(moved_sigma[inner]))
    assert predicted == pytest.approx(4.0 * 0.8696**2, rel=2e-3)  # half a pixel both ways
    assert abs(np.std(moved[inner]) / predicted - 1) < 0.03
