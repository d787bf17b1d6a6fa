"""Rule star_catalog: find the stars of one calibrated frame."""

from ccdreduce import catalog, runlog
from ccdreduce.fitsfile import MASK_SATURATED, read_product
from ccdreduce.stars import detect, median_fwhm

log = runlog.start(snakemake)
data, header, mask = read_product(snakemake.input[0])
saturated = None if mask is None else (mask & MASK_SATURATED) > 0
stars, sky = detect(data, saturated, threshold=snakemake.params.detect_sigma)
fwhm = median_fwhm(stars)
catalog.write(
    snakemake.output[0],
    stars,
    {
        "frame": snakemake.params.frame,
        "exposure": float(header.get("EXPTIME", header.get("EXPOSURE", float("nan")))),
        "sky": sky.level,
        "noise": sky.noise,
        "fwhm": fwhm,
        "n_stars": len(stars["x"]),
        "shape": list(data.shape),
    },
)
log.info(
    "%s: %d stars, FWHM %.2f px, sky %.1f ADU, noise %.2f ADU",
    snakemake.params.frame,
    len(stars["x"]),
    fwhm,
    sky.level,
    sky.noise,
)
