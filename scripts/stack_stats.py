"""Rule stack_stats: the lab's comparison table of a stack's methods.

For the reference frame and each combined image: the median pixel value,
the standard deviation of the sky away from stars, the aperture sums of the
photometry stars, and each sum's ratio to the reference frame's.
"""

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ccdreduce import runlog, stacking
from ccdreduce.stars import background

log = runlog.start(snakemake)
frames = Table.read(snakemake.input.table, format="ascii.ecsv")
xs = np.asarray(frames.meta["photometry_stars_x"])[:8]
ys = np.asarray(frames.meta["photometry_stars_y"])[:8]
# the stack is as broad as its broadest frames, while the reference is chosen
# the sharpest: an aperture sized to the reference alone would miss a few % of
# the stack's light, so it is sized to the broadest frame used
used_fwhm = np.asarray(frames["fwhm"][frames["used"]], dtype=float)
ref_fwhm = float(stacking.reference_row(frames)["fwhm"])
radius = float(frames.meta["aperture_radius"]) * max(1.0, float(np.max(used_fwhm)) / ref_fwhm)


def source_free(image):
    """The sky away from stars: pixels farther than 4 aperture radii from
    every photometry star and within 5 sigma of the sky, then their spread."""
    level = background(image)
    keep = np.isfinite(image) & (np.abs(image - level.level) < 5 * level.noise)
    yy, xx = np.indices(image.shape)
    for x, y in zip(
        frames.meta["photometry_stars_x"], frames.meta["photometry_stars_y"], strict=True
    ):
        keep[(xx - x) ** 2 + (yy - y) ** 2 < (4 * radius) ** 2] = False
    return float(np.std(image[keep])), level


rows = []
reference_sums = None
reference = stacking.registered_path(
    snakemake.params.registered, snakemake.params.group, frames.meta["reference"]
)
for name, path in [("reference", reference)] + list(
    zip(snakemake.params.methods, snakemake.input.stacks, strict=True)
):
    image = fits.getdata(path).astype(np.float64)
    sums = stacking.aperture_fluxes(image, xs, ys, radius)
    if reference_sums is None:
        reference_sums = sums
    std, level = source_free(image)
    row = {
        "image": name,
        "median": float(np.nanmedian(image)),
        "sky_std": std,
        "sky_noise_mad": level.noise,
    }
    for i, (value, ref) in enumerate(zip(sums, reference_sums, strict=True), start=1):
        row[f"star{i}_sum"] = float(value)
        row[f"star{i}_ratio"] = float(value / ref)
    row["median_ratio"] = float(np.nanmedian(sums / reference_sums))
    rows.append(row)
    log.info(
        "%-10s median %9.3f sky std %8.3f flux ratio to reference %.4f",
        name,
        row["median"],
        std,
        row["median_ratio"],
    )
table = Table(rows=rows)
table.meta["comments"] = [
    "The lab's comparison: median pixel value, sky standard deviation away from stars,",
    "aperture sums of up to 8 photometry stars and their ratio to the reference frame.",
]
table.meta["aperture_radius"] = radius
table.write(snakemake.output[0], format="ascii.ecsv", overwrite=True)
