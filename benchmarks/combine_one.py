"""One whole combine, as a separate process: start, read, combine, write.

Usage: python benchmarks/combine_one.py TOOL METHOD LIST OUT [MEMORY_MB]
TOOL is ours, ours_unc (the same with each file's UNCERT read and sigma
propagated and written; NaN at masked pixels), ccdproc or numpy; LIST a file
of FITS paths, one a line. METHOD also ccdclip (ours_unc only).
Prints the peak resident memory (MB) of this process.
"""

import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def main(tool, method, listing, out, memory_mb=2048):
    paths = Path(listing).read_text().split()
    # the same algorithm on every side: 3/3 sigma, median centre, std width, one pass
    sigclip = {
        "sigma_lower": 3.0,
        "sigma_upper": 3.0,
        "maxiters": 1,
        "cenfunc": "median",
        "stdfunc": "std",
    }
    if tool in ("ours", "ours_unc"):  # the engine as a tool: numpy only, no astropy import
        from ccdreduce import fastfits
        from ccdreduce.combine import combine_files

        params = {
            "sigclip": sigclip,
            "minmax": {"n_low": 3, "n_high": 3},
            "ccdclip": {"sigma_lower": 3.0, "sigma_upper": 3.0, "maxiters": 1},
        }.get(method, {})
        image, _, sigma = combine_files(
            paths,
            method,
            memory_mb=int(memory_mb),
            threads=2,
            uncertainty=tool == "ours_unc",
            **params,
        )
        cards = [("NCOMBINE", len(paths)), ("COMBMETH", method)]
        fastfits.write_image(out, image, cards)
        if sigma is not None:
            fastfits.write_image(str(out).replace(".fits", "_sigma.fits"), sigma, cards)
    elif tool == "ccdproc":
        import numpy as np
        from astropy.nddata import CCDData
        from ccdproc import combine

        frames = [CCDData.read(p, unit="adu") for p in paths]
        kwargs = {
            "method": "median" if method == "median" else "average",
            "mem_limit": 16e9,
        }
        if method == "sigclip":
            kwargs.update(
                sigma_clip=True,
                sigma_clip_low_thresh=3,
                sigma_clip_high_thresh=3,
                sigma_clip_func=np.ma.median,
                sigma_clip_dev_func=np.ma.std,
            )
        if method == "minmax":
            kwargs.update(clip_extrema=True, nlow=3, nhigh=3)
        combine(frames, **kwargs).write(out, overwrite=True)
    elif tool == "numpy":  # the floor: everything in memory, numpy's own median
        import numpy as np
        from astropy.io import fits

        cube = np.stack([fits.getdata(p).astype(np.float32) for p in paths])
        image = {"median": np.median, "average": np.mean}[method](cube, axis=0)
        fits.PrimaryHDU(image.astype(np.float32)).writeto(out, overwrite=True)
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
