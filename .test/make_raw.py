"""Writes .test/raw: one tiny night (8x8-pixel frames, constant levels) that
gives the workflow a complete plan (a bias, a dark, an R flat, two R lights
of one object) so that `snakemake --lint` and dry runs work on a fresh
clone. The files are committed; rerun this only to change them:

    .venv/bin/python .test/make_raw.py

The pixels carry no stars: the `calibration` target runs on them, the stacks
cannot (no stars to register).
"""

from pathlib import Path

import numpy as np
from astropy.io import fits

NIGHT = Path(__file__).resolve().parent / "raw" / "2025-03-01"
FRAMES = (  # file, IMAGETYP, EXPTIME, FILTER, DATE-OBS, level
    ("bias_001.fits", "Bias Frame", 0.0, None, "2025-03-01T18:00:00", 1000),
    ("dark_30s_001.fits", "Dark Frame", 30.0, None, "2025-03-01T18:01:00", 1010),
    ("flat_R_001.fits", "Flat Field", 2.0, "R", "2025-03-01T18:02:00", 20000),
    ("light_R_30s_001.fits", "Light Frame", 30.0, "R", "2025-03-01T21:00:00", 1200),
    ("light_R_30s_002.fits", "Light Frame", 30.0, "R", "2025-03-01T21:01:00", 1200),
)


def main():
    NIGHT.mkdir(parents=True, exist_ok=True)
    for name, imagetyp, exptime, filt, date_obs, level in FRAMES:
        header = fits.Header()
        header["IMAGETYP"] = imagetyp
        header["EXPTIME"] = exptime
        if filt:
            header["FILTER"] = filt
        if imagetyp == "Light Frame":
            header["OBJECT"] = "M 67"
        header["DATE-OBS"] = date_obs
        data = np.full((8, 8), level, dtype=np.uint16)
        fits.PrimaryHDU(data, header=header).writeto(NIGHT / name, overwrite=True)


if __name__ == "__main__":
    main()
