"""A night in seconds (issue 16): the whole workflow against a plain script.

On the same simulated raw frames, times as whole processes, alternating,
medians of ``--reps``:

  - the workflow: ``snakemake --cores 2`` into an empty results folder;
  - the lab's method as one plain in-process ccdproc script (``--plain``
    below): masters (bias; darks per exposure; flats per filter, each
    normalised), ``ccdproc.ccd_process`` of every light, one-star integer
    shifts, 8-star aperture scaling, and ``ccdproc.combine`` average, median
    and min-max per object and filter.

For the workflow it also prints the job count, the sum of the jobs' own
time (Snakemake's benchmark files), the work inside them (first to last log
line of each job) and the per-job overhead (job time minus work: handing the
job to a warm worker, imports a worker has not made yet, and what a script
does before its first log line or after its last). ``--compare DIR`` also
times the workflow of another checkout (e.g. the previous release) in the
same alternating runs.

Cases (``--cases``): ``demo`` (the bundled demo nights), ``two`` (2 nights,
76 raw 1024x768 frames, 15 lights), ``4k`` (one night of 20 lights of
4096x4096 and its calibrations), ``scaling`` (1, 2, 4 and 8 demo-like
nights: seconds per raw frame, which should stay flat from 2 nights up).

    .venv/bin/python benchmarks/end_to_end.py [--cases demo two] [--reps 3]

With the SLURM plugin installed and slurm-client present but no controller,
every snakemake start waits ~9 s for ``scontrol``: that wait is SLURM's, not
the workflow's, and is kept out with a stand-in (see benchmarks/dry_run.py).
"""

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ccdproc.combine's memory cap in the plain script: its default (16 GB)
#: was killed by the kernel on the 4k night on this 24 GB machine
PLAIN_MEMORY = 2e9
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_FILES = (
    "Snakefile",
    "config.yaml",
    "profiles",
    "rules",
    "scripts",
    "schemas",
    "envs",
    "report",
)


# --- the archives ---------------------------------------------------------------


def _nights_like_demo(count):
    """``count`` nights like the demo's first (all calibrations), a day apart."""
    from ccdreduce.simulate import demo_nights

    first = demo_nights()[0]
    nights = []
    for i in range(count):
        start = datetime.fromisoformat(first.start).replace(day=2 + i)
        nights.append(
            replace(
                first,
                name=f"2025-03-{1 + i:02d}",
                start=start.isoformat(),
                pointing=(3.0 * i, -2.0 * i),
            )
        )
    return nights


def make_archive(folder, case):
    """Simulate the raw frames of ``case`` into folder/raw; returns the
    config overrides the workflow needs for that camera."""
    from ccdreduce.simulate import Camera, NightSpec, demo_nights, simulate

    if case == "demo":
        camera, nights = Camera(), demo_nights()
    elif case == "two":
        camera = Camera(ny=768, nx=1024, overscan=0)
        nights = [
            NightSpec(
                name,
                "maxim",
                start,
                pointing,
                n_bias=9,
                darks={30.0: 7, 60.0: 7},
                flats={"V": (3.0, 7), "R": (2.0, 7)},
                lights=lights,
            )
            for name, start, pointing, lights in (
                ("2025-03-01", "2025-03-02T00:40:00", (0.0, 0.0), {("V", 30.0): 4, ("R", 30.0): 4}),
                (
                    "2025-03-02",
                    "2025-03-03T00:42:00",
                    (20.0, -9.0),
                    {("V", 60.0): 3, ("R", 60.0): 4},
                ),
            )
        ]
    elif case == "4k":
        camera = Camera(ny=4096, nx=4096, overscan=0)
        nights = [
            NightSpec(
                "2025-03-01",
                "maxim",
                "2025-03-02T00:40:00",
                (0.0, 0.0),
                n_bias=9,
                darks={60.0: 7},
                flats={"R": (2.0, 7)},
                lights={("R", 60.0): 20},
            )
        ]
    elif case.startswith("nights"):
        camera, nights = Camera(), _nights_like_demo(int(case[len("nights") :]))
    else:
        raise SystemExit(f"unknown case {case!r}")
    truth = simulate(folder, nights, camera)
    overrides = [f"raw_dir={folder / 'raw'}", f"results_dir={folder / 'results'}"]
    overrides.append(f"trim_section={truth['trim_section'] if camera.overscan else 'null'}")
    return overrides, len(truth["frames"])


# --- the workflow ---------------------------------------------------------------


def copy_workflow(folder, source=ROOT, name="workflow"):
    """A copy of the workflow (of ``source``: this checkout, or another one
    to compare with) beside the archive, so Snakemake's records (.snakemake/)
    stay with it."""
    target = folder / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in WORKFLOW_FILES:
        if (source / item).exists():
            copy = shutil.copytree if (source / item).is_dir() else shutil.copy
            copy(source / item, target / item)
    return target


def run_workflow(folder, overrides, env, name="workflow"):
    shutil.rmtree(folder / "results", ignore_errors=True)
    shutil.rmtree(folder / name / ".snakemake", ignore_errors=True)
    command = [SNAKEMAKE, "--cores", "2", "--quiet", "all", "--config", *overrides]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=folder / name, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds


STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.M)


def _work_seconds(log):
    """First to last time stamp of a job's log: the work the job did."""
    stamps = STAMP.findall(log.read_text(errors="replace")) if log.exists() else []
    if len(stamps) < 2:
        return 0.0
    first, last = (datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))
    return (last - first).total_seconds()


def job_figures(results):
    """(jobs, sum of job seconds, sum of work seconds, median overhead): from
    each job's benchmark file and its log."""
    seconds, work = [], []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        lines = tsv.read_text().splitlines()
        job = float(lines[1].split("\t")[0])
        log = results / "logs" / tsv.relative_to(results / "benchmarks").with_suffix(".log")
        seconds.append(job)
        work.append(min(job, _work_seconds(log)))
    overhead = [s - w for s, w in zip(seconds, work, strict=True)]
    return len(seconds), sum(seconds), sum(work), statistics.median(overhead) if overhead else 0.0


# --- the plain script -------------------------------------------------------------


def plain(raw_dir, out_dir, trim):
    """The lab's method as one plain ccdproc script (what an observer writes
    in a notebook, knowing the frames: the simulator names each file by its
    kind): no provenance, no checks, no catalogues, no bad-file handling."""
    import numpy as np
    from astropy import units as u
    from astropy.io import fits
    from astropy.nddata import CCDData
    from astropy.stats import mad_std
    from ccdproc import ccd_process, combine, trim_image
    from photutils.aperture import CircularAperture, aperture_photometry
    from photutils.detection import DAOStarFinder
    from scipy import ndimage

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = {
        "sigma_clip": True,
        "sigma_clip_low_thresh": 5,
        "sigma_clip_high_thresh": 5,
        "sigma_clip_func": np.ma.median,
        "sigma_clip_dev_func": mad_std,
    }
    process = {"exposure_key": "EXPTIME", "exposure_unit": u.s, "dark_scale": True}

    def read(path):
        ccd = CCDData.read(path, unit="adu", hdu=hdu_of(path))
        ccd.data = ccd.data.astype(np.float32)
        ccd.header["EXPTIME"] = exposure_of(ccd.header)
        return trim_image(ccd, fits_section=trim) if trim else ccd

    def hdu_of(path):  # tile-compressed frames keep the image in HDU 1
        return 1 if path.suffix == ".fz" else 0

    def exposure_of(header):  # the lab camera writes EXPOSURE
        return float(header.get("EXPTIME", header.get("EXPOSURE")))

    masters = {}  # (kind, key) -> [(night, master)]: borrowed from the nearest night
    lights = []
    for night in sorted(p for p in Path(raw_dir).iterdir() if p.is_dir()):
        frames = {"BIAS": [], "DARK": [], "FLAT": []}
        for path in sorted(f for f in night.rglob("*.f*") if f.is_file()):
            header = fits.getheader(path, hdu_of(path))
            header["EXPTIME"] = exposure_of(header)
            kind = path.name.split("_")[0].upper()  # the simulator names frames by kind
            if kind in frames:
                frames[kind].append((path, header))
            elif kind == "LIGHT":
                lights.append((night.name, path, header["OBJECT"], header["FILTER"]))
        if frames["BIAS"]:
            bias = combine(
                [read(p) for p, _ in frames["BIAS"]],
                method="average",
                mem_limit=PLAIN_MEMORY,
                **clip,
            )
            masters.setdefault(("bias", None), []).append((night.name, bias))
        bias = _nearest(masters, ("bias", None), night.name)
        for exposure in sorted({h["EXPTIME"] for _, h in frames["DARK"]}):
            darks = [
                ccd_process(read(p), master_bias=bias)
                for p, h in frames["DARK"]
                if h["EXPTIME"] == exposure
            ]
            dark = combine(darks, method="average", mem_limit=PLAIN_MEMORY, **clip)
            dark.header["EXPTIME"] = exposure
            masters.setdefault(("dark", exposure), []).append((night.name, dark))
        dark = _nearest_dark(masters, night.name)
        for filt in sorted({h["FILTER"] for _, h in frames["FLAT"]}):
            flats = [
                ccd_process(read(p), master_bias=bias, dark_frame=dark, **process)
                for p, h in frames["FLAT"]
                if h["FILTER"] == filt
            ]
            flats = [f.divide(np.median(f.data)) for f in flats]
            flat = combine(flats, method="average", mem_limit=PLAIN_MEMORY, **clip)
            masters.setdefault(("flat", filt), []).append((night.name, flat))
    stacks = {}
    for night, path, target, filt in lights:
        ccd = ccd_process(
            read(path),
            master_bias=_nearest(masters, ("bias", None), night),
            dark_frame=_nearest_dark(masters, night),
            master_flat=_nearest(masters, ("flat", filt), night),
            **process,
        )
        stacks.setdefault((target, filt), []).append(ccd)
    for (target, filt), frames in stacks.items():
        # the lab picks one bright star by eye: here the brightest smoothed
        # peak of the first frame, found again within 60 px in every frame
        reference = np.nan_to_num(frames[0].data - np.nanmedian(frames[0].data))
        ry, rx = np.unravel_index(np.argmax(ndimage.uniform_filter(reference, 5)), reference.shape)
        found = DAOStarFinder(fwhm=3.5, threshold=10 * mad_std(reference))(reference)
        found.sort("flux", reverse=True)
        apertures = CircularAperture(
            np.column_stack([found["x_centroid"][:8], found["y_centroid"][:8]]), r=7
        )
        moved, reference_flux = [], None
        for ccd in frames:
            data = np.nan_to_num(ccd.data - np.nanmedian(ccd.data))
            y0, x0 = max(0, ry - 60), max(0, rx - 60)
            cut = ndimage.uniform_filter(data[y0 : ry + 60, x0 : rx + 60], 5)
            y, x = np.unravel_index(np.argmax(cut), cut.shape)
            data = np.roll(data, (ry - y - y0, rx - x - x0), axis=(0, 1))
            flux = np.asarray(aperture_photometry(data, apertures)["aperture_sum"])
            reference_flux = flux if reference_flux is None else reference_flux
            moved.append(CCDData(data * np.median(reference_flux / flux), unit="adu"))
        name = f"{target}_{filt}".replace(" ", "_")
        for label, method, extra in (
            ("average", "average", {}),
            ("median", "median", {}),
            ("minmax", "average", {"clip_extrema": True, "nlow": 3, "nhigh": 3}),
        ):
            stack = combine(moved, method=method, mem_limit=PLAIN_MEMORY, **extra)
            stack.write(out_dir / f"{name}_{label}.fits", overwrite=True)


def _nearest(masters, key, night):
    entries = masters.get(key)
    if not entries:
        return None
    return min(entries, key=lambda e: abs(_day(e[0]) - _day(night)))[1]


def _nearest_dark(masters, night):
    darks = [k for k in masters if k[0] == "dark"]
    if not darks:
        return None
    longest = max(darks, key=lambda k: k[1])  # scaled to each exposure by ccd_process
    return _nearest(masters, longest, night)


def _day(name):
    return datetime.fromisoformat(name[:10]).toordinal()


def run_plain(folder, overrides, env):
    trim = next(o.split("=", 1)[1] for o in overrides if o.startswith("trim_section="))
    shutil.rmtree(folder / "plain", ignore_errors=True)
    command = [sys.executable, __file__, "--plain", str(folder / "raw"), str(folder / "plain")]
    command += [trim]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"plain script failed:\n{result.stderr[-3000:]}")
    return seconds


# --- the report -----------------------------------------------------------------


def measure(case, base, reps, env, compare=None):
    folder = base / case
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    overrides, frames = make_archive(folder, case)
    copy_workflow(folder)
    if compare:
        copy_workflow(folder, compare, "compared")
    ours, theirs, compared = [], [], []
    for _ in range(reps):  # alternating, so all see the same machine load
        if compare:
            compared.append(run_workflow(folder, overrides, env, "compared"))
            before = job_figures(folder / "results")
        ours.append(run_workflow(folder, overrides, env))
        theirs.append(run_plain(folder, overrides, env))
    if compare:
        print(
            f"{case:9s} compared workflow ({compare}): {statistics.median(compared):6.1f} s; "
            f"{before[0]} jobs, job time {before[1]:.1f} s of which work {before[2]:.1f} s, "
            f"median overhead {before[3]:.2f} s/job",
            flush=True,
        )
    jobs, job_seconds, work, overhead = job_figures(folder / "results")
    figures = {
        "case": case,
        "raw_frames": frames,
        "workflow_s": statistics.median(ours),
        "plain_s": statistics.median(theirs),
        "jobs": jobs,
        "job_s": job_seconds,
        "work_s": work,
        "median_overhead_s": overhead,
    }
    figures["ratio"] = figures["workflow_s"] / figures["plain_s"]
    figures["workflow_s_per_frame"] = figures["workflow_s"] / frames
    print(
        f"{case:9s} {frames:4d} raw frames: workflow {figures['workflow_s']:6.1f} s, plain "
        f"ccdproc {figures['plain_s']:6.1f} s, ratio {figures['ratio']:.2f}; {jobs} jobs, "
        f"job time {job_seconds:.1f} s of which work {work:.1f} s, median overhead "
        f"{overhead:.2f} s/job; {figures['workflow_s_per_frame']:.3f} s per raw frame",
        flush=True,
    )
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["demo", "two", "4k", "scaling"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/end_to_end"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--compare", type=Path, help="another checkout of the workflow, timed in the same runs"
    )
    args = parser.parse_args()
    from dry_run import ENV, quick_scontrol

    args.folder.mkdir(parents=True, exist_ok=True)
    quick_scontrol(args.folder)
    cases = []
    for case in args.cases:
        cases += [f"nights{n}" for n in (1, 2, 4, 8)] if case == "scaling" else [case]
    results = [measure(case, args.folder, args.reps, ENV, args.compare) for case in cases]
    scaling = [r for r in results if r["case"].startswith("nights")]
    if len(scaling) > 1:
        from_two = [r["workflow_s_per_frame"] for r in scaling if r["case"] != "nights1"]
        # what each added frame costs, start-up left out: the slope between
        # successive cases (flat = the cost grows in proportion to the work)
        slopes = [
            (b["workflow_s"] - a["workflow_s"]) / (b["raw_frames"] - a["raw_frames"])
            for a, b in zip(scaling, scaling[1:], strict=False)
        ]
        print(
            "seconds per raw frame, 1/2/4/8 nights: "
            + " / ".join(f"{r['workflow_s_per_frame']:.3f}" for r in scaling)
            + f"; spread from 2 nights up {max(from_two) / min(from_two) - 1:.0%}; "
            + "seconds per added frame between them: "
            + " / ".join(f"{slope:.3f}" for slope in slopes)
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--plain":
        raw, out, trim = sys.argv[2], sys.argv[3], sys.argv[4]
        plain(raw, out, None if trim == "null" else trim)
    else:
        main()
