"""Scale factors against the simulator's truth: today's clipped median of the
stars' flux ratios and the signal-to-noise weighted mean, on the same
registered frames, side by side.

    python benchmarks/scaling.py RESULTS TRUTH [OBJECT]

RESULTS is a reduced results folder (its registered frames, catalogues,
reference.json and frames.ecsv are read, nothing is written), TRUTH the
simulator's truth folder of the same nights (truth.json). For every stack of
OBJECT (NGC_2362 by default), every used frame but the reference: the
error of its scale against the true ratio of exposure x transparency, and
how the claimed error (scale_err) compares. A seed other than the demo's
(simulate(out, seed=7)) gives a holdout.
"""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import yaml
from astropy.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from ccdreduce import scaling, stacking  # noqa: E402


def frames_of(results, obj, folder, table):
    """scaling.measure_frames' frame dicts for a stack's frames.ecsv."""
    return [
        {
            "id": f"{row['night']}/{row['stem']}",
            "night": row["night"],
            "stem": row["stem"],
            "file": row["file"],
            "catalog": results / "catalogs" / row["night"] / f"{row['stem']}.ecsv",
            "registered": results
            / "registered"
            / row["night"]
            / obj
            / folder.name
            / f"{row['stem']}.fits",
        }
        for row in table
    ]


def errors(results, truth, obj, cfg, weighted):
    """(error against truth, claimed relative error) of every used frame's scale."""
    record = {(f["night"], f["stem"]): f for f in truth["frames"]}
    original = scaling.scale_factor
    if not weighted:  # today's estimator: the fluxes' errors ignored

        def median_only(ref_flux, flux, sigma=3.0, ref_err=None, err=None):
            return original(ref_flux, flux, sigma)

        scaling.scale_factor = median_only
    found, claimed = [], []
    try:
        for folder in sorted((results / "stacks" / obj).iterdir()):
            table = Table.read(folder / "frames.ecsv")
            reference = stacking.read_reference(folder / "reference.json")
            frames = frames_of(results, obj, folder, table)
            rows, _ = scaling.measure_frames(frames, reference, cfg, logging.getLogger("x"))
            ref = record[tuple(reference["reference"].split("/"))]
            for row in rows:
                if not row["used"] or f"{row['night']}/{row['stem']}" == reference["reference"]:
                    continue
                r = record[(row["night"], row["stem"])]
                truth_scale = (
                    ref["transparency"] * ref["exposure"] / (r["transparency"] * r["exposure"])
                )
                found.append(row["scale"] / truth_scale - 1)
                claimed.append(row["scale_err"] / row["scale"])
    finally:
        scaling.scale_factor = original
    return np.array(found), np.array(claimed)


def main():
    results, truth_dir = Path(sys.argv[1]), Path(sys.argv[2])
    obj = sys.argv[3] if len(sys.argv) > 3 else "NGC_2362"
    truth = json.loads((truth_dir / "truth.json").read_text())
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())["stacking"]["scaling"]
    for name, weighted in (("clipped median (today)", False), ("SNR-weighted mean", True)):
        found, claimed = errors(results, truth, obj, cfg, weighted)
        rms = 100 * np.sqrt(np.mean(found**2))
        print(
            f"{name:24s} {found.size} frames: error against truth rms {rms:.3f} %, "
            f"max {100 * np.abs(found).max():.3f} %, mean {100 * found.mean():+.3f} %; "
            f"error / claimed rms {np.sqrt(np.mean((found / claimed) ** 2)):.2f}"
        )


if __name__ == "__main__":
    main()
