"""Minimal access to simple FITS images, without importing astropy.

The combine reads bands of rows from many files; for a plain 2-D primary
image, or a plain image extension found by EXTNAME (UNCERT), that is one
seek and one read per band. Importing astropy.io.fits
costs half a second per process, as long as a whole 13-frame 2k combine, so
the combine engine reads through this and falls back to astropy for
anything else (tile-compressed files, extensions first, odd headers).
"""

import os

import numpy as np

BLOCK = 2880
DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class NotSimple(ValueError):
    """Not a plain 2-D primary image: use astropy."""


WANTED = {"SIMPLE", "XTENSION", "EXTNAME", "BITPIX", "NAXIS", "BZERO", "BSCALE", "PCOUNT", "GCOUNT"}


def _value(key, text):
    if key == "SIMPLE":
        return text[:1] == "T"
    if text[:1] == "'":  # a string: up to its closing quote ('' is a quote)
        return text[1:].replace("''", "\0").split("'")[0].replace("\0", "'").strip()
    return _number(text)


def _data_bytes(cards):
    """Bytes an HDU's data takes on disk, padded to whole blocks."""
    axes = [int(cards.get(f"NAXIS{i}", 0)) for i in range(1, int(cards.get("NAXIS", 0)) + 1)]
    count = int(np.prod(axes)) if axes else 0
    size = abs(int(cards.get("BITPIX", 8))) // 8 * int(cards.get("GCOUNT", 1))
    size *= count + int(cards.get("PCOUNT", 0))
    return -(-size // BLOCK) * BLOCK


def _number(text):
    text = text.split("/")[0].strip()
    try:
        return int(text)
    except ValueError:
        return float(text.replace("D", "E"))


class ImageFile:
    """A plain 2-D FITS image, read by bands of rows: the primary image, or
    (``extname``) the image extension of that EXTNAME, found by walking the
    headers and skipping each HDU's data."""

    def __init__(self, path, extname=None):
        self.path = str(path)
        self.handle = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        try:
            cards, self.offset = self._header()
            while extname is not None and cards.get("EXTNAME", "").upper() != extname.upper():
                self.handle.seek(self.offset + _data_bytes(cards))
                cards, self.offset = self._header(first=False)
        except NotSimple:
            self.close()
            raise
        first = cards.get("SIMPLE") if extname is None else cards.get("XTENSION") == "IMAGE"
        if not first or cards.get("NAXIS") != 2 or cards.get("BITPIX") not in DTYPES:
            self.close()
            what = "primary image" if extname is None else f"image extension {extname}"
            raise NotSimple(f"{path}: not a plain 2-D {what}")
        self.dtype = np.dtype(DTYPES[cards["BITPIX"]])
        self.shape = (cards["NAXIS2"], cards["NAXIS1"])
        self.bscale = float(cards.get("BSCALE", 1.0))
        self.bzero = float(cards.get("BZERO", 0.0))

    def _header(self, first=True):
        """(cards, offset of the data) of the header starting here; NotSimple
        at the end of the file (no such extension) or a broken header."""
        cards, ended = {}, False
        while not ended:
            block = self.handle.read(BLOCK)
            if len(block) < BLOCK:
                where = "header ends early" if first or block else "no such image extension"
                raise NotSimple(f"{self.path}: {where}")
            for i in range(36):
                card = block[80 * i : 80 * i + 80].decode("ascii", "replace")
                key = card[:8].strip()
                if key == "END":
                    ended = True
                    break
                if card[8:10] == "= " and (key in WANTED or key.startswith("NAXIS")):
                    cards[key] = _value(key, card[10:].strip())
        return cards, self.handle.tell()

    def rows_into(self, start, stop, out, scale=1.0):
        """Rows [start, stop) as float32 into ``out`` (flat), times ``scale``."""
        nx = self.shape[1]
        count = (stop - start) * nx
        offset = self.offset + start * nx * self.dtype.itemsize
        factor, shift = self.bscale * scale, self.bzero * scale
        # pread: no shared file position, so bands are read by several threads
        if self.dtype == np.dtype(">f4") and out.dtype == np.float32 and out.flags.c_contiguous:
            # straight into the output, swapped in place: no temporary
            values = out[:count]
            self._read(values.view(">f4"), offset)
            values.byteswap(inplace=True)  # now native float32
            if factor != 1.0:
                values *= np.float32(factor)
        else:
            raw = np.empty(count, dtype=self.dtype)
            self._read(raw, offset)
            np.multiply(raw, np.float32(factor), out=out, casting="unsafe")
        if shift:
            out += np.float32(shift)

    def _read(self, raw, offset):
        if os.preadv(self.handle.fileno(), [raw.view(np.uint8)], offset) != raw.nbytes:
            raise OSError(f"{self.path}: file is truncated")

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
