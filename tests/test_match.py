"""Matching a frame onto the reference at any turn, flip, scale and shift,
against catalogues simulated with a known transform; and the frames that
must be refused (another field, no stars, trailed stars)."""

import numpy as np
import pytest
from starlists import REF_SHAPE, inside, mapping_error, night, truth

from ccdreduce.register import RegistrationFailed, match_frame, similarity_matrix, transform_xy


def turn_difference(a, b):
    return abs((a - b + 180.0) % 360.0 - 180.0)


CASES = {  # rotation deg, scale, offset (fraction of the reference), frame shape
    "camera put back, far off": (0.8, 1.0, (0.6, 0.0), (1024, 1024)),
    "camera put back, near": (0.8, 1.0, (0.02, -0.01), (1024, 1024)),
    "turned a quarter": (90.0, 1.0, (0.3, -0.3), (1024, 1024)),
    "meridian flip": (180.0, 1.0, (-0.1, 0.55), (1024, 1024)),
    "any turn": (237.0, 1.0, (0.2, 0.2), (1024, 1024)),
    "2x2 binned, same field": (0.0, 2.0, (0.05, -0.1), (512, 512)),
    "2x2 binned, flipped": (180.0, 2.0, (0.0, 0.3), (512, 512)),
    "twice the plate scale": (30.0, 0.5, (0.2, -0.1), (1024, 1024)),
    "a small camera's tenth of the field": (45.0, 0.6, (0.1, 0.1), (512, 512)),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_known_turn_scale_and_shift_is_recovered(case, seed):
    rotation, scale, offset, shape = CASES[case]
    transform = truth(rotation, scale, offset, shape)
    ref_xy, frame_xy, frame_true = night(transform, shape, seed=seed)
    match = match_frame(ref_xy, frame_xy, shape, max_shift=0.25 * max(shape))
    assert mapping_error(match, transform, frame_true) < 0.05
    assert turn_difference(match.rotation, rotation) < 0.01
    assert -180 < match.rotation <= 180
    assert match.scale == pytest.approx(scale, rel=1e-4)
    assert match.transform.shape == (2, 3) and match.matches == len(match.pairs) >= 10
    assert match.fraction >= 0.5 and match.rms < 0.1  # 20 % of the stars are lost
    np.testing.assert_allclose([match.shift.dx, match.shift.dy], match.transform[:, 2])


def test_the_pierside_hint_finds_the_same_flip():
    transform = truth(180.0, 1.0, (0.05, 0.1), REF_SHAPE)
    ref_xy, frame_xy, frame_true = night(transform, REF_SHAPE, seed=3)
    searched = match_frame(ref_xy, frame_xy, REF_SHAPE, max_shift=256)
    hinted = match_frame(ref_xy, frame_xy, REF_SHAPE, max_shift=256, hint_rotation=180.0)
    np.testing.assert_allclose(hinted.transform, searched.transform, atol=1e-6)
    assert mapping_error(hinted, transform, frame_true) < 0.05
    # a wrong hint costs time, never the match
    wrong = match_frame(ref_xy, frame_xy, REF_SHAPE, max_shift=256, hint_rotation=90.0)
    np.testing.assert_allclose(wrong.transform, searched.transform, atol=1e-6)


def test_an_affine_transform_is_refined_when_asked_for():
    # a frame stretched by 1.5e-3 along x (a different camera's pixel aspect):
    # 0.75 px at 500 px from the centre, beyond any similarity
    transform = truth(12.0, 1.0, (0.1, 0.0), REF_SHAPE)
    transform[:, 0] *= 1.0015
    ref_xy, frame_xy, frame_true = night(transform, REF_SHAPE, seed=4)
    similar = match_frame(ref_xy, frame_xy, REF_SHAPE, max_shift=256)
    affine = match_frame(ref_xy, frame_xy, REF_SHAPE, max_shift=256, transform="affine")
    assert mapping_error(similar, transform, frame_true) > 0.1
    assert mapping_error(affine, transform, frame_true) < 0.05
    assert affine.rms < similar.rms


def translation_lists(seed):
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0, 1023, (rng.integers(100, 300), 2))
    shift = rng.uniform(-200, 200, 2)
    frame = ref - shift + rng.normal(0, rng.uniform(0.02, 0.3), ref.shape)
    frame = frame[inside(frame, REF_SHAPE) & (rng.random(len(frame)) > 0.2)]
    return ref, np.vstack([frame, rng.uniform(0, 1023, (len(frame) // 5, 2))])


@pytest.mark.parametrize("seed", range(6))
def test_a_pure_translation_is_today_s_bit_for_bit(seed):
    ref, frame = translation_lists(seed)
    args = (ref, frame, REF_SHAPE, 256)
    today = match_frame(*args, transform="translation")
    new = match_frame(*args)
    assert (new.shift.dx, new.shift.dy) == (today.shift.dx, today.shift.dy)
    np.testing.assert_array_equal(new.pairs, today.pairs)
    np.testing.assert_array_equal(new.shift.pairs, today.shift.pairs)
    assert new.transform.tolist() == [[1.0, 0.0, today.shift.dx], [0.0, 1.0, today.shift.dy]]
    assert (new.rotation, new.scale, new.fraction) == (today.rotation, today.scale, today.fraction)


def test_translation_still_refuses_a_turned_frame_with_today_s_words():
    transform = truth(180.0, 1.0, (0.02, 0.01), REF_SHAPE)
    ref_xy, frame_xy, _ = night(transform, REF_SHAPE, seed=5)
    with pytest.raises(RegistrationFailed, match="meridian flip"):
        match_frame(ref_xy, frame_xy, REF_SHAPE, 256, transform="translation")
    with pytest.raises(ValueError, match="one of translation, similarity, affine"):
        match_frame(ref_xy, frame_xy, REF_SHAPE, 256, transform="projective")


@pytest.mark.parametrize("seed", range(4))
def test_a_frame_of_another_field_is_refused(seed):
    ref_xy, _, _ = night(truth(0.0, 1.0, (0, 0), REF_SHAPE), REF_SHAPE, seed=seed)
    other = truth(47.0, 1.0, (0.1, 0.0), REF_SHAPE)
    _, frame_xy, _ = night(other, REF_SHAPE, seed=seed + 50)  # another sky
    with pytest.raises(RegistrationFailed, match="no consistent match|only [0-9]+ stars match"):
        match_frame(ref_xy, frame_xy, REF_SHAPE, 256)


def test_many_unrelated_fields_give_no_match():
    # the search tries every turn and scale: chance pairs must not pass
    accepted = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        ref = rng.uniform(15, 497, (rng.integers(20, 300), 2))
        frame = rng.uniform(15, 497, (rng.integers(5, 300), 2))
        try:
            match_frame(ref, frame, (512, 512), 128)
            accepted += 1
        except RegistrationFailed:
            pass
    assert accepted == 0


@pytest.mark.parametrize("count", [0, 2, 4])
def test_a_starless_frame_is_refused(count):
    ref_xy, frame_xy, _ = night(truth(180.0, 1.0, (0, 0), REF_SHAPE), REF_SHAPE, seed=6)
    with pytest.raises(RegistrationFailed, match=f"too few stars: {count} found"):
        match_frame(ref_xy, frame_xy[:count], REF_SHAPE, 256)


def test_a_clouded_frame_with_a_handful_of_stars_is_refused_not_guessed():
    # astroalign turned such a frame by 108.6 deg at scale 0.22
    ref_xy, frame_xy, _ = night(truth(90.0, 1.0, (0.1, 0), REF_SHAPE), REF_SHAPE, seed=7)
    with pytest.raises(RegistrationFailed):
        match_frame(ref_xy, frame_xy[:7], REF_SHAPE, 256)


def trailed(frame_xy, rng, length=16.0, angle=35.0):
    """Stars drawn into streaks by a failing guide: detection splits each
    streak into one to three pieces anywhere along it."""
    pieces = rng.integers(1, 4, len(frame_xy))
    start = np.repeat(frame_xy, pieces, axis=0)
    along = rng.uniform(-length / 2, length / 2, len(start))
    direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    return start + along[:, None] * direction


@pytest.mark.parametrize("rotation", [0.0, 180.0, 63.0])
def test_a_trailed_frame_is_refused(rotation):
    ref_xy, frame_xy, _ = night(truth(rotation, 1.0, (0.05, 0), REF_SHAPE), REF_SHAPE, seed=8)
    streaks = trailed(frame_xy, np.random.default_rng(8))
    with pytest.raises(RegistrationFailed, match="no consistent match|only [0-9]+ stars match"):
        match_frame(ref_xy, streaks, REF_SHAPE, 256)


def test_a_sparse_frame_turned_a_little_keeps_today_s_minimum_of_stars():
    # the vote found it within max_shift: no wider search, no stricter count
    rng = np.random.default_rng(9)
    ref = rng.uniform(100, 900, (7, 2))  # a sparse field: 6 of its 7 stars seen
    frame = turned_about_centre(ref[:6], 0.05) - [12.0, 7.0] + rng.normal(0, 0.03, (6, 2))
    match = match_frame(ref, frame, REF_SHAPE, 256)
    assert match.matches == 6 and abs(match.rotation - 0.05) < 0.01


def turned_about_centre(xy, degrees):
    """The same stars as a frame turned by ``degrees`` shows them."""
    centre = (np.array(REF_SHAPE[::-1]) - 1) / 2
    t = np.radians(degrees)
    x, y = (xy - centre).T
    return np.column_stack([np.cos(t) * x - np.sin(t) * y, np.sin(t) * x + np.cos(t) * y]) + centre


def test_the_settings_ask_for_a_transform_and_keep_today_s_without_one():
    from ccdreduce.register import match_settings

    base = {"max_shift": 0.25, "min_matches": 5}
    assert match_settings(base, 1024, 512)["transform"] == "translation"
    chosen = match_settings(base | {"transform": "similarity", "pure_scale": 3e-4}, 1024, 512)
    assert chosen["transform"] == "similarity" and chosen["pure_scale"] == 3e-4
    assert chosen["max_shift"] == 256


def test_the_real_night_s_slow_drift_stays_today_s_translation():
    # the BSU night (1536 x 1023) drifts to -0.015 deg and scale 1 - 1.5e-4
    # over the night: corners 0.3 px off, stacked on a translation today
    rng = np.random.default_rng(12)
    shape = (1023, 1536)
    ref = rng.uniform(0, 1, (200, 2)) * [1535, 1022]
    a = (1 - 1.5e-4) * np.exp(1j * np.radians(0.015))  # frame -> reference
    centre = 767.5 + 511j
    drifted = transform_xy(similarity_matrix(1 / a, centre - centre / a), ref) - [3.0, 2.0]
    frame = drifted + rng.normal(0, 0.25, ref.shape)
    args = (ref, frame, shape, 384)
    new = match_frame(*args)
    today = match_frame(*args, transform="translation")
    assert abs(new.rotation + 0.015) < 0.005 and new.corner < 0.5
    assert new.transform.tolist() == [[1.0, 0.0, today.shift.dx], [0.0, 1.0, today.shift.dy]]
    np.testing.assert_array_equal(new.pairs, today.pairs)
    strict = match_frame(*args, pure_corner=0.0)  # the thresholds alone
    assert strict.transform[0, 1] != 0.0
