"""What a dry run costs on a large archive: 10,000 raw frames over 100 nights.

Builds the archive (tiny 16x16 frames: the DAG depends on headers, not
pixels), then times, each as a whole `snakemake -n` process:
  - the first dry run (headers not cached yet),
  - the dry run of a tree with nothing run yet (cache warm),
  - the dry run of an up-to-date tree (every output present: made with
    empty files and `snakemake --touch`, no pixels computed),
  - the dry run after one new night is added,
  - a per-night target: `snakemake -n <results>/calib/<night>/frames.ecsv`.
Targets (issue 4): up-to-date dry run <= 15 s, per-night target < 3 s.

    .venv/bin/python benchmarks/dry_run.py [--folder /tmp/archive] [--reps 3]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
OBJECTS = ["M 31", "M 42", "NGC 2362", "NGC 6760", "SN2022yid"]


def write_night(raw, night_index, first_night=date(2025, 1, 1)):
    """100 frames: 10 bias, 2 x 5 darks, 2 x 5 flats, 70 lights of two
    objects in two filters (four stacks a night, ten over the archive)."""
    night = (first_night + timedelta(days=night_index)).isoformat()
    folder = raw / night
    folder.mkdir(parents=True)
    data = np.full((16, 16), 1000, dtype=np.uint16)
    frames = [("Bias Frame", 0.0, None, None)] * 10
    frames += [("Dark Frame", t, None, None) for t in (30.0, 60.0) for _ in range(5)]
    frames += [("Flat Field", 2.0, f, None) for f in ("R", "V") for _ in range(5)]
    objects = [OBJECTS[night_index % 5], OBJECTS[(night_index + 2) % 5]]
    frames += [
        ("Light Frame", 60.0, f, obj)
        for i in range(70)
        for obj, f in [(objects[i % 2], "RV"[(i // 2) % 2])]
    ]
    for n, (kind, exposure, filt, obj) in enumerate(frames, start=1):
        header = fits.Header()
        header["IMAGETYP"] = kind
        header["EXPTIME"] = exposure
        if filt:
            header["FILTER"] = filt
        if obj:
            header["OBJECT"] = obj
        header["DATE-OBS"] = f"{night}T{20 + n // 60:02d}:{n % 60:02d}:00"
        header["XBINNING"] = header["YBINNING"] = 1
        header["INSTRUME"] = "Tiny test camera"
        fits.PrimaryHDU(data, header=header).writeto(folder / f"f{n:03d}.fits")
    return night


ENV = dict(os.environ)


def quick_scontrol(folder):
    """Every snakemake start imports the SLURM executor plugin (installed by
    `make test`), which asks `scontrol show config` for MinJobAge; with
    slurm-client installed and no controller running that waits ~9 s, which
    is SLURM's cost, not the workflow's. Put a stand-in that fails at once
    first on PATH (the plugin then falls back to its defaults) and say so."""
    real = shutil.which("scontrol")
    if real is None:
        return
    started = time.perf_counter()
    try:
        subprocess.run([real, "show", "config"], capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        pass
    seconds = time.perf_counter() - started
    if seconds < 1.0:
        return
    shim = folder / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (shim / "scontrol").chmod(0o755)
    ENV["PATH"] = f"{shim}{os.pathsep}{ENV['PATH']}"
    print(
        f"(scontrol takes {seconds:.1f} s here, no SLURM controller: every snakemake start "
        "would pay it; timed with a stand-in scontrol that fails at once)",
        flush=True,
    )


def snakemake(folder, *args, check=True):
    command = [
        SNAKEMAKE,
        "--cores",
        "1",
        *args,
        "--config",
        f"raw_dir={folder / 'raw'}",
        f"results_dir={folder / 'results'}",
        "trim_section=null",
    ]
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=folder / "workflow", capture_output=True, text=True, env=ENV
    )
    seconds = time.perf_counter() - started
    if check and result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def jobs_of(output):
    match = re.search(r"^total\s+(\d+)$", output, re.M)
    return int(match.group(1)) if match else 0


def timed(label, folder, args, reps):
    runs = [snakemake(folder, *args) for _ in range(reps)]
    seconds = [s for s, _ in runs]
    jobs = jobs_of(runs[-1][1])
    nothing = "Nothing to be done" in runs[-1][1]
    print(
        f"{label:44s} median {statistics.median(seconds):6.2f} s  "
        f"(min {min(seconds):.2f}, max {max(seconds):.2f}; "
        f"{'nothing to do' if nothing else f'{jobs} jobs'})",
        flush=True,
    )
    return statistics.median(seconds), runs[-1][1]


def make_up_to_date(folder):
    """Every output of the plan present, and recorded by Snakemake as made
    (`--touch --forceall` writes the same records in .snakemake/ as a real
    run, so the dry run checks params, code and input sets as after one):
    an up-to-date tree without computing a pixel."""
    _, output = snakemake(folder, "-n")
    outputs = set()
    for match in re.finditer(r"^\s+output: (.*)$", output, re.M):
        outputs.update(p.strip() for p in match.group(1).split(","))
    for path in map(Path, outputs):
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:  # directory outputs: calibrated/<night>, registered/<night>/<stack>
            path.mkdir(parents=True, exist_ok=True)
    seconds, _ = snakemake(folder, "--touch", "--forceall", "--quiet", "all")
    return len(outputs), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/dry_run_archive"))
    parser.add_argument("--nights", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    folder = args.folder
    shutil.rmtree(folder, ignore_errors=True)
    # a copy of the workflow, so that Snakemake's records (.snakemake/) of
    # this archive stay with it and never mix with the checkout's
    (folder / "workflow").mkdir(parents=True)
    for name in ("Snakefile", "config.yaml", "rules", "scripts", "schemas", "envs", "report"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, folder / "workflow" / name)
    quick_scontrol(folder)
    started = time.perf_counter()
    nights = [write_night(folder / "raw", i) for i in range(args.nights)]
    frames = sum(1 for _ in (folder / "raw").rglob("*.fits"))
    print(
        f"archive: {frames} raw frames over {len(nights)} nights in {folder} "
        f"({time.perf_counter() - started:.0f} s to write)",
        flush=True,
    )
    cold, output = snakemake(folder, "-n", "--quiet", "rules")
    label = "first dry run (headers read, then cached)"
    print(f"{label:44s} {cold:13.2f} s  ({jobs_of(output)} jobs)")
    timed("dry run, nothing run yet, cache warm", folder, ["-n", "--quiet", "rules"], args.reps)
    count, seconds = make_up_to_date(folder)
    print(f"({count} outputs made and recorded with --touch in {seconds:.0f} s)", flush=True)
    up_to_date, output = timed(
        "dry run, up-to-date tree", folder, ["-n", "--quiet", "rules"], args.reps
    )
    if "Nothing to be done" not in output:
        sys.exit("the touched tree is not up to date:\n" + output[-3000:])
    night = nights[len(nights) // 2]
    target = str(folder / "results" / "calib" / night / "frames.ecsv")
    per_night, _ = timed(
        f"per-night target ({night}), up to date",
        folder,
        [target, "-n", "--quiet", "rules"],
        args.reps,
    )
    new = write_night(folder / "raw", args.nights)
    timed(f"dry run, one new night ({new})", folder, ["-n", "--quiet", "rules"], args.reps)
    target = str(folder / "results" / "calib" / new / "frames.ecsv")
    timed(
        "per-night target of the new night", folder, [target, "-n", "--quiet", "rules"], args.reps
    )
    print(
        f"targets: up-to-date dry run {up_to_date:.1f} s (<= 15), "
        f"per-night target {per_night:.1f} s (< 3)"
    )


if __name__ == "__main__":
    main()
