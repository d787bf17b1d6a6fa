"""The per-night frame table: every file of a night, what it is, whether it
was used, and which masters calibrated it (results/calib/<night>/frames.ecsv).
"""

from . import layout

COLUMNS = (
    "file",
    "type",
    "filter",
    "exposure",
    "date_obs",
    "object",
    "shape",
    "binning",
    "status",
    "reason",
    "bias",
    "dark",
    "dark_scale",
    "flat",
    "policy",
    "uncorrected",
    "output",
    "time_note",
)


def _blank():
    return {name: "" for name in COLUMNS} | {"exposure": float("nan"), "dark_scale": float("nan")}


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
    table["exposure"].unit = "s"
    table.meta["comments"] = [
        "Frames of one night: status is used, excluded (with the reason) or ignored.",
        "bias/dark/flat name the masters applied; dark_scale the factor on the dark.",
        "time_note: what limits the frame's times (UT1 predicted, camera clock, ...).",
    ]
    table.write(path, format="ascii.ecsv", overwrite=True)
    return table
