"""Rule stack_preview: a zscale PNG of a combined stack."""

from ccdreduce import runlog
from ccdreduce.fitsfile import read_product
from ccdreduce.preview import save_preview

log = runlog.start(snakemake)
data, header, _ = read_product(snakemake.input[0])
title = f"{snakemake.wildcards.group} / {snakemake.wildcards.method}"
if header.get("NCOMBINE"):
    title += f" ({header['NCOMBINE']} frames, {header.get('TOTEXP', 0):g} s"
    if "DATE-BEG" in header:  # when the light was collected, on TT
        start, end = (header[key][:16].replace("T", " ") for key in ("DATE-BEG", "DATE-END"))
        title += f", {start} to {end} TT"
    title += ")"
save_preview(data, snakemake.output[0], title)
log.info("wrote %s", snakemake.output[0])
