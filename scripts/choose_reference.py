"""Rule choose_reference: the frame a stack is registered and scaled to.

Every frame's stars are matched onto each of the sharpest frames'; the
reference comes from the largest group of frames that agree with one
another (consistent matches, no rotation), then by quality: the sharpest of
its clear frames. Star counts come last, as artefacts inflate them.

The choice is remembered in reference.lock beside the output, so that a
stack keeps its reference when nights are added; pin one in config to
change it (stacking.reference), or delete the lock to choose afresh.
"""

import json
from functools import partial
from pathlib import Path

import numpy as np

from ccdreduce import catalog, register, runlog, stacking

log = runlog.start(snakemake)
settings = snakemake.params.settings
rows, catalogs = [], {}
for frame in snakemake.params.frames:
    stars, meta = catalog.read(frame["catalog"])
    catalogs[frame["id"]] = (stars, meta, frame["calibrated"])
ny, nx = next(iter(catalogs.values()))[1]["shape"]
match = partial(register.match_frame, shape=(ny, nx), **register.match_settings(settings, nx, ny))
star_lists = {fid: (stars, meta) for fid, (stars, meta, _) in catalogs.items()}
hub, members, outsiders = stacking.consistent_group(star_lists, match)
for frame_id, (_, meta, _) in catalogs.items():
    rows.append(
        {
            "id": frame_id,
            "n_stars": int(meta["n_stars"]),
            "fwhm": float(meta["fwhm"]),
            "transparency": float(members.get(frame_id, np.nan)),
            "in_group": frame_id in members,
            "note": outsiders.get(frame_id, ""),
        }
    )
if hub is not None:
    log.info(
        "%d of %d frames agree with %s (the largest consistent group)",
        len(members),
        len(rows),
        hub,
    )
lock = Path(snakemake.output[0]).with_name("reference.lock")
remembered = stacking.read_lock(lock)
if stacking.isolated(remembered, star_lists, members, match):
    log.warning("%s (reference.lock) matches no other frame: choosing afresh", remembered)
    remembered = None
try:
    chosen, how = stacking.choose_reference(
        rows,
        pinned=snakemake.params.pinned,
        remembered=remembered,
        clear=settings["reference_clear"],
    )
except ValueError as exc:
    raise SystemExit(f"stack {snakemake.wildcards.group}: {exc}") from None
stars, meta, calibrated = catalogs[chosen]
ranked = stacking.quality_order([r for r in rows if r["in_group"]], settings["reference_clear"])
for rank, row in enumerate(ranked, start=1):
    log.info(
        "%2d. %s: FWHM %.2f px, transparency %.3f of %s, %d stars",
        rank,
        row["id"],
        row["fwhm"],
        row["transparency"],
        hub,
        row["n_stars"],
    )
for row in rows:
    if not row["in_group"]:
        log.warning("%s is not a candidate: %s", row["id"], row["note"] or "no stars")
log.info("reference: %s (%s)", chosen, how)
reference = {
    "reference": chosen,
    "how": how,
    "calibrated": calibrated,
    "fwhm": meta["fwhm"],
    "shape": meta["shape"],
    "exposure": meta["exposure"],
    "noise": meta["noise"],
    "stars": {k: np.asarray(v).tolist() for k, v in stars.items()},
    "group_hub": hub,
    "candidates": [  # JSON has no NaN
        r | {"transparency": r["transparency"] if np.isfinite(r["transparency"]) else None}
        for r in rows
    ],
}
Path(snakemake.output[0]).write_text(json.dumps(reference, indent=1))
if stacking.read_lock(lock) != chosen:  # the lock keeps how the choice was first made
    lock.write_text(json.dumps({"reference": chosen, "how": how}))
