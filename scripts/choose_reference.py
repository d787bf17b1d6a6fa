"""Rule choose_reference: the frame a stack is registered and scaled to.

The choice is remembered in reference.lock beside the output, so that a
stack keeps its reference when nights are added; pin one in config to
change it (stacking.reference), or delete the lock to choose afresh.
"""

import json
from pathlib import Path

import numpy as np

from ccdreduce import catalog, runlog, stacking

log = runlog.start(snakemake)
rows, catalogs = [], {}
for frame in snakemake.params.frames:
    frame_id = frame["id"]
    stars, meta = catalog.read(frame["catalog"])
    catalogs[frame_id] = (stars, meta, frame["calibrated"])
    top = np.sort(stars["flux"])[::-1][:20]
    rows.append(
        {
            "id": frame_id,
            "n_stars": int(meta["n_stars"]),
            "fwhm": float(meta["fwhm"]),
            "flux_rate": float(top.sum() / meta["exposure"]) if top.size else 0.0,
        }
    )
lock = Path(snakemake.output[0]).with_name("reference.lock")
try:
    chosen, how = stacking.choose_reference(
        rows, pinned=snakemake.params.pinned, remembered=stacking.read_lock(lock)
    )
except ValueError as exc:
    raise SystemExit(f"stack {snakemake.wildcards.group}: {exc}") from None
stars, meta, calibrated = catalogs[chosen]
for rank, row in enumerate(stacking.quality_ranks(rows), start=1):
    log.info(
        "%2d. %s: %d stars, FWHM %.2f px, %.0f ADU/s in the 20 brightest",
        rank,
        row["id"],
        row["n_stars"],
        row["fwhm"],
        row["flux_rate"],
    )
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
    "candidates": rows,
}
Path(snakemake.output[0]).write_text(json.dumps(reference, indent=1))
if stacking.read_lock(lock) != chosen:  # the lock keeps how the choice was first made
    lock.write_text(json.dumps({"reference": chosen, "how": how}))
