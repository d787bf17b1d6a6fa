"""FITS/IRAF-style image sections such as ``[1:4096,1:4096]``.

A section is 1-based and inclusive, x (FITS axis 1, columns) first; numpy
indexes [row, column], 0-based and half-open. Everything that turns one into
the other lives here so that the off-by-one is written once.
"""

import re

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")


def parse_section(text):
    """Return (x1, x2, y1, y2), 1-based inclusive, from ``[x1:x2,y1:y2]``."""
    match = _SECTION.match(str(text).strip())
    if not match:
        raise ValueError(
            f"section {text!r} is not of the form [x1:x2,y1:y2] "
            "(1-based, inclusive, x first, as in IRAF and FITS DATASEC)"
        )
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if x1 < 1 or y1 < 1 or x2 < x1 or y2 < y1:
        raise ValueError(f"section {text!r} must have 1 <= x1 <= x2 and 1 <= y1 <= y2")
    return x1, x2, y1, y2


def section_slices(text, shape):
    """numpy slices (rows, columns) for a section, checked against ``shape``.

    ``shape`` is the numpy shape (ny, nx). Raises ValueError naming both when
    the section does not fit inside the frame.
    """
    x1, x2, y1, y2 = parse_section(text)
    ny, nx = shape
    if x2 > nx or y2 > ny:
        raise ValueError(
            f"section {text} does not fit in a frame of {nx}x{ny} pixels (NAXIS1={nx}, NAXIS2={ny})"
        )
    return slice(y1 - 1, y2), slice(x1 - 1, x2)
