"""Rule calibrate: one night's science frames -> trimmed, bias- and
dark-subtracted, flat-fielded float32 frames, and the catalogue of each
frame's stars (ccdreduce.science). First the night's bad-pixel map, from
the master darks and flats its frames use (ccdreduce.badpixels): made here
rather than by a job of its own, it costs no job and no dry-run time.

One job per night, not per frame: a frame takes a fraction of a second, while
each job costs a Python start-up (~0.4 s) and ~2 ms of every later dry run
(10,000 frames would make the dry run of an up-to-date archive 15 s). The
frames of the night are calibrated by `threads` workers.
"""

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from astropy.io import fits

from ccdreduce import badpixels, provenance, runlog, science, times
from ccdreduce.calibrate import Masters, Settings
from ccdreduce.fitsfile import write_image

log = runlog.start(snakemake)
frames = snakemake.params.frames
if note := times.use_iers(snakemake.params.times["iers"]):
    log.warning(note)
masters = Masters(snakemake.config["results_dir"])
bpm, said = badpixels.night_map(
    [frame["recipe"] for frame in frames], masters, snakemake.params.bad_pixels
)
for line in said:
    log.info(line)
header = fits.Header()
# no time of its own (its masters have theirs); TT like every product's
header["TIMESYS"] = ("TT", "time scale of any time keyword")
header.update(badpixels.header_cards())
provenance.stamp(header, "bad_pixels", config=snakemake.config, notes=said)
written = bpm if bpm is not None else np.zeros((1, 1), np.uint8)
write_image(snakemake.output.bad_pixels, written.astype(np.float32), header)
badpixels.save_preview(
    written, snakemake.output.bad_pixels_preview, f"{snakemake.wildcards.night} / bad pixels"
)
night = science.NightSettings(
    settings=Settings(**snakemake.params.settings),
    masters=masters,
    times=snakemake.params.times,
    detect_sigma=snakemake.params.detect_sigma,
    night=snakemake.wildcards.night,
    config=snakemake.config,
    noise=snakemake.params.noise,
    bad_pixels=bpm,
    cosmic_rays=snakemake.params.cosmic_rays,
)
for folder in (snakemake.output.calibrated, snakemake.output.catalogs):
    Path(folder).mkdir(parents=True, exist_ok=True)
log.info("calibrating %d frames of %s with %d threads", len(frames), night.night, snakemake.threads)
timed = science.frame_times(frames, night)  # the night's times together: ~1 ms a frame
work = partial(science.calibrate_and_catalogue, night=night)
with ThreadPoolExecutor(max_workers=snakemake.threads) as pool:
    jobs = [
        pool.submit(work, frame, timed=times_of)
        for frame, times_of in zip(frames, timed, strict=True)
    ]
    for done, job in enumerate(jobs, start=1):
        lines, warnings = job.result()
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
