"""Combine speed, side by side in one run, whole process each time (start,
read, combine, write), medians of repetitions taken round robin.

1. 13 float32 frames of 2048x2048: ours against ccdproc.combine, numpy in
   memory, and IRAF imcombine and Siril when installed (Debian packages
   `iraf`, `siril`; driven as in ../shared/notes/peers.md). Results are
   checked against ccdproc (same algorithm: within 1e-5 relative). Beside
   them `ours_unc`: the same frames as products are written (a MASK and an
   UNCERT extension, NaN at masked pixels: a bad column and hot pixels per
   frame), combined with each value's sigma read band by band and
   propagated, the sigma image written too; and its ccdclip. `unc/ours` is
   its time over today's path (target <= 1.5 for median and average).
2. A median of 50 frames of 4096x4096 under a 2 GB memory cap, against
   numpy's in-memory median, with the peak resident memory of each.

Usage: .venv/bin/python benchmarks/combine.py [--reps 3] [--skip-small] [--skip-large]
       [--workdir DIR]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

HERE = Path(__file__).resolve().parent
METHODS = ("median", "sigclip", "average", "minmax", "ccdclip")


def make_frames(folder, n, size, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"frame_{i:03d}.fits"
        if not path.exists():
            data = rng.normal(1000.0, 10.0, (size, size)).astype(np.float32)
            hits = rng.integers(0, size, (2, size * size // 5000))
            data[hits[0], hits[1]] += rng.uniform(300, 3000, hits.shape[1]).astype(np.float32)
            fits.PrimaryHDU(data).writeto(path)
        paths.append(path)
    listing = folder / "list.txt"
    listing.write_text("\n".join(map(str, paths)) + "\n")
    return paths, listing


def make_products(frames, folder, seed=2):
    """The frames as the workflow's products: NaN where MASK has a bit (a
    bad column and ~0.1 % hot pixels per frame), MASK and UNCERT extensions."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for frame in frames:
        path = folder / frame.name
        if not path.exists():
            data = fits.getdata(frame).astype(np.float32)
            mask = np.zeros(data.shape, np.uint8)
            mask[:, rng.integers(0, data.shape[1])] = 4
            hot = rng.integers(0, data.shape[0], (2, data.size // 1000))
            mask[hot[0], hot[1]] = 4
            data[mask > 0] = np.nan
            uncert = np.sqrt(np.abs(data) / 1.5 + 10.0**2).astype(np.float32)
            hdus = [
                fits.PrimaryHDU(data),
                fits.ImageHDU(mask, name="MASK"),
                fits.ImageHDU(uncert, name="UNCERT"),
            ]
            fits.HDUList(hdus).writeto(path)
        paths.append(path)
    listing = folder / "list.txt"
    listing.write_text("\n".join(map(str, paths)) + "\n")
    return listing


def run(command, env=None, cwd=None, stdin=None):
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, input=stdin)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {result.stderr[-2000:]}")
    rss = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("peak_rss_mb")]
    return elapsed, (float(rss[0]) if rss else float("nan"))


def python_tool(tool):
    def command(method, listing, out, memory_mb=2048):
        return run(
            [
                sys.executable,
                str(HERE / "combine_one.py"),
                tool,
                method,
                str(listing),
                str(out),
                str(memory_mb),
            ]
        )

    return command


def siril(method, listing, out, memory_mb=None):
    script = {
        "median": "stack raw_ med -nonorm",
        "average": "stack raw_ rej n -nonorm",
        "sigclip": "stack raw_ rej s 3 3 -nonorm",
    }.get(method)
    if script is None:
        return None
    seq = Path(listing).parent / "siril_seq"
    if not seq.exists():
        seq.mkdir()
        for i, path in enumerate(Path(listing).read_text().split(), start=1):
            (seq / f"raw_{i:04d}.fits").symlink_to(path)
    commands = f"requires 1.0.0\nsetext fits\nset32bits\n{script} -out={out}\n"
    return run(["siril-cli", "-d", str(seq), "-s", "-"], stdin=commands)


def iraf(method, listing, out, memory_mb=None):
    combine, reject = {
        "median": ("median", "none"),
        "average": ("average", "none"),
        "sigclip": ("average", "sigclip"),
        "minmax": ("average", "minmax"),
    }[method]
    scratch = Path(listing).parent / "iraf"
    scratch.mkdir(exist_ok=True)
    out = Path(out)
    if out.exists():
        out.unlink()
    line = (
        f'imcombine ("@{listing}", "{out}", headers="", bpmasks="", rejmasks="", '
        f'nrejmasks="", expmasks="", sigmas="", logfile="", combine="{combine}", '
        f'reject="{reject}", project=no, outtype="real", outlimits="", offsets="none", '
        'masktype="none", blank=0., scale="none", zero="none", weight="none", statsec="", '
        "lthreshold=INDEF, hthreshold=INDEF, nlow=3, nhigh=3, nkeep=1, mclip=yes, "
        "lsigma=3., hsigma=3., sigscale=0.1, pclip=-0.5, grow=0.)"
    )
    env = dict(os.environ, USER=os.environ.get("USER", "bench"))
    return run(["irafcl"], env=env, cwd=scratch, stdin=f"images\nimmatch\n{line}\nlogout\n")


def agreement(ours, theirs):
    a, b = fits.getdata(ours).astype(np.float64), fits.getdata(theirs).astype(np.float64)
    return float(np.nanmax(np.abs(a - b) / np.abs(b)))


def small(workdir, reps):
    paths, listing = make_frames(workdir / "small", 13, 2048)
    products = make_products(paths, workdir / "products")
    unc = python_tool("ours_unc")
    tools = {
        "ours": python_tool("ours"),
        "ours_unc": lambda method, _listing, out: unc(method, products, out),
        "ccdproc": python_tool("ccdproc"),
        "numpy": python_tool("numpy"),
    }
    if shutil.which("siril-cli"):
        tools["siril"] = siril
    if shutil.which("irafcl"):
        tools["iraf"] = iraf
    print(f"13 float32 frames of 2048x2048, whole process, median of {reps} (round robin)")
    print(
        f"tools: {', '.join(tools)}"
        + ("" if len(tools) == 5 else "  (IRAF / Siril not installed: apt-get install iraf siril)")
    )
    outputs = workdir / "out"
    outputs.mkdir(exist_ok=True)
    times = {}
    for _ in range(reps):
        for method in METHODS:
            for name, tool in tools.items():
                if name == "numpy" and method not in ("median", "average"):
                    continue
                if method == "ccdclip" and name != "ours_unc":
                    continue
                result = tool(method, listing, outputs / f"{name}_{method}.fits")
                if result is not None:
                    times.setdefault((method, name), []).append(result[0])
    print(
        f"\n{'method':8s} {'tool':8s} {'seconds':>8s} {'ccdproc/x':>10s} {'x/siril':>8s}"
        f" {'x/iraf':>7s} {'unc/ours':>8s}"
    )
    for method in METHODS:
        if (method, "ccdproc") not in times:
            t = statistics.median(times[(method, "ours_unc")])
            print(f"{method:8s} {'ours_unc':8s} {t:8.2f}")
            continue
        base = statistics.median(times[(method, "ccdproc")])
        ours = statistics.median(times[(method, "ours")])
        peer = {
            p: statistics.median(times[(method, p)])
            for p in ("siril", "iraf")
            if (method, p) in times
        }
        for name in tools:
            if (method, name) not in times:
                continue
            t = statistics.median(times[(method, name)])
            cols = [f"{base / t:10.2f}"] + [
                f"{t / peer[p]:8.2f}" if p in peer else f"{'-':>8s}" for p in ("siril", "iraf")
            ]
            if name == "ours_unc":
                cols.append(f"{t / ours:8.2f}")
            print(f"{method:8s} {name:8s} {t:8.2f} " + " ".join(cols))
    print("\nagreement with ccdproc.combine (max relative difference over all pixels):")
    for method in METHODS[:4]:
        diff = agreement(outputs / f"ours_{method}.fits", outputs / f"ccdproc_{method}.fits")
        print(f"  {method:8s} {diff:.1e}" + ("  ok" if diff < 1e-5 else "  DIFFERS"))


def large(workdir, reps, memory_mb=2048):
    print(f"\n50 float32 frames of 4096x4096 (3.2 GB), median, cap {memory_mb} MB:")
    paths, listing = make_frames(workdir / "large", 50, 4096, seed=1)
    outputs = workdir / "out"
    outputs.mkdir(exist_ok=True)
    results = {"ours": [], "numpy": []}
    for _ in range(reps):
        results["ours"].append(
            python_tool("ours")("median", listing, outputs / "large_ours.fits", memory_mb)
        )
        results["numpy"].append(
            python_tool("numpy")("median", listing, outputs / "large_numpy.fits")
        )
    t_ours = statistics.median(r[0] for r in results["ours"])
    t_numpy = statistics.median(r[0] for r in results["numpy"])
    rss_ours = max(r[1] for r in results["ours"])
    rss_numpy = max(r[1] for r in results["numpy"])
    print(f"  ours (banded, 2 threads): {t_ours:7.1f} s, peak RSS {rss_ours:6.0f} MB")
    print(f"  numpy in memory:          {t_numpy:7.1f} s, peak RSS {rss_numpy:6.0f} MB")
    print(
        f"  time ratio ours/numpy {t_ours / t_numpy:.2f} (target <= 1.2); "
        f"RSS under cap + 300 MB: {rss_ours < memory_mb + 300}"
    )
    diff = agreement(outputs / "large_ours.fits", outputs / "large_numpy.fits")
    print(f"  agreement with numpy: {diff:.1e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        if not args.skip_small:
            small(Path(tmp), args.reps)
        if not args.skip_large:
            large(Path(tmp), max(1, args.reps - 1))


if __name__ == "__main__":
    main()
