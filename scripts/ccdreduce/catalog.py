"""Star catalogues of calibrated frames, written beside them as ECSV, and
read back by the reference choice, the registration and the scaling."""

import warnings
from pathlib import Path

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
    """(stars as a dict of arrays, meta dict).

    A catalogue as :func:`write` makes it is read directly: its YAML header
    by libyaml, its rows by numpy, ~1 ms against astropy's ~9 ms (mostly
    pure-Python YAML), and the reference choice, registration and scaling
    read each night's catalogues again (~100 reads on the demo). Anything
    else goes to astropy's ECSV reader, which gives the same values."""
    try:
        return _read_plain(Path(path))
    except _NotPlain:
        pass
    from astropy.table import Table

    table = Table.read(path, format="ascii.ecsv")
    stars = {name: np.asarray(table[name]) for name in COLUMNS}
    stars["saturated"] = stars["saturated"].astype(bool)
    return stars, dict(table.meta)


class _NotPlain(ValueError):
    """Not a catalogue exactly as write() makes it: astropy reads it."""


#: The columns' datatypes as write() declares them.
_DATATYPES = {name: "bool" if name == "saturated" else "float64" for name in COLUMNS}


def _read_plain(path):
    import yaml

    loader = getattr(yaml, "CSafeLoader", None)
    lines = path.read_text(encoding="utf-8").splitlines()
    if loader is None or not lines or lines[0] != "# %ECSV 1.0" or lines[1:2] != ["# ---"]:
        raise _NotPlain(path)
    body = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    try:
        header = yaml.load("\n".join(line[2:] for line in lines[2:body]), Loader=loader)
    except yaml.YAMLError:  # e.g. a tag of astropy's own loader
        raise _NotPlain(path) from None
    columns = header.get("datatype") if isinstance(header, dict) else None
    if not isinstance(columns, list) or {c.get("name"): c.get("datatype") for c in columns} != (
        _DATATYPES
    ):
        raise _NotPlain(path)
    names = [c["name"] for c in columns]
    if body >= len(lines) or lines[body].split() != names:
        raise _NotPlain(path)
    rows = [line.split() for line in lines[body + 1 :]]
    if any(len(row) != len(names) for row in rows):
        raise _NotPlain(path)  # a masked (empty) value, a quoted string...
    values = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {}
    stars = {}
    for name in COLUMNS:
        text = values.get(name, ())
        if name == "saturated":
            if not set(text) <= {"True", "False"}:
                raise _NotPlain(path)
            stars[name] = np.array([value == "True" for value in text], dtype=bool)
        else:
            stars[name] = np.array(text, dtype=np.float64)
    meta = header.get("meta", [])
    if isinstance(meta, list):  # !!omap: a list of pairs with the safe loader
        meta = dict(meta)
    return stars, dict(meta)
