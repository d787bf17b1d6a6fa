"""The per-night frame table: every file of a night, what it is, whether it
was used, and which masters calibrated it (results/calib/<night>/frames.ecsv).
"""

from . import layout
from .columns import DATE_OBS, EXPOSURE, FILE, FILTER, OBJECT, TYPE, Column, describe, names

#: Every column: name, unit, description (in the ECSV header).
SCHEMA = (
    FILE,
    TYPE,
    FILTER,
    EXPOSURE,
    DATE_OBS,
    OBJECT,
    Column("shape", None, "frame size in pixels, NAXIS1xNAXIS2"),
    Column("binning", None, "binning, XxY"),
    Column("status", None, "used, excluded (with the reason) or ignored (with the reason)"),
    Column("reason", None, "why the file was excluded or ignored"),
    Column("bias", None, "master bias subtracted, relative to results_dir (none: no bias)"),
    Column("dark", None, "master dark subtracted, relative to results_dir (none: no dark)"),
    Column("dark_scale", None, "factor the dark was multiplied by (NaN: no dark)"),
    Column("flat", None, "master flat divided by, relative to results_dir (none: no flat)"),
    Column("policy", None, "how each master was chosen: own night, borrowed, scaled"),
    Column("uncorrected", None, "what the calibration could not correct"),
    Column(
        "calibration",
        None,
        "science frames: calibrated, partially calibrated (uncorrected names what is "
        "missing) or uncalibrated (no master at all)",
    ),
    Column("output", None, "the product made from the file, relative to results_dir"),
    Column("time_note", None, "what limits the frame's times (UT1 predicted, camera clock, ...)"),
    Column("gain", "electron/adu", "gain of the frame's noise model (NaN: not a calibrated frame)"),
    Column("read_noise", "electron", "read noise of the frame's noise model"),
    Column(
        "noise_source", None, "where gain (+ read noise) came from: header, config, measured, sky"
    ),
)
COLUMNS = names(SCHEMA)


def _blank():
    numbers = ("exposure", "dark_scale", "gain", "read_noise")
    return {name: "" for name in COLUMNS} | {name: float("nan") for name in numbers}


def add_noise_models(table_rows, results_dir):
    """Each calibrated frame's GAIN, RDNOISE, NOISESRC from its header (the
    calibrate job resolved them) into its row (in place)."""
    from pathlib import Path

    from .fitsfile import read_header

    for row in table_rows:
        if row["status"] != "used" or not row["output"].startswith("calibrated/"):
            continue
        header = read_header(Path(results_dir) / row["output"])
        if "NOISESRC" in header:
            row.update(
                gain=header["GAIN"], read_noise=header["RDNOISE"], noise_source=header["NOISESRC"]
            )


def rows(plan, night):
    """One dict per file of the night, in path order (plain values only).

    Masters and outputs are named relative to results_dir.
    """
    recipes = {
        f.relpath: (r, layout.calibrated(None, night, f.stem)) for f, r in plan.lights_of(night)
    }
    for master in plan.masters_of(night):
        for relpath, recipe in master.recipes.items():
            recipes[relpath] = (recipe, master.ref.name)
    table = []
    for frame in plan.nights[night].frames:
        row = _blank()
        row.update(
            file=frame.relpath,
            type=frame.kind or "",
            filter=frame.filter or "",
            exposure=float("nan") if frame.exposure is None else frame.exposure,
            date_obs=frame.date_obs or "",
            object=frame.object or "",
            shape=f"{frame.shape[1]}x{frame.shape[0]}" if frame.shape else "",
            binning=f"{frame.binning[0]}x{frame.binning[1]}",
        )
        if frame.relpath in recipes:
            recipe, output = recipes[frame.relpath]
            data = recipe.as_dict()
            row.update(
                status="used",
                bias=data["bias"] or "none",
                dark=data["dark"] or "none",
                dark_scale=data["dark_scale"] if data["dark"] else float("nan"),
                flat=data["flat"] or "none",
                policy="; ".join(data["notes"]),
                uncorrected=", ".join(data["uncorrected"]),
                calibration=data["state"] if output.startswith("calibrated/") else "",
                output=output,
            )
        else:
            row.update(status="excluded", reason=frame.problem or "not used by any product")
        table.append(row)
    for relpath, reason in plan.nights[night].ignored:
        row = _blank()
        row.update(file=relpath, status="ignored", reason=reason)
        table.append(row)
    return table


def write(table_rows, path):
    from astropy.table import Table

    table = Table(rows=table_rows, names=COLUMNS) if table_rows else Table(names=COLUMNS)
    describe(table, SCHEMA)
    table.meta["comments"] = [
        "Frames of one night: status is used, excluded (with the reason) or ignored.",
        "bias/dark/flat name the masters applied; dark_scale the factor on the dark.",
        "calibration: calibrated, partially calibrated or uncalibrated (science frames).",
        "time_note: what limits the frame's times (UT1 predicted, camera clock, ...).",
    ]
    table.write(path, format="ascii.ecsv", overwrite=True)
    return table
