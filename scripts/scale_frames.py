"""Rule scale_frames: the stack's frame table. Scale factors from aperture
photometry of the reference's bright, isolated, unsaturated stars; frames
that failed registration or are clouded are marked unused, with the reason.
"""

import json

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ccdreduce import catalog, plots, runlog, stacking, times

log = runlog.start(snakemake)
params = snakemake.params
cfg = params.scaling
reference = json.loads(open(snakemake.input.reference).read())
ref_stars = {k: np.asarray(v) for k, v in reference["stars"].items()}
ref_stars["saturated"] = ref_stars["saturated"].astype(bool)
fwhm = float(reference["fwhm"])
radius = cfg["aperture_fwhm"] * fwhm
chosen = stacking.select_photometry_stars(
    ref_stars, tuple(reference["shape"]), fwhm, cfg["max_peak_adu"], cfg["max_stars"]
)
xs, ys = ref_stars["x"][chosen], ref_stars["y"][chosen]
log.info(
    "%d photometry stars; apertures %.1f x each frame's FWHM (%.2f px on the reference)",
    len(chosen),
    cfg["aperture_fwhm"],
    radius,
)

rows, fluxes = [], {}
for info in params.frames:
    _, meta = catalog.read(info["catalog"])
    with fits.open(info["registered"], memmap=True) as hdul:
        header = hdul[0].header
        row = {
            "night": info["night"],
            "stem": info["stem"],
            "file": info["file"],
            "exposure": float(meta["exposure"]),
            "dx": float(header.get("DX", np.nan)),
            "dy": float(header.get("DY", np.nan)),
            "dx_measured": float(header.get("DXMEAS", np.nan)),
            "dy_measured": float(header.get("DYMEAS", np.nan)),
            "n_match": int(header.get("NMATCH", 0)),
            "match_fraction": float(header.get("REGFRAC", np.nan)),
            "rotation": float(header.get("REGROT", np.nan)),
            "fwhm": float(meta["fwhm"]),
            "sky": float(header.get("SKYSUB", np.nan)),  # unknown on an all-NaN frame
            "noise": float(meta["noise"]),
            "reason": header.get("REGNOTE", ""),
        } | times.span_of(header)
        if header["REGSTAT"] == "ok" and len(chosen):
            # each frame's aperture in units of its own FWHM: the same share of
            # every star's light whatever the seeing, so ratios are unbiased
            fluxes[info["id"]] = stacking.aperture_fluxes(
                hdul[0].data, xs, ys, cfg["aperture_fwhm"] * row["fwhm"]
            )
    rows.append(row)

ref_flux = fluxes.get(reference["reference"])
in_all = np.all([np.isfinite(f) for f in fluxes.values()], axis=0) if fluxes else np.zeros(0, bool)
use_stars = in_all if in_all.sum() >= cfg["min_stars"] else None
if use_stars is None and len(chosen):
    log.warning(
        "only %d photometry stars are inside every frame; each frame uses the stars it has",
        int(in_all.sum()),
    )
ref_exposure = float(reference["exposure"])
for row, info in zip(rows, params.frames, strict=True):
    flux = fluxes.get(info["id"])
    if flux is None:  # not registered, or no stars to measure
        row.update(
            scale=np.nan,
            scale_err=np.nan,
            n_scale_stars=0,
            transparency=np.nan,
            weight=0.0,
            used=False,
        )
        row["reason"] = row["reason"] or "no photometry stars in the reference"
        continue
    mask = use_stars if use_stars is not None else np.isfinite(flux) & np.isfinite(ref_flux)
    row.update(
        stacking.judge_frame(
            ref_flux[mask], flux[mask], row["exposure"], ref_exposure, row["noise"], cfg
        )
    )
for row in rows:
    log.info(
        "%s/%s: %s dx %+.2f dy %+.2f scale %.4f +- %.4f transparency %.3f FWHM %.2f %s",
        row["night"],
        row["stem"],
        "used" if row["used"] else "EXCLUDED",
        row["dx_measured"],
        row["dy_measured"],
        row["scale"],
        row["scale_err"],
        row["transparency"],
        row["fwhm"],
        row["reason"],
    )
names = [
    "night",
    "file",
    "stem",
    "exposure",
    *times.SPAN_COLUMNS,
    "dx",
    "dy",
    "dx_measured",
    "dy_measured",
    "n_match",
    "match_fraction",
    "rotation",
    "scale",
    "scale_err",
    "n_scale_stars",
    "transparency",
    "fwhm",
    "sky",
    "noise",
    "weight",
    "used",
    "reason",
]
table = Table(rows=[[r[n] for n in names] for r in rows], names=names)
for name, unit in (("exposure", "s"), ("mjd_avg_tt", "d"), ("bjd_tdb", "d"), ("rotation", "deg")):
    table[name].unit = unit
table.meta.update(
    {
        "reference": reference["reference"],
        "reference_how": reference["how"],
        "aperture_radius": radius,
        "photometry_stars_x": [float(v) for v in xs],
        "photometry_stars_y": [float(v) for v in ys],
        "comments": [
            "One row per candidate frame. A star at (x, y) in the calibrated frame lands at",
            "(x + dx, y + dy) in the stack; match_fraction is the share of the reference's",
            "bright stars matched, rotation (deg) the measured turn, not applied: a frame",
            "rotated beyond stacking.registration.max_corner_shift is left out.",
            "scale multiplies the sky-subtracted frame to match",
            "the reference; transparency is star flux per second against the reference.",
            "date_beg_tt, date_end_tt (ISO) and mjd_avg_tt (mid-exposure) are on TT; bjd_tdb the",
            "barycentric Julian date of mid-exposure on TDB; time_note what limits them.",
        ],
    }
)
table.write(snakemake.output.table, format="ascii.ecsv", overwrite=True)
plots.frames_plot(
    table,
    snakemake.output.plot,
    f"{params.group}: {int(table['used'].sum())} "
    f"of {len(table)} frames used, reference {reference['reference']}",
)
if not table["used"].any():
    # Snakemake deletes a failed job's outputs, the table included: point to
    # the log, which it keeps and which holds every frame's line and reason
    message = (
        f"{params.group}: no frame can be stacked; each frame's reason is in "
        f"{snakemake.log[0]} (lines 'EXCLUDED')"
    )
    log.error(message)
    raise SystemExit(message)
