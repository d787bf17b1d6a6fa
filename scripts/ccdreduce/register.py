"""Registration: the translation that brings a frame onto the reference,
found from the stars themselves, then applied by whole pixels (the lab's
choice: no interpolation, noise untouched) or by sub-pixel interpolation.

Finding the shift: every pair (reference star, frame star) votes for the
offset between them; the true offset collects a vote from nearly every star
while wrong pairings scatter, so the peak of the vote histogram is robust to
large jumps (a quarter of the frame), missing stars and thin cloud. The
matched stars' centroids then give the sub-pixel shift.
"""

from dataclasses import dataclass, field

import numpy as np

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
    best_frame = dist.argmin(axis=1)
    best_ref = dist.argmin(axis=0)
    pairs = [
        (i, j) for i, j in enumerate(best_frame) if best_ref[j] == i and dist[i, j] <= tolerance
    ]
    return np.array(pairs, dtype=int).reshape(-1, 2)


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

    shift: Shift  # the translation that is applied
    rotation: float  # deg: the frame shows the reference's sky turned by this much
    scale: float  # frame-to-reference plate scale (1 for one camera)
    fraction: float  # of the reference's bright stars inside the frame, those matched
    rms: float  # residual of the matched pairs about the similarity fit, px
    corner: float  # px: how far the translation puts the frame's corners from the fit
    pairs: np.ndarray = field(repr=False)  # (i_ref, i_frame) under the similarity fit


#: Defaults of the consistency checks (config stacking.registration).
CHECKS = {"min_fraction": 0.4, "max_rms": 0.8, "max_corner_shift": 0.5, "bright": 30}


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
    ny, nx = shape
    # the reference's bright stars that should be in the frame, well inside it
    bright = ref_xy[: checks["bright"]]
    back = (bright[:, 0] + 1j * bright[:, 1] - t) / a
    inside = np.column_stack([back.real, back.imag])
    margin = max(15.0, 0.06 * min(nx, ny))  # detection skips a border of ~3 FWHM
    expected = np.flatnonzero(
        (inside[:, 0] > margin)
        & (inside[:, 0] < nx - 1 - margin)
        & (inside[:, 1] > margin)
        & (inside[:, 1] < ny - 1 - margin)
    )
    found = np.isin(expected, pairs[:, 0]) if len(pairs) else np.zeros(len(expected), bool)
    fraction = float(found.mean()) if len(expected) else 0.0
    if len(pairs) >= 2:  # clipped like the shift: a blend or a moving object is no verdict
        residual = np.hypot(*(ref_xy[pairs[:, 0]] - _apply(a, t, frame_xy[pairs[:, 1]])).T)
        kept = residual[residual <= max(3 * MAD_TO_SIGMA_4DP * np.median(residual), 0.05)]
        rms = float(np.sqrt(np.mean(kept**2)))
    else:
        rms = float("nan")
    if fraction < checks["min_fraction"] or not rms <= checks["max_rms"]:
        raise RegistrationFailed(
            f"no consistent match: {int(found.sum())} of the reference's {len(expected)} "
            f"bright stars inside the frame matched ({fraction:.0%}, "
            f"min {checks['min_fraction']:.0%}), rms {rms:.2f} px (max {checks['max_rms']:g}): "
            f"chance matches; shifted beyond {max_shift:.0f} px, or another field?"
        )
    corners = np.array([[0.0, 0.0], [nx - 1, 0.0], [0.0, ny - 1], [nx - 1, ny - 1]])
    corner = float(np.max(np.hypot(*(_apply(a, t, corners) - corners - [shift.dx, shift.dy]).T)))
    rotation = -float(np.degrees(np.angle(a)))
    return Match(shift, rotation, float(abs(a)), fraction, rms, corner, pairs)


def match_frame(ref_xy, frame_xy, shape, max_shift, min_matches=5, tolerance=1.5, **checks):
    """The frame's stars matched onto the reference's, or RegistrationFailed
    with the reason in words.

    A match must hold: at least ``min_fraction`` of the reference's
    ``bright`` brightest stars that fall inside the frame matched, with an
    rms under ``max_rms`` px about a similarity fit (rotation, scale,
    shift). A frame that matches only when turned by 180 deg (a pure index
    flip about the centre) is a meridian flip; one whose rotation or scale
    would move its corners more than ``max_corner_shift`` px from where a
    translation puts them is rotated. Both are left out until rotation is
    supported.
    """
    checks = CHECKS | checks
    ref_xy = np.asarray(ref_xy, dtype=float).reshape(-1, 2)
    frame_xy = np.asarray(frame_xy, dtype=float).reshape(-1, 2)
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
    return match


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
    }
    return {
        "max_shift": settings["max_shift"] * max(nx, ny),
        "min_matches": settings["min_matches"],
    } | {arg: settings[key] for key, arg in names.items() if key in settings}


def _xy(stars):
    """(n, 2) positions from a star list as catalogues and reference.json hold it."""
    return np.column_stack([stars["x"], stars["y"]])


def onto_reference(data, mask, stars, meta, reference, frame_id, settings):
    """One calibrated frame on its stack's reference grid, sky subtracted.

    ``reference`` is the stack's reference.json; ``settings`` holds
    resample, max_shift (fraction of the frame), min_matches, sky,
    background_box and the consistency checks of ``match_settings``.
    Returns (pixels, mask, cards, message, ok), the cards being what the
    registered frame's header records (provenance.stamp). A frame that
    cannot be registered (no consistent match, rotated) comes back all NaN
    with its reason in REGNOTE, never shifted wrongly.
    """
    data = np.asarray(data, dtype=np.float32)
    ny, nx = data.shape
    reason = ""
    rotation, fraction = 0.0, 1.0
    if frame_id == reference["reference"]:
        shift = Shift(0.0, 0.0, len(stars["x"]), 0.0)
    else:
        try:
            match = match_frame(
                _xy(reference["stars"]), _xy(stars), (ny, nx), **match_settings(settings, nx, ny)
            )
            shift, rotation, fraction = match.shift, match.rotation, match.fraction
        except RegistrationFailed as exc:
            reason, rotation = str(exc), exc.rotation
    cards = {
        "REGSTAT": ("failed" if reason else "ok", "registration: ok or failed"),
        "REFFRAME": (reference["reference"], "reference frame <night>/<stem>"),
        "RESAMPLE": (settings["resample"], "integer or subpixel shift"),
        "SKYMODEL": (settings["sky"], "median or background2d"),
    }
    if reason:
        # FITS cards hold no NaN: a failed frame carries its reason, no shift or rms
        cards["REGNOTE"] = reason
        if rotation is not None:
            cards["REGROT"] = (round(rotation, 4), "rotation against the reference, deg")
        cards["SKYSUB"] = (float(meta["sky"]), "sky level, ADU (not subtracted: not registered)")
        blank = np.full(data.shape, np.nan, dtype=np.float32)
        return blank, None if mask is None else np.zeros_like(mask), cards, reason, False
    sky, sky_level = sky_model(data, settings["sky"], meta["sky"], settings["background_box"])
    subpixel = settings["resample"] == "subpixel"
    dx, dy = (shift.dx, shift.dy) if subpixel else (round(shift.dx), round(shift.dy))
    moved = shift_image(data - sky, dx, dy, subpixel)
    moved_mask = None if mask is None else shift_mask(mask, dx, dy, subpixel)
    cards |= {
        "DX": (dx, "applied shift along axis 1, px (x_ref = x + DX)"),
        "DY": (dy, "applied shift along axis 2, px"),
        "DXMEAS": (shift.dx, "measured shift along axis 1, px"),
        "DYMEAS": (shift.dy, "measured shift along axis 2, px"),
        "NMATCH": (shift.matches, "stars matched to the reference"),
        "REGRMS": (shift.rms, "rms of matched star offsets, px"),
        "REGFRAC": (round(fraction, 3), "fraction of bright reference stars matched"),
        "REGROT": (round(rotation, 4), "rotation against the reference, deg (not applied)"),
        "SKYSUB": (sky_level, "sky subtracted, ADU (median of the sky)"),
    }
    message = (
        f"shift measured ({shift.dx:+.3f}, {shift.dy:+.3f}) px from {shift.matches} stars "
        f"(rms {shift.rms:.3f}), applied ({dx:+g}, {dy:+g}); sky {sky_level:.1f} ADU subtracted"
    )
    return moved, moved_mask, cards, message, True
