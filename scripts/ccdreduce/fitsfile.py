"""Reading raw frames and writing products, the one place that touches FITS.

Raw files are opened read-only and never written. Products are written to a
temporary file beside the target and renamed into place, so a run killed
mid-write never leaves a half-written FITS that looks complete.

astropy is imported by each function that needs it, not by this module:
the inventory (every Snakemake parse) and the combine engine (plain images
read by fastfits, this module's astropy-free reader) import this module
and pay for astropy only when they open a file through it.
"""

import contextlib
import gzip
import threading
import warnings
from pathlib import Path

import numpy as np

from . import atomic
from .errors import FrameProblem, say

#: Cards that describe how the raw file stored its pixels or where its HDU
#: sat; they must not be carried onto a float32 product.
_STORAGE_CARDS = (
    "BZERO",
    "BSCALE",
    "BLANK",
    "DATAMIN",
    "DATAMAX",
    "XTENSION",
    "PCOUNT",
    "GCOUNT",
    "EXTNAME",
    "EXTVER",
    "EXTEND",
    "CHECKSUM",
    "DATASUM",
    "ZQUANTIZ",
    "ZDITHER0",
    "SIMPLE",
)

#: Data-quality bits of every product's MASK extension (uint8). A pixel with
#: any bit set enters no combine (masters, stacks); the bits say why.
MASK_SATURATED = 1
MASK_BAD_FLAT = 2
MASK_BAD_PIXEL = 4
MASK_COSMIC_RAY = 8
MASK_NO_DATA = 16
#: Each bit's meaning, written as BIT<n> cards into every MASK header.
MASK_BITS = {
    MASK_SATURATED: "saturated: at or above the saturation level in raw",
    MASK_BAD_FLAT: "low flat: master flat below min_flat or undefined",
    MASK_BAD_PIXEL: "bad pixel: hot in the dark, dead or deviant in the flat",
    MASK_COSMIC_RAY: "cosmic ray: found in this single frame",
    MASK_NO_DATA: "no data: outside the frame, or no valid input",
}

#: The unit of each kind of product: (BUNIT, its comment; None keeps the
#: comment a raw header gave), or None for no unit. A flat is a ratio, and
#: 'adu/adu' is the FITS way to say so that CCDData.read accepts (a missing
#: or empty BUNIT makes it ask for a unit).
#: Registered frames keep the calibrated unit (set again by register_night).
UNITS = {
    "bias": ("adu", None),
    "dark": ("adu", None),
    "flat": ("adu/adu", "ratio: normalised to a median of 1"),
    "calibrated": ("adu", "flat-fielded counts"),
    "registered": ("adu", "flat-fielded counts"),
    "stack": ("adu", "sky-subtracted, scaled to the reference frame"),
}


def set_unit(header, kind):
    """Give ``header`` the BUNIT of a product of ``kind`` (a key of UNITS),
    or remove it where the product has no unit."""
    if kind not in UNITS:
        raise ValueError(f"no unit known for a {kind!r} product; kinds: {', '.join(UNITS)}")
    unit = UNITS[kind]
    if unit is None:
        header.remove("BUNIT", ignore_missing=True)
    elif unit[1] is None:
        header["BUNIT"] = unit[0]
    else:
        header["BUNIT"] = unit


def read_image(path):
    """(float32 pixels, header) of the first 2-D image HDU of a FITS file.

    Integer data are read unscaled and converted with BZERO/BSCALE in one
    float32 pass, which is faster than astropy's uint16 view then a cast.
    """
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False, do_not_scale_image_data=True) as hdul:
            for hdu in hdul:
                if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2 and hdu.data is not None:
                    return _to_float32(hdu), hdu.header.copy()
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise FrameProblem(
            path,
            f"cannot read its pixels ({type(exc).__name__}: {exc})",
            "copy the file again from the camera computer, or list it under exclude",
        ) from exc
    raise FrameProblem(path, "no 2-D image in any HDU", "list it under exclude")


def _to_float32(hdu):
    """Pixels as float32, BZERO/BSCALE applied (plain and tile-compressed)."""
    data = hdu.data
    data = data.reshape(data.shape[-2:])
    if data.dtype.kind == "f":
        return np.asarray(data, dtype=np.float32)
    bscale = float(hdu.header.get("BSCALE", 1.0))
    bzero = float(hdu.header.get("BZERO", 0.0))
    out = np.empty(data.shape, dtype=np.float32)
    if bscale == 1.0:
        np.add(data, np.float32(bzero), out=out, dtype=np.float32, casting="unsafe")
    else:
        np.multiply(data, np.float32(bscale), out=out, dtype=np.float32, casting="unsafe")
        out += np.float32(bzero)
    return out


def read_product(path):
    """(pixels, header, mask or None) of a product this workflow wrote."""
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        mask = hdul["MASK"].data if "MASK" in hdul else None
        return hdul[0].data, hdul[0].header, mask


def read_uncertainty(path):
    """The UNCERT extension of a product (a standard deviation in the data's
    unit, ccdproc's convention) as float32, or None when it has none."""
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        if "UNCERT" not in hdul:
            return None
        return np.asarray(hdul["UNCERT"].data, dtype=np.float32)


def mask_header():
    """The header of a MASK extension: what each bit means."""
    from astropy.io import fits

    header = fits.Header()
    header["BITS"] = (
        ", ".join(f"{bit} {MASK_BITS[bit].split(':')[0]}" for bit in MASK_BITS),
        "MASK bits",
    )
    for bit, meaning in MASK_BITS.items():
        header[f"BIT{bit}"] = meaning
    return header


def read_header(path):
    """The primary header of a product this workflow wrote."""
    from astropy.io import fits

    return fits.getheader(path)


@contextlib.contextmanager
def mapped_product(path):
    """(pixels, header, mask or None) of a product, memory-mapped: for
    reading a few apertures of many frames without loading them."""
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        yield hdul[0].data, hdul[0].header, (hdul["MASK"].data if "MASK" in hdul else None)


def map_pixels(path):
    """The primary pixels of a product, memory-mapped: for masters, which a
    per-frame job touches once each, mapping the page-cached file beats
    copying it into memory."""
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        return hdul[0].data


def open_bands(path, extname=None):
    """A reader of bands of rows (``shape``, ``rows_into``, ``close``) of the
    first 2-D image, or of the image extension named ``extname`` (UNCERT):
    fastfits for a plain image (no astropy import), astropy for anything
    else (tile-compressed, odd headers). A file without that extension:
    FrameProblem naming the file."""
    from . import fastfits

    try:
        return fastfits.ImageFile(path, extname)
    except fastfits.NotSimple:
        return _AstropyBands(path, extname)


_ASTROPY_READING = threading.Lock()


class _AstropyBands:
    def __init__(self, path, extname=None):
        from astropy.io import fits

        self.path = str(path)
        self.hdul = fits.open(path, memmap=False, lazy_load_hdus=True)
        if extname is None:
            self.hdu = next(h for h in self.hdul if h.is_image and h.header.get("NAXIS", 0) == 2)
        else:
            try:
                self.hdu = self.hdul[extname]
            except KeyError:
                self.hdul.close()
                raise FrameProblem(
                    path,
                    f"no {extname} extension",
                    f"make it again with this version (it writes {extname}), "
                    f"or combine without uncertainty",
                ) from None
        self.shape = self.hdu.shape

    def rows_into(self, start, stop, out, scale=1.0):
        with _ASTROPY_READING:  # one file position: bands are read by several threads
            rows = self.hdu.section[start:stop, :]
        np.multiply(rows.reshape(-1), scale, out=out, casting="unsafe")

    def close(self):
        self.hdul.close()


def clean_header(header):
    """A copy of a raw header fit to sit on a float32 product."""
    header = header.copy()
    for key in _STORAGE_CARDS:
        header.remove(key, ignore_missing=True, remove_all=True)
    for key in [k for k in header if k.startswith("NAXIS")]:
        header.remove(key, ignore_missing=True)
    return header


def write_image(path, data, header, mask=None, extensions=None, uncertainty=None):
    """Write a float32 product atomically, with its MASK extension, its
    UNCERT extension (``uncertainty``: a standard deviation in the data's
    unit, as ccdproc writes it, so CCDData.read finds unit, mask and
    uncertainty) and any ``extensions`` ({EXTNAME: array}, e.g. COVERAGE)."""
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdus = [fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=clean_header(header))]
    if mask is not None:
        hdus.append(fits.ImageHDU(mask.astype(np.uint8), header=mask_header(), name="MASK"))
    if uncertainty is not None:
        uncert_header = fits.Header()
        uncert_header["UTYPE"] = ("StdDevUncertainty", "astropy.nddata uncertainty class")
        if "BUNIT" in hdus[0].header:
            uncert_header["BUNIT"] = hdus[0].header["BUNIT"]
        uncert_header["COMMENT"] = "1-sigma uncertainty of each pixel, in the data's unit"
        hdus.append(
            fits.ImageHDU(
                np.asarray(uncertainty, dtype=np.float32), header=uncert_header, name="UNCERT"
            )
        )
    for name, array in (extensions or {}).items():
        hdus.append(fits.ImageHDU(array, name=name))
    # written beside the target, then renamed: a killed job never leaves a
    # half-written FITS under the product's name, and what a killed job did
    # leave goes now
    with atomic.written_beside(path, clear_stale=True) as tmp, warnings.catch_warnings():
        # Camera cards (MaxIm's "/Software serial number") that fill all 80
        # columns lose the end of their comment when astropy re-formats them.
        warnings.filterwarnings("ignore", "Card is too long", VerifyWarning)
        fits.HDUList(hdus).writeto(tmp, overwrite=True)


def image_fields(path, size, wanted, fix):
    """The ``wanted`` header values of the first 2-D image HDU of ``path``
    (``size`` bytes), with ``_hdu`` (its index) and ``_shape`` (ny, nx);
    or ``{"_problem": errors.say(reason, fix)}``: not FITS, no 2-D image,
    shorter than its header says (each with ``fix``), or a cube.

    Opened lazily and never memory-mapped: only the headers are read.
    String values astropy garbled (non-ASCII bytes) are decoded from the
    header's own bytes.
    """
    from . import fastfits

    try:
        fields, needed = fastfits.header_fields(path, wanted)
    except (fastfits.NotSimple, OSError):  # astropy reads it, and says what is wrong
        pass
    else:
        return _truncated(size, needed, fix) or fields

    from astropy.io import fits
    from astropy.io.fits.verify import VerifyError

    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            for index, hdu in enumerate(hdul):
                header = hdu.header
                if not hdu.is_image or header.get("NAXIS", 0) < 2:
                    continue
                fields = {k: header[k] for k in wanted if k in header}
                # astropy reads each non-ASCII byte as '?' ('Ha' and 'Hb' in
                # Greek both 'H??'): such values are read again from the bytes
                garbled = [k for k, v in fields.items() if isinstance(v, str) and "?" in v]
                if garbled:
                    fields |= _card_texts(path, hdu.fileinfo(), garbled)
                fields["_hdu"] = index
                fields["_shape"] = [header["NAXIS2"], header["NAXIS1"]]
                if header["NAXIS"] > 2 and any(
                    header.get(f"NAXIS{i}", 1) > 1 for i in range(3, header["NAXIS"] + 1)
                ):
                    return {
                        "_problem": say(
                            "image has more than 2 axes (a cube)", "split it into single frames"
                        )
                    }
                if not path.lower().endswith(".gz"):
                    info = hdu.fileinfo()
                    return _truncated(size, info["datLoc"] + _data_bytes(hdu, info), fix) or fields
                return fields
    except (OSError, ValueError, KeyError, EOFError, VerifyError) as exc:
        return {
            "_problem": say(
                "not a readable FITS file "
                f"({type(exc).__name__}: {str(exc).strip() or 'no detail'})",
                fix,
            )
        }
    return {"_problem": say("no 2-D image in any HDU", fix)}


def _truncated(size, needed, fix):
    """The problem of a file shorter than its header says, else None."""
    if size >= needed:
        return None
    return {
        "_problem": say(
            f"file is truncated ({size} bytes, the header promises at least {needed})", fix
        )
    }


def _card_texts(path, info, keywords):
    """String values of ``keywords`` decoded from the header's own bytes
    (UTF-8, else Latin-1), for cards astropy read with non-ASCII bytes."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        handle.seek(info["hdrLoc"])
        block = handle.read(info["datLoc"] - info["hdrLoc"])
    found = {}
    for start in range(0, len(block) - 79, 80):
        card = block[start : start + 80]
        keyword = card[:8].decode("ascii", "replace").strip()
        if keyword in keywords and card[8:10] == b"= " and b"'" in card[10:]:
            text = card[10:].split(b"'", 1)[1].rsplit(b"'", 1)[0].replace(b"''", b"'")
            try:
                found[keyword] = text.decode("utf-8").strip()
            except UnicodeDecodeError:
                found[keyword] = text.decode("latin-1").strip()
    return found


def _data_bytes(hdu, info):
    """Bytes the data must occupy at least (without the final padding)."""
    header = hdu.header
    if hdu.__class__.__name__ == "CompImageHDU":
        return max(info["datSpan"] - 2879, 0)
    count = 1
    for i in range(1, header["NAXIS"] + 1):
        count *= header[f"NAXIS{i}"]
    return abs(header["BITPIX"]) // 8 * count
