"""Rule calibrate: one night's science frames -> trimmed, bias- and
dark-subtracted, flat-fielded float32 frames, and the catalogue of each
frame's stars (ccdreduce.science).

One job per night, not per frame: a frame takes a fraction of a second, while
each job costs a Python start-up (~0.4 s) and ~2 ms of every later dry run
(10,000 frames would make the dry run of an up-to-date archive 15 s). The
frames of the night are calibrated by `threads` workers.
"""

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from ccdreduce import runlog, science, times
from ccdreduce.calibrate import Masters, Settings

log = runlog.start(snakemake)
frames = snakemake.params.frames
if note := times.use_iers(snakemake.params.times["iers"]):
    log.warning(note)
night = science.NightSettings(
    settings=Settings(**snakemake.params.settings),
    masters=Masters(snakemake.config["results_dir"]),
    times=snakemake.params.times,
    detect_sigma=snakemake.params.detect_sigma,
    night=snakemake.wildcards.night,
    config=snakemake.config,
)
for folder in (snakemake.output.calibrated, snakemake.output.catalogs):
    Path(folder).mkdir(parents=True, exist_ok=True)
log.info("calibrating %d frames of %s with %d threads", len(frames), night.night, snakemake.threads)
work = partial(science.calibrate_and_catalogue, night=night)
with ThreadPoolExecutor(max_workers=snakemake.threads) as pool:
    for done, (lines, warnings) in enumerate(pool.map(work, frames), start=1):
        for line in lines:
            log.info(line)
        for line in warnings:
            log.warning(line)
        log.info("calibrated %d/%d", done, len(frames))
log.info(
    "wrote %d frames to %s and their catalogues to %s",
    len(frames),
    snakemake.output.calibrated,
    snakemake.output.catalogs,
)
