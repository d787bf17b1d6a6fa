"""Rule calibrate: one night's science frames -> trimmed, bias- and
dark-subtracted, flat-fielded float32 frames, and the catalogue of each
frame's stars.

One job per night, not per frame: a frame takes a fraction of a second, while
each job costs a Python start-up (~0.4 s) and ~2 ms of every later dry run
(10,000 frames would make the dry run of an up-to-date archive 15 s). The
frames of the night are calibrated by `threads` workers.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ccdreduce import catalog, provenance, runlog, times
from ccdreduce.calibrate import Masters, Settings, calibrate_frame
from ccdreduce.fitsfile import write_image

log = runlog.start(snakemake)
frames = snakemake.params.frames
settings = Settings(**snakemake.params.settings)
masters = Masters(snakemake.config["results_dir"])
time_settings = snakemake.params.times
if note := times.use_iers(time_settings["iers"]):
    log.warning(note)
calibrated_dir, catalog_dir = Path(snakemake.output.calibrated), Path(snakemake.output.catalogs)
calibrated_dir.mkdir(parents=True, exist_ok=True)
catalog_dir.mkdir(parents=True, exist_ok=True)
log.info(
    "calibrating %d frames of %s with %d threads",
    len(frames),
    snakemake.wildcards.night,
    snakemake.threads,
)


def calibrate(frame):
    """Calibrate, write, catalogue one frame; returns its log lines."""
    recipe = frame["recipe"]
    lines = [f"{frame['raw']}: policy: {'; '.join(recipe['notes'])}"]
    result = calibrate_frame(frame["path"], recipe, settings, masters)
    for key, value in frame["overrides"].items():
        result.header[key] = value
        result.header.add_history(f"{key} = {value!r} from header_overrides in config")
    result.header["BUNIT"] = ("adu", "flat-fielded counts")
    lines += [f"{frame['raw']}: {line}" for line in result.history]
    # when the light was collected, on TT (and BJD_TDB where site and target are known)
    cards, notes = times.frame_cards(
        frame["date_obs"],
        result.header,
        frame["exposure"],
        time_settings["date_obs_is"],
        time_settings["site"],
        night=snakemake.wildcards.night,
    )
    lines += [f"{frame['raw']}: {note}" for note in notes]
    provenance.stamp(
        result.header,
        "calibrate",
        inputs=[frame["raw"]],
        recipe=recipe,
        cards=cards,
        config=snakemake.config,
        notes=result.history,
    )
    write_image(
        calibrated_dir / f"{frame['stem']}.fits", result.data, result.header, mask=result.mask
    )
    # the catalogue is measured on the pixels exactly as written (float32)
    stars, meta = catalog.measure(
        np.asarray(result.data, dtype=np.float32),
        result.mask,
        frame["id"],
        frame["exposure"],
        snakemake.params.detect_sigma,
    )
    catalog.write(catalog_dir / f"{frame['stem']}.ecsv", stars, meta)
    lines.append(
        f"{frame['raw']}: {meta['n_stars']} stars, FWHM {meta['fwhm']:.2f} px, "
        f"sky {meta['sky']:.1f} ADU, noise {meta['noise']:.2f} ADU"
    )
    return lines


with ThreadPoolExecutor(max_workers=snakemake.threads) as pool:
    for done, (frame, lines) in enumerate(
        zip(frames, pool.map(calibrate, frames), strict=True), start=1
    ):
        for line in lines:
            log.info(line)
        if frame["recipe"]["uncorrected"]:
            log.warning(
                "%s: left uncorrected: %s", frame["raw"], ", ".join(frame["recipe"]["uncorrected"])
            )
        log.info("calibrated %d/%d", done, len(frames))
log.info(
    "wrote %d frames to %s and their catalogues to %s", len(frames), calibrated_dir, catalog_dir
)
