"""Star catalogues of calibrated frames, written beside them as ECSV, and
read back by the reference choice, the registration and the scaling."""

import warnings

import numpy as np

from .columns import Column, describe, names
from .fitsfile import MASK_BAD_PIXEL, MASK_COSMIC_RAY, MASK_SATURATED
from .stars import detect, median_fwhm

#: Every column: name, unit, description (in the ECSV header).
SCHEMA = (
    Column("x", "pix", "0-based pixel centre along FITS axis 1"),
    Column("y", "pix", "0-based pixel centre along FITS axis 2"),
    Column("flux", "adu", "flux above the sky"),
    Column("peak", "adu", "peak pixel above the sky"),
    Column("fwhm", "pix", "full width at half maximum"),
    Column("saturated", None, "True: a pixel of the star is saturated in the raw frame"),
)
COLUMNS = names(SCHEMA)


def fill_defects(data, defects, size=5):
    """``data`` with each defect pixel (bad pixel, cosmic ray) replaced by
    the median of the good pixels of its ``size`` x ``size`` box: a hot
    pixel or a hit is then no star, and a star over one keeps its shape."""
    ys, xs = np.nonzero(defects)
    if ys.size == 0:
        return data
    r = size // 2
    good = np.where(defects, np.nan, data).astype(np.float32)
    padded = np.pad(good, r, constant_values=np.nan)
    offsets = np.arange(-r, r + 1)
    boxes = padded[ys[:, None, None] + r + offsets[None, :, None], xs[:, None, None] + r + offsets]
    filled = np.array(data, dtype=np.float32, copy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a box all defects stays NaN
        filled[ys, xs] = np.nanmedian(boxes.reshape(ys.size, -1), axis=1)
    return filled


def measure(data, mask, frame_id, exposure, detect_sigma):
    """The stars of one calibrated frame and the frame's summary (exposure
    in s, sky, noise, FWHM): (stars, meta) as ``write`` stores them. Bad
    pixels and cosmic rays in ``mask`` are filled from their neighbours first."""
    saturated = None if mask is None else (mask & MASK_SATURATED) > 0
    if mask is not None:
        data = fill_defects(data, (mask & (MASK_BAD_PIXEL | MASK_COSMIC_RAY)) > 0)
    stars, sky = detect(data, saturated, threshold=detect_sigma)
    meta = {
        "frame": frame_id,
        "exposure": float(exposure),
        "sky": sky.level,
        "noise": sky.noise,
        "fwhm": median_fwhm(stars),
        "n_stars": len(stars["x"]),
        # median axis ratio of the stars' windowed moments (1 round; trailed
        # or astigmatic frames more): the roundness stacking.select judges
        "elongation": median_elongation(stars),
        "shape": list(data.shape),
    }
    return stars, meta


def median_elongation(stars):
    """Median axis ratio of a star list's sources (NaN without stars)."""
    values = np.asarray(stars.get("elongation", []), dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def write(path, stars, meta):
    from astropy.table import Table

    table = describe(Table({name: np.asarray(stars[name]) for name in COLUMNS}), SCHEMA)
    table.meta.update(meta)
    table.meta["comments"] = [
        "Stars of one calibrated frame, brightest first; x, y 0-based pixel centres",
        "(x along FITS axis 1). flux and peak above the sky, in ADU.",
    ]
    table.write(path, format="ascii.ecsv", overwrite=True)


def channel_meta(meta, channel=None):
    """A catalogue's meta as one colour channel sees it: the stars are the
    frame's luminance's, the sky level and noise the channel's own (what
    register subtracts and scaling weighs by). Unchanged for a mono frame."""
    if not channel:
        return meta
    return meta | meta["channels"][channel]


def read(path):
    """(stars as a dict of arrays, meta dict)."""
    from astropy.table import Table

    table = Table.read(path, format="ascii.ecsv")
    stars = {name: np.asarray(table[name]) for name in COLUMNS}
    stars["saturated"] = stars["saturated"].astype(bool)
    return stars, dict(table.meta)
