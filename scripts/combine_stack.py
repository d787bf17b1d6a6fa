"""Rule combine_stack: one combined image of a stack (average, median,
min-max or sigma clipping), with the coverage map as a second HDU."""

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ccdreduce import provenance, runlog, stacking, times
from ccdreduce.combine import CombineSpec, combine_files
from ccdreduce.fitsfile import write_image

log = runlog.start(snakemake)
table = Table.read(snakemake.input.table, format="ascii.ecsv")
used = table[np.asarray(table["used"], dtype=bool)]
group = snakemake.params.group
paths = [
    stacking.registered_path(snakemake.params.registered, group, f"{row['night']}/{row['stem']}")
    for row in used
]
method = snakemake.wildcards.method
spec = CombineSpec.from_config(snakemake.params.combine, "stack", f"stacking.combine.{method}")
weighted = spec.weights
log.info(
    "%s: %s of %d frames, %s, memory cap %d MB",
    group,
    spec.method,
    len(paths),
    spec.params(),
    snakemake.params.memory_mb,
)
# coverage varies at the edges, where the frames' shifts leave gaps
combine_notes = spec.notes(len(paths), varying=True)
for note in combine_notes:
    log.info("%s: %s", group, note)


def progress(done, total):
    log.info("combined rows %d/%d", done, total)


image, coverage = combine_files(
    paths,
    spec,
    scales=np.asarray(used["scale"], dtype=float),
    weights=np.asarray(used["weight"], dtype=float) if weighted else None,
    memory_mb=snakemake.params.memory_mb,
    threads=snakemake.threads,
    progress=progress,
)
reference = stacking.registered_path(snakemake.params.registered, group, table.meta["reference"])
header = fits.getheader(reference)
# the reference lends its pixel grid, flux scale and site keywords; what
# belonged to that one frame goes (times, shift, sky, inputs)
for key in stacking.SINGLE_FRAME_CARDS:
    header.remove(key, ignore_missing=True)
header.remove("HISTORY", ignore_missing=True, remove_all=True)
spans = [{name: row[name] for name in times.SPAN_COLUMNS} for row in used]
cards, notes = times.combined_cards(spans, used["exposure"])
for note in notes:
    log.warning("%s: %s", group, note)
reference_row = stacking.reference_row(table)
cards["EXPTIME"] = (
    float(reference_row["exposure"]),
    "effective exposure, s: the stack is scaled to REFFRAME",
)
if "EXPOSURE" in header:  # cameras that write both must not disagree with EXPTIME
    cards["EXPOSURE"] = cards["EXPTIME"]
cards |= {
    "COMBMETH": (spec.method, "combine method"),
    "WEIGHTED": (weighted, "inverse-variance weights"),
    "REFFRAME": (table.meta["reference"], "reference frame: pixel grid and flux scale"),
    "BUNIT": ("adu", "sky-subtracted, scaled to the reference frame"),
}
provenance.stamp(
    header,
    f"stack_{spec.method}",
    inputs=list(used["file"]),
    combined=True,
    scales=list(used["scale"]),
    cards=cards,
    params=spec.params() | {"weights": weighted},
    config=snakemake.config,
    notes=combine_notes
    + notes
    + ["each input's calibration and shift: its registered frame and this stack's frames.ecsv"],
)
log.info(
    "%s: %d frames, %s to %s (TT), total exposure %.0f s",
    group,
    len(used),
    header.get("DATE-BEG", "?"),
    header.get("DATE-END", "?"),
    header["TOTEXP"],
)
write_image(snakemake.output[0], image, header, extensions={"COVERAGE": coverage})
log.info(
    "wrote %s (median %.3f, coverage %d-%d)",
    snakemake.output[0],
    float(np.nanmedian(image)),
    int(coverage.min()),
    int(coverage.max()),
)
