"""Minimal access to simple FITS images, without importing astropy.

The combine reads bands of rows from many files; for a plain 2-D primary
image, or a plain image extension found by EXTNAME (UNCERT), that is one
seek and one read per band. Importing astropy.io.fits
costs half a second per process, as long as a whole 13-frame 2k combine, so
the combine engine reads through this and falls back to astropy for
anything else (tile-compressed files, extensions first, odd headers).

The inventory reads the headers of a night's new raw files the same way
(:func:`header_fields`): in Snakemake's own process, before any job, where
astropy's import alone was ~0.4 s of a first run's start.
"""

import gzip
import os
import re
import zlib

import numpy as np

BLOCK = 2880
DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class NotSimple(ValueError):
    """Not a plain 2-D primary image: use astropy."""


WANTED = {"SIMPLE", "XTENSION", "EXTNAME", "BITPIX", "NAXIS", "BZERO", "BSCALE", "PCOUNT", "GCOUNT"}


def _data_bytes(cards):
    """Bytes an HDU's data takes on disk, padded to whole blocks."""
    axes = [int(cards.get(f"NAXIS{i}", 0)) for i in range(1, int(cards.get("NAXIS", 0)) + 1)]
    count = int(np.prod(axes)) if axes else 0
    size = abs(int(cards.get("BITPIX", 8))) // 8 * int(cards.get("GCOUNT", 1))
    size *= count + int(cards.get("PCOUNT", 0))
    return -(-size // BLOCK) * BLOCK


_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8} *")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+)(E[+-]?[0-9]+)?|[+-]?[0-9]+E[+-]?[0-9]+")
_STRING = re.compile(r"'((?:[^']|'')*)'")
#: The first cards of a plain primary image, of a primary header before
#: extensions, of a binary table, and what makes a table a tile-compressed
#: image, each in the standard's order (the last as a set).
_IMAGE = ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2")
_PRIMARY = _IMAGE[:3]
_TABLE = ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS")
_TILES = ("ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZCMPTYPE")
COMPRESSIONS = ("RICE_1", "GZIP_1", "GZIP_2", "PLIO_1", "HCOMPRESS_1", "NOCOMPRESS")
#: Keywords astropy moves, renames or drops when it turns a tile-compressed
#: table's header into the image's (NAXISn aside): a file whose wanted
#: keywords include one is left to astropy.
_RESERVED = re.compile(
    r"Z.*|T(TYPE|FORM|UNIT|NULL|SCAL|ZERO|DISP|BCOL|DIM|CTYP|CUNI|CRPX|CRVL|CDLT|RPOS)[0-9]+"
    r"|TFIELDS|THEAP|SIMPLE|XTENSION|BITPIX|NAXIS[0-9]*|PCOUNT|GCOUNT|EXTEND|BLOCKED|GROUPS"
    r"|CHECKSUM|DATASUM|BSCALE|BZERO|BLANK|EXTNAME|EXTVER|EXTLEVEL"
)
#: Bytes a gzipped file is checked by at a time (astropy's reading of it
#: fails on a broken stream, so this one must too).
GZIP_CHUNK = 1 << 20
#: Header blocks read at most before astropy is left to it.
MAX_HEADER_BLOCKS = 64


def header_fields(path, wanted):
    """(fields, bytes the file must hold at least) of the first 2-D image of
    a plain FITS file, read without astropy: ``fields`` the ``wanted``
    keywords' values exactly as astropy gives them, with ``_hdu`` and
    ``_shape`` (ny, nx). NotSimple for anything not plain, which astropy then
    reads (fitsfile.image_fields).

    Plain: a 2-D primary image, or an empty primary followed by a
    tile-compressed 2-D image (.fits.fz, read from the table's header as
    astropy does, none of its reserved keywords wanted), also gzipped whole
    (.gz: decompressed whole, as astropy's reading of it fails on a broken
    stream; its size is not checked, as there); the mandatory cards
    in their order, printable ASCII only, upper-case keywords, no CONTINUE
    or HIERARCH card, an END card followed by blanks, and each value read a
    quoted string, T or F, an integer or a real in the standard's fixed form
    (no lower-case or D exponent), given once.
    """
    if str(path).lower().endswith(".gz"):
        try:
            with gzip.open(path, "rb") as handle:
                fields, _ = _header_fields(handle, path, wanted)
                while handle.read(GZIP_CHUNK):  # the whole stream must be sound
                    pass
        except (OSError, EOFError, zlib.error) as exc:
            raise NotSimple(f"{path}: {exc}") from None
        return fields, 0
    with open(path, "rb") as handle:
        return _header_fields(handle, path, wanted)


def _header_fields(handle, path, wanted):
    """header_fields of the FITS file open as ``handle``."""
    cards, data_at = _plain_cards(handle, path)
    first = _plain_values(path, cards, {*wanted, *_IMAGE})
    if _opens(cards, _IMAGE) and first["NAXIS"] == 2 and first["SIMPLE"] is True:
        bitpix, (ny, nx) = first["BITPIX"], _axes(path, first, "")
        fields = {key: first[key] for key in wanted if key in first}
        return fields | {"_hdu": 0, "_shape": [ny, nx]}, data_at + abs(bitpix) // 8 * nx * ny
    if not (_opens(cards, _PRIMARY) and first["SIMPLE"] is True and first["NAXIS"] == 0):
        raise NotSimple(f"{path}: neither a plain image nor an empty primary header")
    cards, data_at = _plain_cards(handle, path)
    table = _plain_values(path, cards, {*wanted, *_TABLE, *_TILES})
    if not (
        _opens(cards, _TABLE)
        and (table["XTENSION"], table["BITPIX"], table["NAXIS"], table["GCOUNT"])
        == ("BINTABLE", 8, 2, 1)
        and set(_TILES) <= set(table)
        and table["ZIMAGE"] is True
        and table["ZNAXIS"] == 2
        and table["ZCMPTYPE"] in COMPRESSIONS
    ):
        raise NotSimple(f"{path}: not a tile-compressed 2-D image in its first extension")
    bitpix, (ny, nx) = table["ZBITPIX"], _axes(path, table, "Z")
    _axes(path, table, "")  # the table's own size
    fields = {}
    for key in wanted:
        if key in ("NAXIS1", "NAXIS2"):
            fields[key] = table[f"Z{key}"]
        elif _RESERVED.fullmatch(key):
            raise NotSimple(f"{path}: {key} is the table's, not the image's")
        elif key in table:
            fields[key] = table[key]
    heap = table["PCOUNT"]
    if not isinstance(heap, int) or isinstance(heap, bool) or heap < 0 or bitpix not in DTYPES:
        raise NotSimple(f"{path}: PCOUNT or ZBITPIX not plain")
    span = -(-(table["NAXIS1"] * table["NAXIS2"] + heap) // BLOCK) * BLOCK
    # as astropy's fileinfo() measures a compressed image's data (less the padding)
    return fields | {"_hdu": 1, "_shape": [ny, nx]}, data_at + max(span - (BLOCK - 1), 0)


def _opens(cards, keywords):
    return [key for key, _ in cards[: len(keywords)]] == list(keywords)


def _axes(path, values, prefix):
    """(ny, nx) from [prefix]NAXIS2 and 1: positive integers, else NotSimple."""
    axes = [values.get(f"{prefix}NAXIS{n}") for n in (2, 1)]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in axes):
        raise NotSimple(f"{path}: axes that are not positive integers")
    if prefix == "" and values.get("BITPIX") not in DTYPES:
        raise NotSimple(f"{path}: BITPIX {values.get('BITPIX')!r}")
    return axes


def _plain_values(path, cards, read):
    """{keyword: value} of the cards named in ``read``; NotSimple for a long
    string of one of them (CONTINUE), a long-keyword card (HIERARCH), a
    keyword given twice or a value not plain. (The workflow's own products
    carry long strings of other keywords: their provenance.)"""
    values, previous = {}, None
    for key, text in cards:
        if key == "CONTINUE" and previous not in read:
            continue
        previous = key
        if key in ("CONTINUE", "HIERARCH"):
            raise NotSimple(f"{path}: a {key} card")
        if key not in read:
            continue
        if key in ("COMMENT", "HISTORY") or key in values or text is None:
            raise NotSimple(f"{path}: {key} given twice, or without a value")
        values[key] = _plain_value(path, key, text)
    return values


def _plain_cards(handle, path):
    """[(keyword, value text or None)] of the header at the handle's
    position, and where its data starts; NotSimple when it is not plain
    ASCII ending in END."""
    cards, start = [], handle.tell()
    for blocks in range(1, MAX_HEADER_BLOCKS + 1):
        block = handle.read(BLOCK)
        if len(block) < BLOCK:
            raise NotSimple(f"{path}: the header ends early")
        if not block.isascii() or not block.decode("ascii").isprintable():
            raise NotSimple(f"{path}: bytes outside printable ASCII")
        text = block.decode("ascii")
        for at in range(0, BLOCK, 80):
            card = text[at : at + 80]
            if card.startswith("END "):
                if text[at:].strip() != "END":
                    raise NotSimple(f"{path}: text after END")
                return cards, start + blocks * BLOCK
            if not card.strip():
                continue
            if not _KEYWORD.fullmatch(card[:8]):
                if card[:8].strip():
                    raise NotSimple(f"{path}: keyword {card[:8].strip()!r}")
                continue  # a blank keyword: commentary
            cards.append((card[:8].rstrip(), card[10:] if card[8:10] == "= " else None))
    raise NotSimple(f"{path}: no END within {MAX_HEADER_BLOCKS} header blocks")


def _plain_value(path, key, text):
    """A value card's value as astropy reads it, or NotSimple."""
    text = text.lstrip()
    string = _STRING.match(text)
    if string:
        rest = text[string.end() :].lstrip()
        if rest and not rest.startswith("/"):
            raise NotSimple(f"{path}: {key}: text after the string")
        value = string.group(1).replace("''", "'").rstrip()
        if "?" in value:  # as fitsfile._card_text reads such a value (garbled bytes)
            raise NotSimple(f"{path}: {key}: a '?' in the string")
        return value
    number = text.split("/", 1)[0].strip()
    if number in ("T", "F"):
        return number == "T"
    if _INTEGER.fullmatch(number):
        return int(number)
    if _REAL.fullmatch(number):
        return float(number)
    raise NotSimple(f"{path}: {key}: a value not in the plain forms ({number!r})")


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
                cards, self.offset = self._header()
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

    def _header(self):
        """(cards, offset of the data) of the header starting here, read as
        header_fields reads them; NotSimple at the end of the file (no such
        extension) or for a header not plain."""
        cards, offset = _plain_cards(self.handle, self.path)
        read = WANTED | {key for key, _ in cards if key.startswith("NAXIS")}
        return _plain_values(self.path, cards, read), offset

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
