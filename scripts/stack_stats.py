"""Rule stack_stats: the lab's comparison table of a stack's methods.

For the reference frame and each combined image: the median pixel value,
the standard deviation of the sky away from stars, the aperture sums of the
photometry stars, and each sum's ratio to the reference frame's
(scaling.method_comparison).
"""

from astropy.table import Table

from ccdreduce import runlog, scaling, stacking
from ccdreduce.fitsfile import read_product

log = runlog.start(snakemake)
frames = Table.read(snakemake.input.table, format="ascii.ecsv")
registered = stacking.registered_paths(snakemake.params.frames)
paths = [("reference", registered[frames.meta["reference"]])]
paths += list(zip(snakemake.params.methods, snakemake.input.stacks, strict=True))
table = scaling.method_comparison(frames, ((name, read_product(p)[0]) for name, p in paths))
for row in table:
    log.info(
        "%-10s median %9.3f sky std %8.3f flux ratio to reference %.4f",
        row["image"],
        row["median"],
        row["sky_std"],
        row["median_ratio"],
    )
table.write(snakemake.output[0], format="ascii.ecsv", overwrite=True)
