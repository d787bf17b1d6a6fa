"""Minimal access to simple FITS images, without importing astropy.

The combine reads bands of rows from many files; for a plain 2-D primary
image that is one seek and one read per band. Importing astropy.io.fits
costs half a second per process, as long as a whole 13-frame 2k combine, so
the combine engine reads through this and falls back to astropy for
anything else (tile-compressed files, extensions first, odd headers).
"""

import numpy as np

BLOCK = 2880
DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class NotSimple(ValueError):
    """Not a plain 2-D primary image: use astropy."""


def _number(text):
    text = text.split("/")[0].strip()
    try:
        return int(text)
    except ValueError:
        return float(text.replace("D", "E"))


class ImageFile:
    """A plain 2-D primary FITS image, read by bands of rows."""

    def __init__(self, path):
        self.path = str(path)
        self.handle = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        wanted = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BZERO", "BSCALE"}
        cards, offset, ended = {}, 0, False
        while not ended:
            block = self.handle.read(BLOCK)
            if len(block) < BLOCK:
                self.close()
                raise NotSimple(f"{path}: header ends early")
            offset += BLOCK
            for i in range(36):
                card = block[80 * i : 80 * i + 80].decode("ascii", "replace")
                key = card[:8].strip()
                if key == "END":
                    ended = True
                    break
                if key in wanted and card[8:10] == "= ":
                    value = card[10:].strip()
                    cards[key] = value[0] == "T" if key == "SIMPLE" else _number(value)
        if not cards.get("SIMPLE") or cards.get("NAXIS") != 2 or cards.get("BITPIX") not in DTYPES:
            self.close()
            raise NotSimple(f"{path}: not a plain 2-D primary image")
        self.offset = offset
        self.dtype = np.dtype(DTYPES[cards["BITPIX"]])
        self.shape = (cards["NAXIS2"], cards["NAXIS1"])
        self.bscale = float(cards.get("BSCALE", 1.0))
        self.bzero = float(cards.get("BZERO", 0.0))

    def rows_into(self, start, stop, out, scale=1.0):
        """Rows [start, stop) as float32 into ``out`` (flat), times ``scale``."""
        nx = self.shape[1]
        count = (stop - start) * nx
        self.handle.seek(self.offset + start * nx * self.dtype.itemsize)
        raw = np.fromfile(self.handle, dtype=self.dtype, count=count)
        if raw.size != count:
            raise OSError(f"{self.path}: file is truncated")
        factor, shift = self.bscale * scale, self.bzero * scale
        np.multiply(raw, np.float32(factor), out=out, casting="unsafe")
        if shift:
            out += np.float32(shift)

    def close(self):
        self.handle.close()


def write_image(path, data, cards=()):
    """Write a float32 image as a plain primary HDU; ``cards`` are
    (keyword, value) pairs of numbers or short strings."""
    data = np.asarray(data, dtype=">f4")
    lines = [
        ("SIMPLE", True),
        ("BITPIX", -32),
        ("NAXIS", 2),
        ("NAXIS1", data.shape[1]),
        ("NAXIS2", data.shape[0]),
        *cards,
    ]
    header = []
    for key, value in lines:
        if isinstance(value, bool):
            text = f"{'T' if value else 'F':>20}"
        elif isinstance(value, (int, float, np.integer, np.floating)):
            text = f"{value:>20}"
        else:
            text = "'" + str(value).replace("'", "''").ljust(8) + "'"
        header.append(f"{key:<8}= {text}".ljust(80)[:80])
    header.append("END".ljust(80))
    raw = "".join(header).encode("ascii")
    raw += b" " * (-len(raw) % BLOCK)
    with open(path, "wb") as handle:
        handle.write(raw)
        data.tofile(handle)
        handle.write(b"\0" * (-data.nbytes % BLOCK))
