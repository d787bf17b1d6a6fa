"""Rules master_bias, master_dark, master_flat: combine one night's frames,
and draw the master (a zscale PNG for people and the report)."""

from pathlib import Path

from ccdreduce import masters, provenance, runlog
from ccdreduce.calibrate import Masters, Settings
from ccdreduce.fitsfile import write_image
from ccdreduce.preview import save_preview

log = runlog.start(snakemake)
kind = snakemake.params.kind
frames = snakemake.params.frames
log.info("master %s from %d frames -> %s", kind, len(frames), snakemake.output.master)
policies = sorted({"; ".join(recipe["notes"]) for _, _, recipe in frames})
for policy in policies:
    log.info("policy: %s", policy)

image, header, stats, _ = masters.make_master(
    kind,
    [(path, recipe) for path, _, recipe in frames],
    Settings(**snakemake.params.settings),
    snakemake.params.combine,
    Masters(snakemake.config["results_dir"]),
)
first = frames[0][2]
if kind == "flat":
    header.remove("BUNIT", ignore_missing=True)
if kind == "dark":
    header["DARKBIAS"] = (first["dark_includes_bias"], "T: this dark still holds the bias")
provenance.stamp(
    header,
    f"master_{kind}",
    inputs=[relpath for _, relpath, _ in frames],
    combined=True,
    recipe=first if kind != "bias" else None,
    params=snakemake.params.combine,
    config=snakemake.config,
    notes=[f"inputs calibrated as: {p}" for p in policies if p],
)
write_image(snakemake.output.master, image, header)
log.info("wrote %s (median %.4g)", snakemake.output.master, float(masters.finite_median(image)))
master = Path(snakemake.output.master)
save_preview(image, snakemake.output.preview, f"{master.parent.name} / {master.name}")
