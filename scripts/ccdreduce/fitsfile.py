"""Reading raw frames and writing products, the one place that touches FITS.

Raw files are opened read-only and never written. Products are written to a
temporary file beside the target and renamed into place, so a run killed
mid-write never leaves a half-written FITS that looks complete.
"""

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from .errors import FrameProblem

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

MASK_SATURATED = 1
MASK_BAD_FLAT = 2


def read_image(path):
    """(float32 pixels, header) of the first 2-D image HDU of a FITS file.

    Integer data are read unscaled and converted with BZERO/BSCALE in one
    float32 pass, which is faster than astropy's uint16 view then a cast.
    """
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
    with fits.open(path, memmap=False) as hdul:
        mask = hdul["MASK"].data if "MASK" in hdul else None
        return hdul[0].data, hdul[0].header, mask


def read_header(path):
    """The primary header of a product this workflow wrote."""
    return fits.getheader(path)


@contextlib.contextmanager
def mapped_product(path):
    """(pixels, header) of a product, memory-mapped: for reading a few
    apertures of many frames without loading them."""
    with fits.open(path, memmap=True) as hdul:
        yield hdul[0].data, hdul[0].header


def clean_header(header):
    """A copy of a raw header fit to sit on a float32 product."""
    header = header.copy()
    for key in _STORAGE_CARDS:
        header.remove(key, ignore_missing=True, remove_all=True)
    for key in [k for k in header if k.startswith("NAXIS")]:
        header.remove(key, ignore_missing=True)
    return header


def write_image(path, data, header, mask=None, extensions=None):
    """Write a float32 product atomically, with its MASK extension and any
    ``extensions`` ({EXTNAME: array}, e.g. a stack's COVERAGE)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdus = [fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=clean_header(header))]
    if mask is not None:
        mask_header = fits.Header()
        mask_header["BITS"] = (
            f"{MASK_SATURATED}=saturated in raw, {MASK_BAD_FLAT}=flat too low or undefined"
        )
        hdus.append(fits.ImageHDU(mask.astype(np.uint8), header=mask_header, name="MASK"))
    for name, array in (extensions or {}).items():
        hdus.append(fits.ImageHDU(array, name=name))
    # written beside the target, then renamed: a killed job never leaves a
    # half-written FITS under the product's name. What a killed job did
    # leave (its .tmp) goes now.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            # Camera cards (MaxIm's "/Software serial number") that fill all 80
            # columns lose the end of their comment when astropy re-formats them.
            warnings.filterwarnings("ignore", "Card is too long", VerifyWarning)
            fits.HDUList(hdus).writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
