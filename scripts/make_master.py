"""Rules master_bias, master_dark, master_flat: combine one night's frames,
and draw the master (a zscale PNG for people and the report)."""

from pathlib import Path

from ccdreduce import masters, provenance, runlog, times
from ccdreduce.calibrate import Masters, Settings
from ccdreduce.combine import CombineSpec
from ccdreduce.fitsfile import write_image
from ccdreduce.preview import save_preview

log = runlog.start(snakemake)
kind, frames = snakemake.params.kind, snakemake.params.frames
spec = CombineSpec.from_config(snakemake.params.combine, "master", f"calibration.combine.{kind}")
log.info("master %s from %d frames -> %s", kind, len(frames), snakemake.output.master)
policies = sorted({"; ".join(frame["recipe"]["notes"]) for frame in frames})
for policy in policies:
    log.info("policy: %s", policy)
master = masters.build_master(
    kind,
    [(frame["path"], frame["recipe"]) for frame in frames],
    Settings(**snakemake.params.settings),
    spec,
    Masters(snakemake.config["results_dir"]),
)
# when the inputs were taken: first start to last end, on TT
cards, notes, frame_notes = times.master_cards(
    frames, snakemake.params.times["date_obs_is"], snakemake.wildcards.night
)
for note in frame_notes:
    log.warning(note)
image, header = master.image, master.header
notes = list(notes) + master.notes  # what the inputs measured (read noise, gain)
provenance.master_header(header, kind, frames, spec, cards, snakemake.config, notes)
write_image(snakemake.output.master, image, header, mask=master.mask, uncertainty=master.sigma)
log.info("wrote %s (median %.4g)", snakemake.output.master, float(masters.finite_median(image)))
master = Path(snakemake.output.master)
save_preview(image, snakemake.output.preview, f"{master.parent.name} / {master.name}")
