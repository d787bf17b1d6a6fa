"""Small raw frames written on the spot, for tests of bad input and policy."""

from pathlib import Path

import numpy as np
from astropy.io import fits


def write_raw(
    path,
    imagetyp,
    exptime=None,
    shape=(40, 48),
    level=1000,
    filt=None,
    date="2025-03-01T20:00:00",
    compress=False,
    **cards,
):
    """A uint16 raw frame with a MaxIm-style header; returns its Path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    data = (level + rng.normal(0, 3, shape)).astype(np.uint16)
    header = fits.Header()
    header["IMAGETYP"] = imagetyp
    if exptime is not None:
        header["EXPTIME"] = exptime
    if filt is not None:
        header["FILTER"] = filt
    header["DATE-OBS"] = date
    for key, value in cards.items():
        header[key.replace("_", "-") if key == "DATE_OBS" else key] = value
    if compress:
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=header)]).writeto(path)
    else:
        fits.PrimaryHDU(data, header=header).writeto(path)
    return path


def write_binned(path, imagetyp, exptime, filt="R"):
    """A 2x2-binned frame, a quarter of the helpers' usual size."""
    return write_raw(path, imagetyp, exptime, shape=(20, 24), filt=filt, XBINNING=2, YBINNING=2)


def write_night(
    raw_dir,
    night,
    date,
    bias=3,
    darks=(30.0,),
    flats=("R",),
    lights=(("R", 30.0),),
    shape=(40, 48),
    n=3,
):
    """A small complete (or partial) night; returns the night folder."""
    folder = Path(raw_dir) / night
    for i in range(bias):
        write_raw(folder / f"bias_{i}.fits", "Bias Frame", 0.0, shape, date=date)
    for t in darks:
        for i in range(n):
            write_raw(folder / f"dark_{t:g}s_{i}.fits", "Dark Frame", t, shape, date=date)
    for f in flats:
        for i in range(n):
            write_raw(folder / f"flat_{f}_{i}.fits", "Flat Field", 2.0, shape, 20000, f, date=date)
    for f, t in lights:
        for i in range(n):
            write_raw(
                folder / f"light_{f}_{t:g}s_{i}.fits",
                "Light Frame",
                t,
                shape,
                1200,
                f,
                date=date,
                OBJECT="M 67",
            )
    return folder


# --- small simulated nights that run through the whole workflow quickly ---

SMALL_CAMERA_SIZE = 192


def small_night(name, start, pointing):
    """A night of a 192x192 camera: 3 bias, 3 darks, 3 R flats, 3 R lights."""
    from ccdreduce.simulate import NightSpec

    return NightSpec(
        name,
        "maxim",
        start,
        pointing,
        n_bias=3,
        darks={30.0: 3},
        flats={"R": (2.0, 3)},
        lights={("R", 30.0): 3},
    )


def small_tree(folder, nights=(("2025-03-01", (0.0, 0.0)), ("2025-03-02", (12.0, -8.0)))):
    """Simulated small nights under folder/raw; returns (sky, raw, results,
    the --config arguments)."""
    from ccdreduce.simulate import Camera, Sky, simulate_night

    camera = Camera(ny=SMALL_CAMERA_SIZE, nx=SMALL_CAMERA_SIZE, overscan=8)
    sky = Sky(camera, seed=7)
    raw, results = Path(folder) / "raw", Path(folder) / "results"
    for name, pointing in nights:
        simulate_night(sky, small_night(name, f"{name}T20:00:00", pointing), raw)
    config = [
        "--config",
        f"raw_dir={raw}",
        f"results_dir={results}",
        f"trim_section=[1:{camera.nx},1:{camera.ny}]",
    ]
    return sky, raw, results, config
