"""Colour (Bayer) sensors: which colour each raw pixel saw, and the mosaic
turned into three co-sited colour planes.

A colour frame is calibrated as the raw mosaic it is (bias, dark and flat
are mosaics too); only then is it demosaiced, before anything moves it:
resampling a mosaic would mix colours.

The pattern names the colours of the 2x2 cell at the array's pixel
(row 0, column 0) in numpy order: "GRBG" is row 0 G R, row 1 B G. Headers
give it as BAYERPAT (COLORTYP in some programs) with XBAYROFF/YBAYROFF, the
offset of the array's first pixel within the pattern (ASCOM's
BayerOffsetX/Y), and ROWORDER when rows are stored bottom-up.
"""

from dataclasses import dataclass

import numpy as np

CHANNELS = ("R", "G", "B")
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
METHODS = ("bilinear", "superpixel")

# Bilinear interpolation as a normalised convolution: each colour's samples
# weighted by these kernels and divided by the weights that fell on samples.
# On a full mosaic this is the textbook bilinear demosaic (a sample keeps its
# own value; a missing one is the mean of its 2 or 4 nearest samples); at
# edges and around masked samples it averages the samples that are there.
_KERNELS = {
    "R": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32),
    "G": np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32),
    "B": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32),
}


def _shift(pattern, dy, dx):
    """The pattern seen from a pixel (dy, dx) further along the array."""
    cells = [[pattern[0], pattern[1]], [pattern[2], pattern[3]]]
    return "".join(cells[(row + dy) % 2][(col + dx) % 2] for row in (0, 1) for col in (0, 1))


def pattern(header, shape=None):
    """The frame's pattern at array pixel (0, 0), or None for a mono frame.

    Raises ValueError for a BAYERPAT that is not one of PATTERNS. ``shape``
    (ny, nx) is needed only for ROWORDER = 'BOTTOM-UP' frames.
    """
    value = header.get("BAYERPAT", header.get("COLORTYP"))
    if value is None:
        return None
    text = str(value).strip().upper()
    if text in ("", "NONE", "MONO"):
        return None
    if text not in PATTERNS:
        raise ValueError(f"BAYERPAT {value!r} is not one of {', '.join(PATTERNS)}")
    dx = int(header.get("XBAYROFF", 0) or 0)
    dy = int(header.get("YBAYROFF", 0) or 0)
    if str(header.get("ROWORDER", "TOP-DOWN")).strip().upper() == "BOTTOM-UP":
        if shape is None:
            raise ValueError("ROWORDER = 'BOTTOM-UP' needs the frame's shape")
        dy += shape[0] - 1  # array row r is the sensor's row ny - 1 - r
    return _shift(text, dy, dx)


def is_mosaic(header):
    """Whether a header says its pixels are a colour mosaic (a BAYERPAT or
    COLORTYP other than none/mono), valid pattern or not."""
    value = header.get("BAYERPAT", header.get("COLORTYP"))
    return value is not None and str(value).strip().upper() not in ("", "NONE", "MONO")


def pattern_after_trim(bayer, y0, x0):
    """The pattern at the first pixel of a section starting at (y0, x0)."""
    return _shift(bayer, y0, x0)


def colour_masks(bayer, shape):
    """{channel: boolean array} of the pixels that saw each colour."""
    rows = np.arange(shape[0])[:, None] % 2
    cols = np.arange(shape[1])[None, :] % 2
    cell = rows * 2 + cols
    return {c: np.isin(cell, [i for i, p in enumerate(bayer) if p == c]) for c in CHANNELS}


@dataclass
class Planes:
    """Demosaiced colour planes: data, mask bits and variance per channel."""

    data: dict  # channel -> float32 (ny, nx), NaN where no sample served
    mask: dict  # channel -> uint8, the OR of the mask bits of the samples used
    variance: dict | None  # channel -> float32, or None without a variance


def _convolve(image, kernel):
    """Same-size 3x3 correlation with zero padding (symmetric kernels)."""
    from scipy import ndimage

    return ndimage.correlate(image, kernel, mode="constant", cval=0.0)


def _or_over(mask, footprint):
    """Each pixel's OR of ``mask`` over the 3x3 ``footprint`` around it."""
    padded = np.pad(mask, 1)
    out = np.zeros_like(mask)
    ny, nx = mask.shape
    for dy, dx in zip(*np.nonzero(footprint), strict=True):
        out |= padded[dy : dy + ny, dx : dx + nx]
    return out


def _bilinear(data, bayer, mask, variance):
    sites = colour_masks(bayer, data.shape)
    good = np.isfinite(data)
    if mask is not None:
        good &= mask == 0
    planes = Planes({}, {}, {} if variance is not None else None)
    values = np.where(good, data, 0).astype(np.float32)
    for channel in CHANNELS:
        kernel = _KERNELS[channel]
        weight = (sites[channel] & good).astype(np.float32)
        norm = _convolve(weight, kernel)
        with np.errstate(invalid="ignore", divide="ignore"):
            plane = _convolve(values * weight, kernel) / norm
            if variance is not None:
                var = np.where(good, variance, 0).astype(np.float32)
                planes.variance[channel] = (
                    _convolve(var * weight, kernel * kernel) / (norm * norm)
                ).astype(np.float32)
        plane[norm == 0] = np.nan
        planes.data[channel] = plane.astype(np.float32)
        if mask is None:
            planes.mask[channel] = np.zeros(data.shape, np.uint8)
        else:
            site_mask = np.where(sites[channel], mask, 0).astype(np.uint8)
            planes.mask[channel] = _or_over(site_mask, kernel > 0)
    return planes


def _superpixel(data, bayer, mask, variance):
    ny, nx = (data.shape[0] // 2) * 2, (data.shape[1] // 2) * 2
    cells = {}
    for i, colour in enumerate(bayer):
        cells.setdefault(colour, []).append((i // 2, i % 2))
    planes = Planes({}, {}, {} if variance is not None else None)
    for channel in CHANNELS:
        offsets = cells[channel]
        samples = [data[dy:ny:2, dx:nx:2].astype(np.float32) for dy, dx in offsets]
        planes.data[channel] = np.mean(samples, axis=0).astype(np.float32)
        if variance is not None:
            var = [variance[dy:ny:2, dx:nx:2] for dy, dx in offsets]
            planes.variance[channel] = (np.sum(var, axis=0) / len(var) ** 2).astype(np.float32)
        out = np.zeros((ny // 2, nx // 2), np.uint8)
        if mask is not None:
            for dy, dx in offsets:
                out |= mask[dy:ny:2, dx:nx:2]
        planes.mask[channel] = out
    return planes


def demosaic(data, bayer, method="bilinear", mask=None, variance=None):
    """Planes of a calibrated mosaic ``data`` whose pixel (0, 0) has
    pattern ``bayer``: bilinear (same size, every plane co-sited with the
    mosaic's pixels) or superpixel (half size, one value per 2x2 cell, no
    interpolation; its colours sit up to half a raw pixel apart).

    Masked or NaN samples are not used; a value with none to use is NaN.
    ``variance`` (ADU^2) is propagated as for independent samples.
    """
    if bayer not in PATTERNS:
        raise ValueError(f"Bayer pattern {bayer!r} is not one of {', '.join(PATTERNS)}")
    if method == "bilinear":
        return _bilinear(data, bayer, mask, variance)
    if method == "superpixel":
        return _superpixel(data, bayer, mask, variance)
    raise ValueError(f"demosaic method {method!r} is not one of {', '.join(METHODS)}")


def luminance(planes):
    """The mean of the three colour planes: what stars are found and frames
    registered on, so that every channel of a frame moves alike."""
    return ((planes.data["R"] + planes.data["G"] + planes.data["B"]) / 3).astype(np.float32)
