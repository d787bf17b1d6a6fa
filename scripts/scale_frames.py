"""Rule scale_frames: the stack's frame table. Scale factors from aperture
photometry of the reference's bright, isolated, unsaturated stars; frames
that failed registration or are clouded are marked unused, with the reason.
"""

from ccdreduce import plots, runlog, scaling, stacking

log = runlog.start(snakemake)
group = snakemake.params.group
reference = stacking.read_reference(snakemake.input.reference)
rows, photometry = scaling.measure_frames(
    snakemake.params.frames, reference, snakemake.params.scaling, log, snakemake.params.select
)
for row in rows:
    log.info(scaling.log_line(row))
table = scaling.frames_table(rows, reference, photometry)
table.write(snakemake.output.table, format="ascii.ecsv", overwrite=True)
plots.frames_plot(
    table,
    snakemake.output.plot,
    f"{group}: {int(table['used'].sum())} "
    f"of {len(table)} frames used, reference {reference['reference']}",
)
if not table["used"].any():
    # Snakemake deletes a failed job's outputs, the table included: point to
    # the log, which it keeps and which holds every frame's line and reason
    message = (
        f"{group}: no frame can be stacked; each frame's reason is in "
        f"{snakemake.log[0]} (lines 'EXCLUDED')"
    )
    log.error(message)
    raise SystemExit(message)
