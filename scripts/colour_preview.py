"""Rule colour_preview: the colour PNG of a colour group's stacks, from its
R, G and B channel stacks of one method (ccdreduce.colourpreview.save_colour_preview)."""

from ccdreduce import runlog
from ccdreduce.colourpreview import save_colour_preview
from ccdreduce.fitsfile import read_product

log = runlog.start(snakemake)
channels, header = {}, None
for channel, path in zip(("R", "G", "B"), snakemake.input, strict=True):
    channels[channel], header, _ = read_product(path)
title = f"{snakemake.wildcards.group} / {snakemake.wildcards.method} (R, G, B)"
if header.get("NCOMBINE"):
    title += f" ({header['NCOMBINE']} frames, {header.get('TOTEXP', 0):g} s)"
balance = save_colour_preview(channels, snakemake.output[0], title)
for channel, (sky, factor) in balance.items():
    log.info("%s: sky %.2f ADU subtracted, divided by %.4f (white balance)", channel, sky, factor)
log.info("wrote %s", snakemake.output[0])
