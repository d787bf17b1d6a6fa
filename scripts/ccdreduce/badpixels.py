"""A night's bad-pixel map: hot pixels from its master darks, dead and
deviant pixels and bad columns from its master flats, and a map given from
outside (calibration.bad_pixels.file).

What a bad column looks like on a real CCD: a charge trap at some row
blocks or leaks charge along the column from there to the readout register,
so the column (often only the part on one side of the trap) is a few per
cent low or high in the flat, and warm in the dark, by an amount a single
pixel's noise hides but the column's many pixels reveal. So besides each
pixel against its neighbourhood, each column is cut into blocks of rows and
the block's median ratio to the columns beside it is tested against the
spread of all blocks' medians (the same for rows). A block median of n
pixels is sqrt(n) less noisy than a pixel: a 2 % column is found where a
2 % pixel is not.

The map (uint8) says why each pixel is bad, as BPM_* codes; calibrated
frames get MASK_BAD_PIXEL wherever it is nonzero.
"""

from dataclasses import dataclass

import numpy as np

from .errors import ConfigProblem
from .robust import MAD_TO_SIGMA

#: Why a pixel is in the bad-pixel map (bits of its values).
BPM_HOT = 1  # dark current far above the dark's median
BPM_FLAT = 2  # dead or deviant against its neighbours in the flat
BPM_COLUMN = 4  # part of a column (or row) that deviates in a flat or dark
BPM_GIVEN = 8  # in the map given by calibration.bad_pixels.file
BPM_CODES = {
    BPM_HOT: "hot: dark current far above the master dark's median",
    BPM_FLAT: "dead or deviant: flat far from its four neighbours",
    BPM_COLUMN: "bad column or row: a block of it deviates from its neighbours",
    BPM_GIVEN: "given: calibration.bad_pixels.file",
}


@dataclass
class Thresholds:
    """calibration.bad_pixels: how far (in robust sigma) a pixel or a block
    of a column must stand out, and the block length in rows."""

    hot_sigma: float = 8.0
    flat_sigma: float = 8.0
    column_sigma: float = 6.0
    column_block: int = 32


def _robust_sigma(values):
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def hot_pixels(dark, sigma=8.0):
    """Pixels of a master dark more than ``sigma`` robust standard
    deviations above its median."""
    dark = np.asarray(dark, dtype=np.float32)
    median = np.nanmedian(dark)
    width = _robust_sigma(dark)
    with np.errstate(invalid="ignore"):
        return dark > median + sigma * width


def _neighbour_median(image):
    """The median of each pixel's four neighbours (up, down, left, right;
    edges repeated): the mean of the middle two, so one bad neighbour does
    not move it. Elementwise, no rank filter: a 4k frame in a second."""
    p = np.pad(image, 1, mode="edge")
    n, s, w, e = p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]
    high = np.maximum(np.maximum(n, s), np.maximum(w, e))
    low = np.minimum(np.minimum(n, s), np.minimum(w, e))
    return (n + s + w + e - high - low) / 2


def _sample(values, count=1_000_000):
    """A regular subsample of the finite values: plenty for a robust sigma."""
    values = values[np.isfinite(values)].ravel()
    return values[:: max(1, values.size // count)]


def deviant_pixels(flat, sigma=8.0):
    """Pixels of a master flat far from the median of their four neighbours
    (dead, low or high), in robust sigma of that ratio."""
    flat = np.nan_to_num(np.asarray(flat, dtype=np.float32), nan=1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = flat / _neighbour_median(flat)
        width = _robust_sigma(_sample(ratio))
        return np.abs(ratio - 1) > sigma * width


def _block_means(image, block, width):
    """Per column, the mean of each block of ``block`` rows after dropping
    values beyond 5 ``width`` of the block's median (hot pixels, hits):
    (nblocks, nx). Means, not medians: of integer data a median is an
    integer, and its spread over blocks measures nothing."""
    ny, nx = image.shape
    nb = ny // block
    cut = image[: nb * block].reshape(nb, block, nx)
    centre = np.median(cut, axis=1, keepdims=True)
    keep = np.abs(cut - centre) <= 5 * width
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cut * keep).sum(axis=1) / keep.sum(axis=1)


def _deviant_columns(image, sigma, block, relative):
    """Blocks of columns deviating from the columns beside them: each
    column's block mean against the median of the same block in the 6
    columns around it."""
    from scipy import ndimage

    clean = np.asarray(image, dtype=np.float32)
    clean = np.nan_to_num(clean, nan=float(np.nanmedian(clean)))
    bad = np.zeros(clean.shape, bool)
    nb = clean.shape[0] // block
    if nb == 0:
        return bad
    # pixel-to-pixel noise, from neighbour differences (gradients cancel)
    width = _robust_sigma(_sample(np.diff(clean, axis=1))) / np.sqrt(2)
    means = _block_means(clean, block, width)
    beside = ndimage.median_filter(means, size=(1, 7), mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = means / beside - 1 if relative else means - beside
        floor = width / np.sqrt(block) / (np.nanmedian(np.abs(beside)) if relative else 1)
    # the spread of all blocks, never below what their pixels' noise gives
    spread = max(_robust_sigma(residual), floor)
    with np.errstate(invalid="ignore"):
        flagged = np.abs(residual - np.nanmedian(residual)) > sigma * spread
    bad[: nb * block] = np.repeat(flagged, block, axis=0)
    if clean.shape[0] > nb * block:  # the last rows take the last block's verdict
        bad[nb * block :] = flagged[-1]
    return bad


def bad_columns(image, sigma=6.0, block=32, relative=True):
    """Blocks of columns and of rows that deviate from their neighbours
    (``relative``: as a ratio, for flats; else a difference, for darks)."""
    columns = _deviant_columns(image, sigma, block, relative)
    rows = _deviant_columns(np.asarray(image).T, sigma, block, relative).T
    return columns | rows


def read_given(path, shape):
    """A bad-pixel map from outside (nonzero = bad) as booleans, checked
    against the trimmed frame's shape."""
    from astropy.io import fits

    try:
        data = fits.getdata(path)
    except (OSError, ValueError) as exc:
        raise ConfigProblem(
            f"calibration.bad_pixels.file {path} cannot be read as FITS ({exc})",
            "give a FITS image with nonzero at bad pixels, or set file: null",
        ) from None
    if data is None or data.shape != tuple(shape):
        got = "no image" if data is None else f"{data.shape[1]}x{data.shape[0]}"
        raise ConfigProblem(
            f"calibration.bad_pixels.file {path} is {got}, the trimmed frames are "
            f"{shape[1]}x{shape[0]} pixels",
            "give a map of the trimmed frame's size (after trim_section), or set file: null",
        )
    return np.asarray(data) != 0


def bad_pixel_map(darks=(), flats=(), given=None, thresholds=None):
    """The night's map (uint8 of BPM_* codes) from its master darks and
    flats (2-D arrays of one shape) and a given boolean map; and a line per
    source saying how many pixels it found."""
    thresholds = thresholds or Thresholds()
    shapes = {np.shape(a) for a in (*darks, *flats)} | (
        {given.shape} if given is not None else set()
    )
    if len(shapes) != 1:
        raise ValueError(f"masters of different shapes: {sorted(shapes)}")
    bpm = np.zeros(shapes.pop(), np.uint8)
    said = []
    t = thresholds
    for i, dark in enumerate(darks):
        hot = hot_pixels(dark, t.hot_sigma)
        column = bad_columns(dark, t.column_sigma, t.column_block, relative=False) & ~hot
        bpm[hot] |= BPM_HOT
        bpm[column] |= BPM_COLUMN
        said.append(
            f"dark {i + 1}: {int(hot.sum())} hot pixels, {int(column.sum())} in bad columns"
        )
    for i, flat in enumerate(flats):
        deviant = deviant_pixels(flat, t.flat_sigma)
        column = bad_columns(flat, t.column_sigma, t.column_block, relative=True)
        bpm[deviant] |= BPM_FLAT
        bpm[column] |= BPM_COLUMN
        said.append(
            f"flat {i + 1}: {int(deviant.sum())} dead or deviant pixels, "
            f"{int(column.sum())} in bad columns"
        )
    if given is not None:
        bpm[given] |= BPM_GIVEN
        said.append(f"given map: {int(given.sum())} pixels")
    said.append(f"bad-pixel map: {int((bpm > 0).sum())} pixels ({(bpm > 0).mean():.3%})")
    return bpm, said


def night_map(recipes, masters, settings=None):
    """The bad-pixel map of a night's science frames, from the master darks
    and flats their ``recipes`` name (read through calibrate.Masters) and
    calibration.bad_pixels (``settings``: file and thresholds). Masters of
    another shape than the first are left out, said. Returns (map or None
    when there is nothing to make it from, lines to log)."""
    settings = dict(settings or {})
    given_path = settings.pop("file", None)
    thresholds = Thresholds(**settings)
    names = {kind: sorted({r[kind] for r in recipes if r.get(kind)}) for kind in ("dark", "flat")}
    arrays = {kind: [masters.get(name) for name in names[kind]] for kind in names}
    shapes = [a.shape for kind in arrays for a in arrays[kind]]
    said = [f"{kind}s: {', '.join(names[kind])}" for kind in names if names[kind]]
    shape = shapes[0] if shapes else None
    for kind in arrays:
        for name, array in zip(names[kind], arrays[kind], strict=True):
            if array.shape != shape:
                said.append(f"{name} {array.shape[::-1]} is not {shape[::-1]}: not used")
        arrays[kind] = [a for a in arrays[kind] if a.shape == shape]
    given = None
    if given_path:
        if shape is None:
            from astropy.io import fits

            shape = fits.getdata(given_path).shape
        given = read_given(given_path, shape)
    if shape is None:
        return None, said + ["no master dark or flat, no given map: no bad pixels known"]
    bpm, found = bad_pixel_map(arrays["dark"], arrays["flat"], given, thresholds)
    return bpm, said + found


def save_preview(bpm, path, title):
    """A PNG of the map, black where bad; each bad pixel made visible by
    taking the maximum over blocks when the map is larger than the picture
    (IMAGE_SIDE px: no bad pixel falls between two of its pixels)."""
    from .preview import IMAGE_SIDE, image_png

    bad = np.asarray(bpm) > 0
    step = max(1, int(np.ceil(max(bad.shape) / IMAGE_SIDE)))
    ny, nx = (bad.shape[0] // step) * step, (bad.shape[1] // step) * step
    shown = bad[:ny, :nx].reshape(ny // step, step, nx // step, step).any(axis=(1, 3))
    title = f"{title}\n{int(bad.sum())} bad pixels ({bad.mean():.3%})"
    image_png(np.where(shown, 0, 255).astype(np.uint8), path, title, (nx, ny))


def header_cards():
    """Cards describing the map's codes."""
    return {f"BPM{code}": (text[:60], "bad-pixel map code") for code, text in BPM_CODES.items()}
