"""Per-frame calibration speed, side by side in one run.

A 4096x4096 uint16 raw frame is calibrated (bias, scaled dark, flat) and
written as float32, against the I/O floor: reading the same file and writing
a float32 copy with astropy.io.fits. ccdproc.ccd_process does the same
arithmetic as a peer, and the results are checked to agree.

Usage: .venv/bin/python benchmarks/calibration.py [--size 4096] [--reps 7]
Prints medians of the repetitions and their ratios; absolute seconds on a
shared machine are noise, the ratios are the figures.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from ccdreduce import provenance  # noqa: E402
from ccdreduce.calibrate import Masters, Settings, calibrate_frame  # noqa: E402
from ccdreduce.fitsfile import write_image  # noqa: E402


def median_time(function, reps, outputs=None):
    """Median wall time of ``function(output_path)``; every call writes a
    fresh file (as in a workflow run, where outputs never pre-exist) and the
    file is removed outside the timed part."""
    times = []
    for i in range(reps):
        out = outputs / f"out{i}.fits" if outputs else None
        start = time.perf_counter()
        function(out) if outputs else function()
        times.append(time.perf_counter() - start)
        if out is not None:
            out.unlink()
    return statistics.median(times)


def make_inputs(folder, size):
    rng = np.random.default_rng(0)
    bias = (1000 + rng.normal(0, 3, (size, size))).astype(np.float32)
    dark = rng.gamma(2.0, 0.5, (size, size)).astype(np.float32)  # ADU in 60 s
    flat = rng.uniform(0.85, 1.05, (size, size))
    # mean exactly 1: ccdproc.flat_correct divides by flat/mean(flat), ours by the flat
    flat = (flat / flat.mean()).astype(np.float32)
    sky = rng.poisson(300, (size, size))
    raw = np.clip(bias + dark * 0.5 + sky * flat, 0, 65535).astype(np.uint16)
    header = fits.Header({"IMAGETYP": "Light Frame", "EXPTIME": 30.0, "FILTER": "R"})
    fits.PrimaryHDU(raw, header=header).writeto(folder / "raw.fits")
    for name, data in (("bias", bias), ("dark_60s", dark), ("flat_R", flat)):
        write_image(folder / "calib" / "n" / f"{name}.fits", data, fits.Header())
    return {
        "bias": "calib/n/bias.fits",
        "dark": "calib/n/dark_60s.fits",
        "dark_scale": 0.5,
        "dark_includes_bias": False,
        "flat": "calib/n/flat_R.fits",
        "overscan": False,
        "notes": ["benchmark"],
        "uncorrected": [],
    }


def startup(code, reps):
    command = [sys.executable, "-c", code]
    env_path = str(Path(__file__).resolve().parents[1] / "scripts")
    return median_time(
        lambda: subprocess.run(command, check=True, env={"PYTHONPATH": env_path}), reps
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        recipe = make_inputs(folder, args.size)
        raw = folder / "raw.fits"
        outputs = folder / "out"
        outputs.mkdir()
        settings = Settings()
        warm = Masters(folder)

        def floor(out):
            data = fits.getdata(raw).astype(np.float32)
            fits.PrimaryHDU(data).writeto(out, overwrite=True)

        def ours(masters, out):
            frame = calibrate_frame(raw, recipe, settings, masters)
            provenance.stamp(frame.header, "calibrate", inputs=["raw.fits"], recipe=recipe)
            write_image(out, frame.data, frame.header, mask=frame.mask)
            return frame

        def ccdproc_peer(out):
            from astropy.nddata import CCDData
            from ccdproc import ccd_process

            ccd = CCDData.read(raw, unit="adu")
            result = ccd_process(
                ccd,
                master_bias=peer["bias"],
                dark_frame=peer["dark"],
                master_flat=peer["flat"],
                exposure_key="EXPTIME",
                exposure_unit=__import__("astropy.units").units.s,
                dark_scale=True,
            )
            result.data = result.data.astype(np.float32)
            result.write(out, overwrite=True)
            return result

        from astropy import units as u
        from astropy.nddata import CCDData

        peer = {
            "bias": CCDData(warm.get(recipe["bias"]), unit="adu"),
            "dark": CCDData(warm.get(recipe["dark"]), unit="adu", meta={"EXPTIME": 60.0}),
            "flat": CCDData(warm.get(recipe["flat"]), unit="adu"),
        }
        assert u.s  # units imported for ccd_process

        # agreement first: same arithmetic, same numbers
        mine = ours(warm, folder / "mine.fits").data
        theirs = ccdproc_peer(folder / "theirs.fits").data
        agree = np.nanmax(np.abs(mine - theirs) / np.abs(theirs))

        # Round robin, so that the machine's drift touches every contender alike.
        contenders = {
            "I/O floor: read uint16 + write float32": floor,
            "ccdreduce, masters in memory": lambda out: ours(warm, out),
            "ccdreduce, masters read per frame": lambda out: ours(Masters(folder), out),
            "ccdproc.ccd_process + write": ccdproc_peer,
        }
        times = {name: [] for name in contenders}
        for _ in range(args.reps):
            for name, function in contenders.items():
                times[name].append(median_time(function, 1, outputs))
        rows = [(name, statistics.median(values)) for name, values in times.items()]
        imports = [
            ("start-up: numpy + astropy.io.fits", startup("import numpy, astropy.io.fits", 5)),
            (
                "start-up: ccdreduce per-frame modules",
                startup("import ccdreduce.calibrate, ccdreduce.fitsfile, ccdreduce.provenance", 5),
            ),
            ("start-up: ccdproc", startup("import ccdproc", 5)),
        ]
    floor_time = rows[0][1]
    print(f"Per-frame calibration, {args.size}x{args.size} uint16, median of {args.reps} reps")
    print(f"{'':44s} {'seconds':>8s} {'x floor':>8s}")
    for name, seconds in rows:
        print(f"{name:44s} {seconds:8.3f} {seconds / floor_time:8.2f}")
    print(f"ccdreduce vs ccdproc: max relative difference {agree:.1e}")
    print(f"speed-up over ccdproc (masters in memory): {rows[3][1] / rows[1][1]:.1f}x")
    print()
    for name, seconds in imports:
        print(f"{name:44s} {seconds:8.3f}")


if __name__ == "__main__":
    main()
