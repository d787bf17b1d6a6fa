"""Registration: the translation that brings a frame onto the reference,
found from the stars themselves, then applied by whole pixels (the lab's
choice: no interpolation, noise untouched) or by sub-pixel interpolation.

Finding the shift: every pair (reference star, frame star) votes for the
offset between them; the true offset collects a vote from nearly every star
while wrong pairings scatter, so the peak of the vote histogram is robust to
large jumps (a quarter of the frame), missing stars and thin cloud. The
matched stars' centroids then give the sub-pixel shift.
"""

from dataclasses import dataclass

import numpy as np

from .stars import sky_model


class RegistrationFailed(Exception):
    """A frame that cannot be registered; the message is the reason."""


@dataclass
class Shift:
    dx: float  # a star at x in the frame is at x + dx on the reference grid
    dy: float
    matches: int
    rms: float  # scatter of the matched stars' offsets, pixels


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
        good = spread <= max(3 * 1.4826 * np.median(spread), 0.05)
        shift = offsets[good].mean(axis=0)
    if len(pairs) < min_matches:
        raise RegistrationFailed(
            f"only {len(pairs)} stars match the reference, {min_matches} needed"
        )
    rms = float(np.sqrt(np.mean(np.sum((offsets[good] - shift) ** 2, axis=1))))
    return Shift(float(shift[0]), float(shift[1]), int(good.sum()), rms)


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


def _xy(stars):
    """(n, 2) positions from a star list as catalogues and reference.json hold it."""
    return np.column_stack([stars["x"], stars["y"]])


def onto_reference(data, mask, stars, meta, reference, frame_id, settings):
    """One calibrated frame on its stack's reference grid, sky subtracted.

    ``reference`` is the stack's reference.json; ``settings`` holds
    resample, max_shift (fraction of the frame), min_matches, sky and
    background_box. Returns (pixels, mask, cards, message, ok), the cards
    being what the registered frame's header records (provenance.stamp). A
    frame that cannot be registered comes back all NaN with its reason in
    REGNOTE, never shifted wrongly.
    """
    data = np.asarray(data, dtype=np.float32)
    ny, nx = data.shape
    reason = ""
    if frame_id == reference["reference"]:
        shift = Shift(0.0, 0.0, len(stars["x"]), 0.0)
    else:
        try:
            shift = find_shift(
                _xy(reference["stars"]),
                _xy(stars),
                max_shift=settings["max_shift"] * max(nx, ny),
                min_matches=settings["min_matches"],
            )
        except RegistrationFailed as exc:
            reason = str(exc)
    cards = {
        "REGSTAT": ("failed" if reason else "ok", "registration: ok or failed"),
        "REFFRAME": (reference["reference"], "reference frame <night>/<stem>"),
        "RESAMPLE": (settings["resample"], "integer or subpixel shift"),
        "SKYMODEL": (settings["sky"], "median or background2d"),
    }
    if reason:
        cards["REGNOTE"] = reason
        cards["SKYSUB"] = (float(meta["sky"]), "sky level, ADU (not subtracted: not registered)")
        blank = np.full(data.shape, np.nan, dtype=np.float32)
        return blank, None if mask is None else np.zeros_like(mask), cards, reason, False
    sky, sky_level = sky_model(data, settings["sky"], meta["sky"], settings["background_box"])
    subpixel = settings["resample"] == "subpixel"
    dx, dy = (shift.dx, shift.dy) if subpixel else (round(shift.dx), round(shift.dy))
    moved = shift_image(data - sky, dx, dy, subpixel)
    moved_mask = None if mask is None else shift_mask(mask, dx, dy, subpixel)
    # FITS has no NaN: a failed frame carries only its reason
    cards |= {
        "DX": (dx, "applied shift along axis 1, px (x_ref = x + DX)"),
        "DY": (dy, "applied shift along axis 2, px"),
        "DXMEAS": (shift.dx, "measured shift along axis 1, px"),
        "DYMEAS": (shift.dy, "measured shift along axis 2, px"),
        "NMATCH": (shift.matches, "stars matched to the reference"),
        "REGRMS": (shift.rms, "rms of matched star offsets, px"),
        "SKYSUB": (sky_level, "sky subtracted, ADU (median of the sky)"),
    }
    message = (
        f"shift measured ({shift.dx:+.3f}, {shift.dy:+.3f}) px from {shift.matches} stars "
        f"(rms {shift.rms:.3f}), applied ({dx:+g}, {dy:+g}); sky {sky_level:.1f} ADU subtracted"
    )
    return moved, moved_mask, cards, message, True
