"""Rule combine_stack: one combined image of a stack (average, median,
min-max or sigma clipping), with its UNCERT (propagated by the combine from
the registered frames' UNCERT), MASK (no valid input) and COVERAGE (frames
per pixel) extensions, so CCDData.read gives unit, mask and uncertainty; and
its zscale PNG, drawn from the image in memory (a job of its own per stack
cost more in start-up and re-reading than the drawing)."""

import numpy as np
from astropy.table import Table

from ccdreduce import provenance, runlog, stacking
from ccdreduce.combine import CombineSpec, combine_files
from ccdreduce.fitsfile import read_header
from ccdreduce.layout import frame_id
from ccdreduce.preview import save_preview, stack_title

log = runlog.start(snakemake)
group, method, memory_mb = (
    snakemake.params.group,
    snakemake.wildcards.method,
    snakemake.params.memory_mb,
)
table = Table.read(snakemake.input.table, format="ascii.ecsv")
used = table[np.asarray(table["used"], dtype=bool)]
registered = stacking.registered_paths(snakemake.params.frames)
paths = [registered[frame_id(row["night"], row["stem"])] for row in used]
spec = CombineSpec.from_config(snakemake.params.combine, "stack", f"stacking.combine.{method}")
mode = spec.weights  # 'none', 'noise' or 'seeing' (CombineSpec reads old booleans)
weights = stacking.frame_weights(used, mode)
log.info(
    "%s: %s of %d frames, %s, memory cap %d MB",
    group,
    spec.method,
    len(paths),
    spec.params(),
    memory_mb,
)
# coverage varies at the edges, where the frames' shifts leave gaps
combine_notes = spec.notes(len(paths), varying=True) + [stacking.weights_note(weights, mode)]
for note in combine_notes:
    log.info("%s: %s", group, note)
image, coverage, sigma = combine_files(
    paths,
    spec,
    scales=np.asarray(used["scale"], dtype=float),
    weights=weights,
    uncertainty=True,  # every registered frame carries its UNCERT
    memory_mb=memory_mb,
    threads=snakemake.threads,
    progress=lambda done, total: log.info("combined rows %d/%d", done, total),
)
# each input's calibration (CALSTATE; "calibrated" before the card existed)
calstates = [read_header(path).get("CALSTATE", "calibrated") for path in paths]
header, notes = provenance.stack_header(
    read_header(registered[table.meta["reference"]]),
    table,
    stacking.reference_row(table)["exposure"],
    spec,
    snakemake.config,
    combine_notes,
    weights=weights,
    calstates=calstates,
)
for note in notes:
    log.warning("%s: %s", group, note)
if header.get("CALSTATE", "calibrated") != "calibrated":
    log.warning("%s: %s", group, provenance.calibration_of_inputs(calstates)[1])
log.info(
    "%s: %d frames, %s to %s (TT), total exposure %.0f s",
    *(group, len(used), header.get("DATE-BEG", "?"), header.get("DATE-END", "?"), header["TOTEXP"]),
)
stacking.write_stack(snakemake.output.stack, image, coverage, sigma, header)
log.info(
    "wrote %s (median %.3f, coverage %d-%d)",
    *(snakemake.output.stack, float(np.nanmedian(image)), int(coverage.min()), int(coverage.max())),
)
# the pixels as written (float32)
save_preview(
    np.asarray(image, dtype=np.float32),
    snakemake.output.preview,
    stack_title(group, method, header),
)
log.info("wrote %s", snakemake.output.preview)
