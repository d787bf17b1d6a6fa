"""Registration: the transform that brings a frame onto the reference,
found from the stars themselves, then applied by whole pixels (the lab's
choice: no interpolation, noise untouched) or by sub-pixel interpolation.

Finding the shift: every pair (reference star, frame star) votes for the
offset between them; the true offset collects a vote from nearly every star
while wrong pairings scatter, so the peak of the vote histogram is robust to
large jumps (a quarter of the frame), missing stars and thin cloud. The
matched stars' centroids then give the sub-pixel shift.

Turned, flipped or rescaled frames (a camera put back, a meridian flip,
another binning): when the vote fails or its fit shows a turn or scale,
like triangles of bright stars (patterns.py) propose similarities at any
turn and scale; the best are refined on all matched stars and verified like
the shift. A frame that is a pure translation keeps the vote's result.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from . import patterns
from .robust import MAD_TO_SIGMA_4DP
from .stars import sky_model


class RegistrationFailed(Exception):
    """A frame that cannot be registered; the message is the reason, and
    ``rotation`` the measured turn (deg) when that is the reason."""

    def __init__(self, reason, rotation=None):
        super().__init__(reason)
        self.rotation = rotation


@dataclass
class Shift:
    dx: float  # a star at x in the frame is at x + dx on the reference grid
    dy: float
    matches: int
    rms: float  # scatter of the matched stars' offsets, pixels
    pairs: np.ndarray = field(default=None, repr=False)  # (i_ref, i_frame) kept


def _vote(ref, frame, max_shift, bin_size):
    diff = (ref[:, None, :] - frame[None, :, :]).reshape(-1, 2)
    diff = diff[np.all(np.abs(diff) <= max_shift, axis=1)]
    if diff.size == 0:
        return None
    bins = int(np.ceil(2 * max_shift / bin_size)) + 1
    idx = np.floor((diff + max_shift) / bin_size).astype(int).clip(0, bins - 1)
    hist = np.bincount(idx[:, 1] * bins + idx[:, 0], minlength=bins * bins).reshape(bins, bins)
    # sum 2x2 neighbourhoods so that an offset on a bin edge is not split
    summed = hist[:-1, :-1] + hist[1:, :-1] + hist[:-1, 1:] + hist[1:, 1:]
    iy, ix = np.unravel_index(np.argmax(summed), summed.shape)
    centre = (np.array([ix, iy]) + 1.0) * bin_size - max_shift
    near = diff[np.all(np.abs(diff - centre) <= 1.5 * bin_size, axis=1)]
    return np.median(near, axis=0), summed[iy, ix]


def _match(ref, frame, shift, tolerance):
    """Pairs (i_ref, i_frame) of mutual nearest neighbours after the shift."""
    moved = frame + shift
    dist = np.hypot(*(ref[:, None, :] - moved[None, :, :]).transpose(2, 0, 1))
    if dist.size == 0:
        return np.empty((0, 2), dtype=int)
    best_frame = dist.argmin(axis=1)
    best_ref = dist.argmin(axis=0)
    ref_index = np.arange(len(ref))
    mutual = (best_ref[best_frame] == ref_index) & (dist[ref_index, best_frame] <= tolerance)
    return np.column_stack([ref_index[mutual], best_frame[mutual]]).astype(int)


def find_shift(ref_xy, frame_xy, max_shift, min_matches=5, tolerance=1.5, use=80):
    """The (dx, dy) that puts frame stars on reference stars.

    ``ref_xy`` and ``frame_xy`` are (n, 2) arrays of x, y, brightest first.
    Raises RegistrationFailed with the reason when it cannot be trusted.
    """
    ref_xy = np.asarray(ref_xy, dtype=float).reshape(-1, 2)
    frame_xy = np.asarray(frame_xy, dtype=float).reshape(-1, 2)
    if len(frame_xy) < min_matches:
        raise RegistrationFailed(
            f"too few stars: {len(frame_xy)} found, {min_matches} needed (clouded out?)"
        )
    vote = _vote(ref_xy[:use], frame_xy[:use], max_shift, bin_size=2.0)
    if vote is None:
        raise RegistrationFailed(f"no star pair within the largest shift ({max_shift:g} px)")
    shift, _ = vote
    for tol in (3.0, tolerance, tolerance):
        pairs = _match(ref_xy, frame_xy, shift, tol)
        if len(pairs) < min_matches:
            break
        offsets = ref_xy[pairs[:, 0]] - frame_xy[pairs[:, 1]]
        # clip outliers (blends, a moving object) about the median
        centre = np.median(offsets, axis=0)
        spread = np.hypot(*(offsets - centre).T)
        good = spread <= max(3 * MAD_TO_SIGMA_4DP * np.median(spread), 0.05)
        shift = offsets[good].mean(axis=0)
    if len(pairs) < min_matches:
        raise RegistrationFailed(
            f"only {len(pairs)} stars match the reference, {min_matches} needed"
        )
    rms = float(np.sqrt(np.mean(np.sum((offsets[good] - shift) ** 2, axis=1))))
    return Shift(float(shift[0]), float(shift[1]), int(good.sum()), rms, pairs[good])


@dataclass
class Match:
    """A frame's stars on the reference's, checked for consistency."""

    shift: Shift  # the translation part of the transform (all of it for a pure shift)
    rotation: float  # deg in (-180, 180]: the frame shows the reference's sky turned by this
    scale: float  # reference px per frame px (1 for one camera, 2 for a 2x2-binned frame)
    fraction: float  # of the reference's bright stars inside the frame, those matched
    rms: float  # residual of the matched pairs about the fit, px
    corner: float  # px: how far the translation puts the frame's corners from the fit
    pairs: np.ndarray = field(repr=False)  # (i_ref, i_frame) under the fit
    # 2x3: a star at 0-based (x, y) of the frame lands at transform @ (x, y, 1)
    # on the reference grid; a pure shift when not given
    transform: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        if self.transform is None:
            self.transform = np.array([[1.0, 0.0, self.shift.dx], [0.0, 1.0, self.shift.dy]])

    @property
    def matches(self):
        return len(self.pairs)


#: Defaults of the consistency checks and of the transform sought (config
#: stacking.registration). transform: translation (refuses turned frames),
#: similarity (rotation, scale, shift) or affine (6 parameters, refined after
#: the similarity). A similarity turned by under pure_rotation deg and scaled
#: by under pure_scale, or moving no corner more than pure_corner px from the
#: vote's translation (today's max_corner_shift), is applied as that translation.
CHECKS = {
    "min_fraction": 0.4,
    "max_rms": 0.8,
    "max_corner_shift": 0.5,
    "bright": 30,
    "transform": "similarity",
    "pure_rotation": 0.01,
    "pure_scale": 1e-4,
    "pure_corner": 0.5,
    "scale_range": (0.4, 2.5),
    "min_pattern_matches": 8,
}
TRANSFORMS = ("translation", "similarity", "affine")


def fit_similarity(ref, frame):
    """Least squares ref = a * frame + t on complex positions x + iy: |a| is
    the scale, arg(a) the rotation, t the shift."""
    zr = ref[:, 0] + 1j * ref[:, 1]
    zf = frame[:, 0] + 1j * frame[:, 1]
    cr, cf = zr.mean(), zf.mean()
    a = np.sum(np.conj(zf - cf) * (zr - cr)) / np.sum(np.abs(zf - cf) ** 2)
    return a, cr - a * cf


def _apply(a, t, xy):
    z = a * (xy[:, 0] + 1j * xy[:, 1]) + t
    return np.column_stack([z.real, z.imag])


def similarity_matrix(a, t):
    """The 2x3 transform of ref = a * frame + t (complex a, t)."""
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])


def transform_xy(transform, xy):
    """Positions (n, 2) carried by a 2x3 transform."""
    return xy @ transform[:, :2].T + transform[:, 2]


def inverse(transform):
    """The 2x3 transform that undoes ``transform``."""
    back = np.linalg.inv(transform[:, :2])
    return np.column_stack([back, -back @ transform[:, 2]])


def rotation_of(transform):
    """Deg in (-180, 180]: how far the frame shows the reference's sky
    turned (the nearest rotation, for an affine transform)."""
    (p, q), (r, s) = transform[:, :2]
    turn = -float(np.degrees(np.arctan2(r - q, p + s)))
    return 180.0 if turn <= -180.0 else turn


def scale_of(transform):
    """Reference px per frame px (the geometric mean, for an affine transform)."""
    return float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))


def fit_affine(ref, frame):
    """Least squares 2x3 transform taking frame positions to ref positions."""
    design = np.column_stack([frame, np.ones(len(frame))])
    solution, *_ = np.linalg.lstsq(design, ref, rcond=None)
    return solution.T


def _fit_matrix(ref, frame):
    return similarity_matrix(*fit_similarity(ref, frame))


def _clip(residual):
    """Pairs kept: a blend or a moving object is no verdict on the fit."""
    return residual <= max(3 * MAD_TO_SIGMA_4DP * np.median(residual), 0.05)


def _residuals(ref_xy, frame_xy, pairs, transform):
    return np.hypot(*(ref_xy[pairs[:, 0]] - transform_xy(transform, frame_xy[pairs[:, 1]])).T)


def _consistency(ref_xy, frame_xy, pairs, transform, shape, checks, brightest_inside=False):
    """(fraction, found, expected, rms): of the reference's bright stars that
    fall well inside the frame, how many are matched, and the clipped rms
    of the matched pairs about the transform.

    The bright stars are the reference's ``bright`` brightest, of which
    those inside the frame count (today's, for a translation); with
    ``brightest_inside`` the ``bright`` brightest of those inside the frame,
    so that a frame covering a tenth of the reference is judged on stars
    it can show."""
    ny, nx = shape
    # the reference's stars that should be in the frame, well inside it
    candidates = ref_xy if brightest_inside else ref_xy[: checks["bright"]]
    inside = transform_xy(inverse(transform), candidates)
    margin = max(15.0, 0.06 * min(nx, ny))  # detection skips a border of ~3 FWHM
    expected = np.flatnonzero(
        (inside[:, 0] > margin)
        & (inside[:, 0] < nx - 1 - margin)
        & (inside[:, 1] > margin)
        & (inside[:, 1] < ny - 1 - margin)
    )[: checks["bright"]]
    found = np.isin(expected, pairs[:, 0]) if len(pairs) else np.zeros(len(expected), bool)
    fraction = float(found.mean()) if len(expected) else 0.0
    if len(pairs) >= 2:
        residual = _residuals(ref_xy, frame_xy, pairs, transform)
        rms = float(np.sqrt(np.mean(residual[_clip(residual)] ** 2)))
    else:
        rms = float("nan")
    return fraction, int(found.sum()), len(expected), rms


def _share_matched(ref_xy, frame_xy, pairs, transform, shape):
    """Matched pairs over the stars the two lists share: the fewer of the
    reference's stars inside the frame and the frame's stars inside the
    reference's field (its stars' extent). A search over every turn and
    scale finds a handful of chance pairs in any two fields; a real match
    pairs most of the common stars."""
    ny, nx = shape
    back = transform_xy(inverse(transform), ref_xy)
    ref_inside = np.sum((back >= 0).all(axis=1) & (back <= [nx - 1, ny - 1]).all(axis=1))
    onto = transform_xy(transform, frame_xy)
    low, high = ref_xy.min(axis=0), ref_xy.max(axis=0)
    frame_inside = np.sum((onto >= low).all(axis=1) & (onto <= high).all(axis=1))
    common = min(ref_inside, frame_inside)
    return len(pairs) / common if common else 0.0


def _refuse_chance_patterns(ref_xy, frame_xy, pairs, transform, shape, checks, cause):
    """A search over every turn and scale found five chance pairs passing
    the checks of a translation in about 1 % of unrelated fields: a
    searched match must also pair min_fraction of the stars the frames
    share (chance pairs are a tenth of them)."""
    share = _share_matched(ref_xy, frame_xy, pairs, transform, shape)
    if share < checks["min_fraction"]:
        raise RegistrationFailed(
            f"no consistent match: {len(pairs)} pairs are {share:.0%} of the stars the "
            f"frames share (min {checks['min_fraction']:.0%}): chance matches; {cause}"
        )


def _refuse_unless_consistent(verdict, checks, cause):
    fraction, found, expected, rms = verdict
    if fraction < checks["min_fraction"] or not rms <= checks["max_rms"]:
        raise RegistrationFailed(
            f"no consistent match: {found} of the reference's {expected} "
            f"bright stars inside the frame matched ({fraction:.0%}, "
            f"min {checks['min_fraction']:.0%}), rms {rms:.2f} px (max {checks['max_rms']:g}): "
            f"chance matches; {cause}"
        )


def _corner(transform, shift, shape):
    """px: the farthest a frame corner lands from the fit under ``shift``."""
    ny, nx = shape
    corners = np.array([[0.0, 0.0], [nx - 1, 0.0], [0.0, ny - 1], [nx - 1, ny - 1]])
    return float(np.max(np.hypot(*(transform_xy(transform, corners) - corners - shift).T)))


def _verified(ref_xy, frame_xy, shape, max_shift, min_matches, tolerance, checks):
    """The translation vote, then a similarity fit refined on all stars; the
    Match, or RegistrationFailed when it is not consistent."""
    shift = find_shift(ref_xy, frame_xy, max_shift, min_matches, tolerance)
    pairs = shift.pairs
    a, t = 1.0 + 0j, shift.dx + 1j * shift.dy
    for _ in range(4):  # the fit reaches the corners that a translation misses
        if len(pairs) < max(min_matches, 3):
            break
        a, t = fit_similarity(ref_xy[pairs[:, 0]], frame_xy[pairs[:, 1]])
        pairs = _match(ref_xy, _apply(a, t, frame_xy), 0.0, tolerance)
    fit = similarity_matrix(a, t)
    verdict = _consistency(ref_xy, frame_xy, pairs, fit, shape, checks)
    cause = f"shifted beyond {max_shift:.0f} px, or another field?"
    _refuse_unless_consistent(verdict, checks, cause)
    corner = _corner(fit, [shift.dx, shift.dy], shape)
    rotation = -float(np.degrees(np.angle(a)))
    return Match(shift, rotation, float(abs(a)), verdict[0], verdict[3], corner, pairs, fit)


def _as_shift(match):
    """The match applied as its vote's translation (the fit kept in the
    rotation, scale and corner it reports)."""
    return replace(match, transform=None)


def _refined(ref_xy, frame_xy, transform, tolerance, min_matches, fit):
    """``transform`` refitted on all mutual nearest neighbours, starting
    loose: a guess from a few stars misses the far corners by a pixel or
    two. Returns (transform, pairs)."""
    for tol in (4 * tolerance, 2 * tolerance, tolerance, tolerance):
        pairs = _match(ref_xy, transform_xy(transform, frame_xy), 0.0, tol)
        if len(pairs) < max(min_matches, 3):
            return transform, pairs
        transform = fit(ref_xy[pairs[:, 0]], frame_xy[pairs[:, 1]])
        kept = pairs[_clip(_residuals(ref_xy, frame_xy, pairs, transform))]
        if len(kept) >= 3:
            transform = fit(ref_xy[kept[:, 0]], frame_xy[kept[:, 1]])
    return transform, _match(ref_xy, transform_xy(transform, frame_xy), 0.0, tolerance)


def _match_from(guess, ref_xy, frame_xy, shape, min_matches, tolerance, checks, cause, searched):
    """The Match grown from a guessed 2x3 transform, refined on all stars
    (a similarity, then the affine when asked for), or RegistrationFailed.
    ``searched``: the guess came from a search over every turn and scale,
    which must pass the stricter checks of _refuse_chance_patterns."""
    transform, pairs = _refined(ref_xy, frame_xy, guess, tolerance, min_matches, _fit_matrix)
    if checks["transform"] == "affine" and len(pairs) >= max(min_matches, 3):
        transform, pairs = _refined(ref_xy, frame_xy, transform, tolerance, min_matches, fit_affine)
    needed = max(min_matches, checks["min_pattern_matches"] if searched else 0)
    if len(pairs) < needed:
        raise RegistrationFailed(
            f"only {len(pairs)} stars match the reference, {needed} needed; {cause}"
        )
    verdict = _consistency(ref_xy, frame_xy, pairs, transform, shape, checks, True)
    _refuse_unless_consistent(verdict, checks, cause)
    if searched:
        _refuse_chance_patterns(ref_xy, frame_xy, pairs, transform, shape, checks, cause)
    fraction, _, _, rms = verdict
    shift = Shift(float(transform[0, 2]), float(transform[1, 2]), len(pairs), rms, pairs)
    corner = _corner(transform, transform[:, 2], shape)
    return Match(
        shift,
        rotation_of(transform),
        scale_of(transform),
        fraction,
        rms,
        corner,
        pairs,
        transform,
    )


def _is_pure_shift(match, checks):
    """A turn and scale too small to matter, or to move the frame's corners
    further from the translation than today's stacks allowed: the real BSU
    night drifts to -0.015 deg and scale 1 - 1.5e-4 (corners 0.3 px off)."""
    small = (
        abs(match.rotation) < checks["pure_rotation"]
        and abs(match.scale - 1.0) < checks["pure_scale"]
    )
    return small or match.corner <= checks["pure_corner"]


def _unturned(frame_xy, shape, degrees):
    """The frame's stars turned back by ``degrees`` about its centre, and
    the complex (a, t) that does it."""
    ny, nx = shape
    centre = (nx - 1) / 2 + 1j * (ny - 1) / 2
    a = np.exp(-1j * np.radians(degrees))
    t = centre - a * centre
    return _apply(a, t, frame_xy), a, t


def _hinted(ref_xy, frame_xy, shape, max_shift, min_matches, tolerance, checks, hint):
    """The vote on the frame turned back by the hinted angle (a meridian
    flip from PIERSIDE: 180 deg), grown into a Match; RegistrationFailed
    when the hint does not hold."""
    turned_back, a, t = _unturned(frame_xy, shape, hint)
    shift = find_shift(ref_xy, turned_back, max_shift, min_matches, tolerance)
    guess = similarity_matrix(a, t + shift.dx + 1j * shift.dy)
    cause = f"turned by the hinted {hint:g} deg"
    grow = (ref_xy, frame_xy, shape, min_matches, tolerance, checks, cause)
    return _match_from(guess, *grow, searched=True)


def _by_patterns(ref_xy, frame_xy, shape, min_matches, tolerance, checks):
    """Like triangles of bright stars propose similarities (any turn,
    scale, shift); the best few are grown and verified."""
    proposed = patterns.best_proposals(ref_xy, frame_xy, checks["scale_range"], 2 * tolerance)
    cause = "another field, trailed stars or cloud?"
    grow = (ref_xy, frame_xy, shape, min_matches, tolerance, checks, cause)
    if not proposed:
        raise RegistrationFailed(
            f"no consistent match: no pattern of the frame's stars found among the "
            f"reference's; {cause}"
        )
    refusals = []
    for a, t, _ in proposed:
        try:
            return _match_from(similarity_matrix(a, t), *grow, searched=True)
        except RegistrationFailed as exc:
            refusals.append(exc)
    raise refusals[0]


def _translation_match(ref_xy, frame_xy, shape, max_shift, min_matches, tolerance, checks):
    """Today's translation: the vote, verified, and turned frames refused."""
    ny, nx = shape
    try:
        match = _verified(ref_xy, frame_xy, shape, max_shift, min_matches, tolerance, checks)
    except RegistrationFailed as direct:
        if len(frame_xy) < min_matches:
            raise
        flipped = [nx - 1, ny - 1] - frame_xy
        try:
            turned = _verified(ref_xy, flipped, shape, max_shift, min_matches, tolerance, checks)
        except RegistrationFailed:
            raise direct from None
        angle = (turned.rotation + 180.0) % 360.0
        raise RegistrationFailed(
            f"rotated by about 180 deg: meridian flip? ({angle:.1f} deg, "
            f"{turned.fraction:.0%} of the bright stars match when turned); "
            "rotation is not supported yet",
            rotation=angle,
        ) from None
    if match.corner > checks["max_corner_shift"]:
        raise RegistrationFailed(
            f"rotated by {match.rotation:+.2f} deg (scale {match.scale:.4f}): on a "
            f"translation its corners would land {match.corner:.1f} px off "
            f"(max {checks['max_corner_shift']:g}); rotation is not supported yet",
            rotation=match.rotation,
        )
    return _as_shift(match)


def match_frame(
    ref_xy, frame_xy, shape, max_shift, min_matches=5, tolerance=1.5, hint_rotation=None, **checks
):
    """The frame's stars matched onto the reference's, or RegistrationFailed
    with the reason in words.

    ``ref_xy``, ``frame_xy``: (n, 2) positions, brightest first; ``shape``
    the frame's (ny, nx). A match must hold: at least ``min_fraction`` of
    the reference's ``bright`` brightest stars that fall inside the frame
    matched, with an rms under ``max_rms`` px about the fit.

    ``transform`` translation: the vote over shifts up to ``max_shift`` px;
    a frame that matches only when turned by 180 deg (a meridian flip), or
    whose rotation or scale would move its corners more than
    ``max_corner_shift`` px from where the translation puts them, is
    refused. similarity (default) and affine: the vote first, kept as it
    is when the fit shows no turn or scale (``pure_rotation``,
    ``pure_scale``, ``pure_corner``); otherwise, or when the vote fails, the frame turned
    back by ``hint_rotation`` (deg, e.g. 180 after PIERSIDE changed), then
    like triangles of bright stars at any turn, scale in ``scale_range``
    and shift with the frames overlapping by about a third. affine refines
    every match with 6 parameters after the similarity, a pure shift too.
    Returns a Match whose ``transform`` is what to apply.
    """
    checks = CHECKS | checks
    if checks["transform"] not in TRANSFORMS:
        raise ValueError(f"transform {checks['transform']!r}: one of {', '.join(TRANSFORMS)}")
    ref_xy = np.asarray(ref_xy, dtype=float).reshape(-1, 2)
    frame_xy = np.asarray(frame_xy, dtype=float).reshape(-1, 2)
    search = (ref_xy, frame_xy, shape, max_shift, min_matches, tolerance, checks)
    if checks["transform"] == "translation":
        return _translation_match(*search)
    grow = (ref_xy, frame_xy, shape, min_matches, tolerance, checks)
    try:
        match = _verified(*search)
    except RegistrationFailed:
        if len(frame_xy) < min_matches:
            raise
    else:
        if _is_pure_shift(match, checks) and checks["transform"] == "similarity":
            return _as_shift(match)  # bit for bit today's translation
        try:
            return _match_from(match.transform, *grow, cause="turned or scaled", searched=False)
        except RegistrationFailed:
            pass  # the search below starts afresh
    if hint_rotation is not None:
        try:
            return _hinted(*search, hint_rotation)
        except RegistrationFailed:
            pass  # a hint, never a must
    return _by_patterns(*grow)


def shift_image(data, dx, dy, subpixel=False, fill=np.nan):
    """The frame moved by (dx, dy) onto the reference grid; uncovered pixels
    become ``fill`` (NaN), never a sentinel value.

    With ``subpixel`` False the shift is rounded to whole pixels.
    """
    if not subpixel:
        ix, iy = int(round(dx)), int(round(dy))
        out = np.full(data.shape, fill, dtype=data.dtype)
        ny, nx = data.shape
        src_y = slice(max(0, -iy), min(ny, ny - iy))
        src_x = slice(max(0, -ix), min(nx, nx - ix))
        dst_y = slice(max(0, iy), min(ny, ny + iy))
        dst_x = slice(max(0, ix), min(nx, nx + ix))
        if src_y.start < src_y.stop and src_x.start < src_x.stop:
            out[dst_y, dst_x] = data[src_y, src_x]
        return out
    from scipy import ndimage

    valid = np.isfinite(data)
    filled = np.where(valid, data, 0.0).astype(np.float64)
    moved = ndimage.shift(filled, (dy, dx), order=3, mode="constant", cval=0.0)
    coverage = ndimage.shift(valid.astype(np.float64), (dy, dx), order=1, mode="constant")
    moved[coverage < 0.999] = fill
    return moved.astype(data.dtype)


def shift_mask(mask, dx, dy, subpixel=False):
    """A bit mask moved like its image (nearest pixel); uncovered pixels 0."""
    if not subpixel:
        return shift_image(mask, dx, dy, subpixel=False, fill=0)
    from scipy import ndimage

    return ndimage.shift(mask, (dy, dx), order=0, mode="constant", cval=0)


def match_settings(settings, nx, ny):
    """match_frame's arguments from the registration settings (config
    stacking.registration; checks missing there keep their defaults)."""
    names = {
        "min_match_fraction": "min_fraction",
        "max_rms": "max_rms",
        "max_corner_shift": "max_corner_shift",
        "pure_rotation": "pure_rotation",
        "pure_scale": "pure_scale",
        "pure_corner": "pure_corner",
        "scale_range": "scale_range",
        "min_pattern_matches": "min_pattern_matches",
    }
    return {
        "max_shift": settings["max_shift"] * max(nx, ny),
        "min_matches": settings["min_matches"],
        # onto_reference applies shifts only until resampling by a transform
        # is wired in: settings that do not ask for a transform get today's
        "transform": settings.get("transform", "translation"),
    } | {arg: settings[key] for key, arg in names.items() if key in settings}


def _xy(stars):
    """(n, 2) positions from a star list as catalogues and reference.json hold it."""
    return np.column_stack([stars["x"], stars["y"]])


#: Header cards of the applied transform, row by row (x_ref = T11 x + T12 y + T13).
TRANSFORM_CARDS = ("REGT11", "REGT12", "REGT13", "REGT21", "REGT22", "REGT23")


def transform_cards(transform):
    """The applied 2x3 transform as header cards (TRANSFORM_CARDS)."""
    comments = ("x_ref = T11 x + T12 y + T13", "", "", "y_ref = T21 x + T22 y + T23", "", "")
    values = np.asarray(transform, dtype=float).ravel()
    return {
        key: (round(float(v), 10), comment or "registration transform, 0-based px")
        for key, v, comment in zip(TRANSFORM_CARDS, values, comments, strict=True)
    }


def transform_from(header):
    """The 2x3 transform a registered frame's header records (NaN if none)."""
    values = [header.get(key, np.nan) for key in TRANSFORM_CARDS]
    return np.array(values, dtype=float).reshape(2, 3)


def _pixels(value):
    """A shift as the header writes it: whole pixels as an integer."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _applied(match, resample):
    """The transform to apply, and its kind: a pure translation as today
    (rounded with ``resample: integer``), a right-angle turn snapped to whole
    pixels with ``integer`` (a permutation: no interpolation), else the
    match's own transform, interpolated."""
    from .resample import kind_of, snap

    transform = np.asarray(match.transform, dtype=float)
    kind = kind_of(transform)
    if kind == "translation":
        dx, dy = match.shift.dx, match.shift.dy
        if resample != "subpixel":
            dx, dy = round(dx), round(dy)
        return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]), kind
    if resample != "subpixel" and (snapped := snap(transform)) is not None:
        return snapped, "rot90"
    return transform, "general"


def shift_sigma(sigma, dx, dy, subpixel=False):
    """A frame's per-pixel sigma moved like ``shift_image`` moves its data:
    whole pixels exactly; a sub-pixel shift (ndimage's cubic spline) as the
    variance moved bilinearly times the spline's noise gain at the shift's
    fractional offsets (resample.noise_gain: the root of the sum of the
    squared interpolation weights; 0.87 at half a pixel along one axis)."""
    if not subpixel:
        return shift_image(sigma, dx, dy, subpixel=False)
    from scipy import ndimage

    from .resample import noise_gain

    variance = np.square(np.asarray(sigma, dtype=np.float64))
    nan = ~np.isfinite(variance)
    moved = ndimage.shift(np.where(nan, 0.0, variance), (dy, dx), order=1, mode="constant")
    gain = float(noise_gain(np.array([-dx]))[0] * noise_gain(np.array([-dy]))[0])
    out = (np.sqrt(np.maximum(moved, 0.0)) * gain).astype(np.float32)
    if nan.any():
        out[ndimage.shift(nan.astype(float), (dy, dx), order=1, mode="constant") > 0] = np.nan
    return out


def mark_quality(moved, moved_mask, sigma=None):
    """The registered frame's data-quality rules, in place: every pixel
    without a value (outside the frame, or no data reached it) gets
    MASK_NO_DATA; every pixel with any MASK bit becomes NaN in the data
    (so a combine needs no mask) and in ``sigma``, which is also NaN
    wherever the data is. Returns the mask (made when ``moved_mask`` is
    None)."""
    from .fitsfile import MASK_NO_DATA

    if moved_mask is None:
        moved_mask = np.zeros(moved.shape, dtype=np.uint8)
    moved_mask = np.asarray(moved_mask, dtype=np.uint8)
    moved_mask[~np.isfinite(moved)] |= MASK_NO_DATA
    moved[moved_mask != 0] = np.nan
    if sigma is not None:
        sigma[~np.isfinite(moved)] = np.nan
    return moved_mask


def onto_reference(data, mask, stars, meta, reference, frame_id, settings, uncertainty=None):
    """One calibrated frame on its stack's reference grid, sky subtracted.

    ``reference`` is the stack's reference.json; ``settings`` holds
    resample, max_shift (fraction of the frame), min_matches, sky,
    background_box, transform and the consistency checks of
    ``match_settings``. The frame is matched at any turn and scale
    (``transform: similarity``); a pure translation is applied as whole
    pixels (``resample: integer``) or interpolated (``subpixel``), a turned
    or scaled frame is resampled (``resample.warp``: flux kept, NaN where no
    data). ``uncertainty`` (the frame's UNCERT, a sigma per pixel) is moved
    like the data: exactly on whole-pixel paths, with its variance
    propagated through the interpolation otherwise (``shift_sigma``,
    ``resample.warp_sigma``). Quality (``mark_quality``): NaN wherever the
    moved MASK has any bit, MASK_NO_DATA wherever the frame does not cover,
    sigma NaN where the data is.

    Returns (pixels, mask, sigma or None, cards, message, ok), the cards
    being what the registered frame's header records (provenance.stamp). A
    frame that cannot be registered comes back all NaN (MASK_NO_DATA
    everywhere) with its reason in REGNOTE, never moved wrongly.
    """
    from .fitsfile import MASK_NO_DATA
    from .resample import warp, warp_sigma

    data = np.asarray(data, dtype=np.float32)
    ny, nx = data.shape
    out_shape = tuple(reference.get("shape") or data.shape)
    reason = ""
    rotation = None
    if frame_id == reference["reference"]:
        every = np.repeat(np.arange(len(stars["x"]))[:, None], 2, axis=1)
        match = Match(Shift(0.0, 0.0, len(stars["x"]), 0.0), 0.0, 1.0, 1.0, 0.0, 0.0, every)
    else:
        try:
            match = match_frame(
                _xy(reference["stars"]), _xy(stars), (ny, nx), **match_settings(settings, nx, ny)
            )
        except RegistrationFailed as exc:
            reason, rotation = str(exc), exc.rotation
    cards = {
        "REGSTAT": ("failed" if reason else "ok", "registration: ok or failed"),
        "REFFRAME": (reference["reference"], "reference frame <night>/<stem>"),
        "RESAMPLE": (settings["resample"], "translations: integer or subpixel"),
        "SKYMODEL": (settings["sky"], "median or background2d"),
    }
    if reason:
        # FITS cards hold no NaN: a failed frame carries its reason, no shift or rms
        cards["REGNOTE"] = reason
        if rotation is not None:
            cards["REGROT"] = (round(rotation, 4), "rotation against the reference, deg")
        cards["SKYSUB"] = (float(meta["sky"]), "sky level, ADU (not subtracted: not registered)")
        blank = np.full(out_shape, np.nan, dtype=np.float32)
        blank_mask = np.full(out_shape, MASK_NO_DATA, dtype=np.uint8)
        blank_sigma = None if uncertainty is None else blank.copy()
        return blank, blank_mask, blank_sigma, cards, reason, False
    sky, sky_level = sky_model(data, settings["sky"], meta["sky"], settings["background_box"])
    transform, kind = _applied(match, settings["resample"])
    if kind == "translation" and out_shape == data.shape:  # today's path, bit for bit
        subpixel = settings["resample"] == "subpixel"
        dx, dy = transform[:, 2]
        moved = shift_image(data - sky, dx, dy, subpixel)
        moved_mask = None if mask is None else shift_mask(mask, dx, dy, subpixel)
        sigma = None if uncertainty is None else shift_sigma(uncertainty, dx, dy, subpixel)
    else:
        moved, moved_mask = warp(data - sky, transform, out_shape, mask)
        sigma = None if uncertainty is None else warp_sigma(uncertainty, transform, out_shape)
    moved_mask = mark_quality(moved, moved_mask, sigma)
    translation = kind == "translation"
    if translation:  # as measured, to the last digit
        dx_seen, dy_seen = match.shift.dx, match.shift.dy
    else:  # where the frame's centre lands, from the reference's centre
        centre = np.array([(nx - 1) / 2, (ny - 1) / 2])
        middle = np.array([(out_shape[1] - 1) / 2, (out_shape[0] - 1) / 2])
        dx_seen, dy_seen = (
            transform_xy(np.asarray(match.transform, float), centre[None])[0] - middle
        )
    cards |= {
        # a shift only means something for a translation: None removes the card
        "DX": (_pixels(transform[0, 2]), "applied shift, axis 1, px") if translation else None,
        "DY": (_pixels(transform[1, 2]), "applied shift, axis 2, px") if translation else None,
        "DXMEAS": (float(dx_seen), "measured shift, axis 1, px (of the centre if turned)"),
        "DYMEAS": (float(dy_seen), "measured shift, axis 2, px"),
        "NMATCH": (match.shift.matches if translation else match.matches, "stars matched"),
        "REGRMS": (float(match.shift.rms if translation else match.rms), "rms of matches, px"),
        "REGFRAC": (round(match.fraction, 3), "fraction of bright reference stars matched"),
        "REGKIND": (kind, "applied as: translation, rot90 (permutation), general"),
        "REGROT": (round(match.rotation, 4), "measured rotation against the reference, deg"),
        "REGSCAL": (round(match.scale, 8), "measured scale, reference px per frame px"),
        "SKYSUB": (sky_level, "sky subtracted, ADU (median of the sky)"),
    } | transform_cards(transform)
    if translation:
        how = f"applied ({transform[0, 2]:+g}, {transform[1, 2]:+g})"
    else:
        how = (
            f"turned {rotation_of(transform):+.3f} deg, scale {scale_of(transform):.5f}, "
            f"resampled ({kind})"
        )
    message = (
        f"shift measured ({match.shift.dx:+.3f}, {match.shift.dy:+.3f}) px from "
        f"{match.shift.matches if translation else match.matches} stars "
        f"(rms {match.shift.rms if translation else match.rms:.3f}), "
        f"{how}; sky {sky_level:.1f} ADU subtracted"
    )
    return moved, moved_mask, sigma, cards, message, True
