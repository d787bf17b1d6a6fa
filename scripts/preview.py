"""Rule master_preview: a zscale PNG of a master frame."""

from pathlib import Path

from ccdreduce import runlog
from ccdreduce.fitsfile import read_product
from ccdreduce.preview import save_preview

log = runlog.start(snakemake)
data, header, _ = read_product(snakemake.input[0])
path = Path(snakemake.input[0])
title = f"{path.parent.name} / {path.name}"
if "stacks" in path.parts:  # results/stacks/<object>/<filter>/<method>.fits
    title = "/".join(path.parts[path.parts.index("stacks") + 1 :])
if header.get("NCOMBINE"):
    title += f" ({header['NCOMBINE']} frames, {header.get('PROCSTEP', '')})"
save_preview(data, snakemake.output[0], title)
log.info("wrote %s", snakemake.output[0])
