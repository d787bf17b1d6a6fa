"""Rule combine_stack: one combined image of a stack (average, median,
min-max or sigma clipping), with the coverage map as a second HDU."""

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ccdreduce import provenance, runlog, stacking
from ccdreduce.combine import combine_files
from ccdreduce.fitsfile import write_image

log = runlog.start(snakemake)
settings = dict(snakemake.params.combine)
table = Table.read(snakemake.input.table, format="ascii.ecsv")
used = table[np.asarray(table["used"], dtype=bool)]
group = snakemake.params.group
paths = [
    stacking.registered_path(snakemake.params.registered, group, f"{row['night']}/{row['stem']}")
    for row in used
]
method = settings.pop("method")
weighted = settings.pop("weights", False)
log.info(
    "%s: %s of %d frames, %s, memory cap %d MB",
    group,
    method,
    len(paths),
    settings,
    snakemake.params.memory_mb,
)


def progress(done, total):
    log.info("combined rows %d/%d", done, total)


image, coverage = combine_files(
    paths,
    method,
    scales=np.asarray(used["scale"], dtype=float),
    weights=np.asarray(used["weight"], dtype=float) if weighted else None,
    memory_mb=snakemake.params.memory_mb,
    threads=snakemake.threads,
    progress=progress,
    **settings,
)
reference = stacking.registered_path(snakemake.params.registered, group, table.meta["reference"])
header = fits.getheader(reference)
for key in (
    "DX",
    "DY",
    "DXMEAS",
    "DYMEAS",
    "NMATCH",
    "REGRMS",
    "REGSTAT",
    "RAWFILE",
    "SKYSUB",
    "PROCSTEP",
):
    header.remove(key, ignore_missing=True)
header["COMBMETH"] = (method, "combine method")
header["WEIGHTED"] = (weighted, "inverse-variance weights")
header["REFFRAME"] = (table.meta["reference"], "reference frame: pixel grid and flux scale")
header["BUNIT"] = ("adu", "sky-subtracted, scaled to the reference frame")
provenance.stamp(
    header,
    f"stack_{method}",
    inputs=list(used["file"]),
    combined=True,
    params=settings | {"weights": weighted},
    config=snakemake.config,
)
write_image(snakemake.output[0], image, header, extensions={"COVERAGE": coverage})
log.info(
    "wrote %s (median %.3f, coverage %d-%d)",
    snakemake.output[0],
    float(np.nanmedian(image)),
    int(coverage.min()),
    int(coverage.max()),
)
