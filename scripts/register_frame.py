"""Rule register: one calibrated frame shifted onto its stack's reference
grid, sky subtracted. A frame that cannot be registered is written as NaN
with the reason in its header, and the stack leaves it out."""

import json

import numpy as np

from ccdreduce import catalog, provenance, register, runlog
from ccdreduce.fitsfile import read_product, write_image
from ccdreduce.stars import sky_model

log = runlog.start(snakemake)
params = snakemake.params
reference = json.loads(open(snakemake.input.reference).read())
data, header, mask = read_product(snakemake.input.calibrated)
data = np.asarray(data, dtype=np.float32)
stars, meta = catalog.read(snakemake.input.catalog)
ny, nx = data.shape
status, reason = "ok", ""
if params.frame == reference["reference"]:
    shift = register.Shift(0.0, 0.0, len(stars["x"]), 0.0)
else:
    try:
        shift = register.find_shift(
            catalog.xy(reference["stars"]),
            catalog.xy(stars),
            max_shift=params.max_shift * max(nx, ny),
            min_matches=params.min_matches,
        )
    except register.RegistrationFailed as exc:
        status, reason = "failed", str(exc)
        shift = register.Shift(float("nan"), float("nan"), 0, float("nan"))
if status == "ok":
    sky, sky_level = sky_model(data, params.sky, meta["sky"], params.background_box)
    subpixel = params.resample == "subpixel"
    dx, dy = (shift.dx, shift.dy) if subpixel else (round(shift.dx), round(shift.dy))
    moved = register.shift_image(data - sky, dx, dy, subpixel)
    moved_mask = None if mask is None else register.shift_mask(mask, dx, dy, subpixel)
    log.info(
        "%s: shift measured (%+.3f, %+.3f) px from %d stars (rms %.3f), applied (%+g, %+g); "
        "sky %.1f ADU subtracted",
        params.frame,
        shift.dx,
        shift.dy,
        shift.matches,
        shift.rms,
        dx,
        dy,
        sky_level,
    )
else:
    dx = dy = float("nan")
    sky_level = float(meta["sky"])
    moved = np.full(data.shape, np.nan, dtype=np.float32)
    moved_mask = None if mask is None else np.zeros_like(mask)
    log.warning("%s: not registered: %s", params.frame, reason)
header["REGSTAT"] = (status, "registration: ok or failed")
if reason:
    header["REGNOTE"] = reason
header["REFFRAME"] = (reference["reference"], "reference frame <night>/<stem>")
if status == "ok":  # FITS has no NaN: a failed frame carries only its reason
    header["DX"] = (dx, "applied shift along axis 1, px (x_ref = x + DX)")
    header["DY"] = (dy, "applied shift along axis 2, px")
    header["DXMEAS"] = (shift.dx, "measured shift along axis 1, px")
    header["DYMEAS"] = (shift.dy, "measured shift along axis 2, px")
    header["NMATCH"] = (shift.matches, "stars matched to the reference")
    header["REGRMS"] = (shift.rms, "rms of matched star offsets, px")
header["RESAMPLE"] = (params.resample, "integer or subpixel shift")
header["SKYSUB"] = (sky_level, "sky subtracted, ADU (median of the sky)")
header["SKYMODEL"] = (params.sky, "median or background2d")
provenance.stamp(
    header,
    "register",
    inputs=[header.get("RAWFILE", params.frame)],
    config=snakemake.config,
)
write_image(snakemake.output[0], moved, header, mask=moved_mask)
