"""Registration of one frame onto its stack's reference (register.onto_reference:
match, sky, move or resample), by kind of frame, side by side in one run.

    python benchmarks/registration.py [RESULTS]

RESULTS is a results folder of the mount nights (simulate.mount_nights(),
reduced with trim_section null); without it they are simulated and reduced
here first. Prints the median of 5 runs per frame kind and each median's
ratio to the translation frames'.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from ccdreduce import catalog, register, simulate, stacking  # noqa: E402
from ccdreduce.fitsfile import read_product  # noqa: E402

SETTINGS = {
    "resample": "integer",
    "transform": "similarity",
    "max_shift": 0.25,
    "min_matches": 5,
    "min_match_fraction": 0.4,
    "max_rms": 0.8,
    "max_corner_shift": 0.5,
    "sky": "median",
    "background_box": 64,
}
KINDS = {  # frame -> what it is, on the reference 2025-03-10/light_R_30s_011
    "2025-03-10/light_R_30s_010": "translation",
    "2025-03-10/light_R_30s_012": "meridian flip (180 deg)",
    "2025-03-11/light_R_30s_010": "turned 0.8 deg",
    "2025-03-12/light_R_30s_010": "turned 90 deg",
    "2025-03-13/light_R_30s_010": "binned 2x2",
}


def reduced_mount_nights():
    folder = Path(tempfile.mkdtemp(prefix="mounts-"))
    simulate.simulate(folder, nights=simulate.mount_nights(), camera=simulate.Camera(overscan=0))
    results = folder / "results"
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "-q", "--config",
         f"raw_dir={folder / 'raw'}", f"results_dir={results}", "trim_section=null"],
        cwd=REPO, check=True,
    )  # fmt: skip
    return results


def main():
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else reduced_mount_nights()
    reference = stacking.read_reference(results / "stacks" / "NGC_2362" / "R" / "reference.json")
    reference["reference"] = "2025-03-10/light_R_30s_011"
    stars, meta = catalog.read(results / "catalogs" / "2025-03-10" / "light_R_30s_011.ecsv")
    reference |= {"stars": stars, "shape": meta["shape"]}
    medians = {}
    for frame, kind in KINDS.items():
        night, stem = frame.split("/")
        data, _, mask = read_product(results / "calibrated" / night / f"{stem}.fits")
        stars, meta = catalog.read(results / "catalogs" / night / f"{stem}.ecsv")
        times = []
        for _ in range(5):
            start = time.perf_counter()
            *_, ok = register.onto_reference(data, mask, stars, meta, reference, frame, SETTINGS)
            times.append(time.perf_counter() - start)
        assert ok, frame
        medians[kind] = float(np.median(times))
    base = medians["translation"]
    print(f"{'frame (512x512)':28s} {'median s':>9s} {'x translation':>14s}")
    for kind, seconds in medians.items():
        print(f"{kind:28s} {seconds:9.4f} {seconds / base:14.2f}")


if __name__ == "__main__":
    main()
