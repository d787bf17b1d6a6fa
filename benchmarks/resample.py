"""Resampling speed, side by side in one run: a float32 frame (sky noise,
stars, a bad column of NaN) with its uint8 mask moved onto the stack grid
by today's shifts (register.shift_image + shift_mask, whole pixels and
subpixel) and by
resample.warp for an integer shift, a meridian flip (180 deg, whole-pixel
offsets: a permutation; and with fractional offsets: interpolated), and a
camera put back 0.8 deg turned, with the chosen cubic spline against
Lanczos-3.

Usage: .venv/bin/python benchmarks/resample.py [--sizes 1024 2048] [--reps 5]
Prints the median seconds of the repetitions (taken round robin) and the
ratio to today's shift; on a shared machine the ratios are the figures.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from ccdreduce.register import shift_image, shift_mask  # noqa: E402
from ccdreduce.resample import translation, warp  # noqa: E402


def frame(size, seed=0):
    """Sky noise, a few hundred stars, a bad column and a saturated star."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 10.0, (size, size)).astype(np.float32)
    for x, y in rng.uniform(10, size - 10, (size // 4, 2)):
        iy, ix = int(y), int(x)
        data[iy - 3 : iy + 4, ix - 3 : ix + 4] += 500.0 * np.exp(
            -((np.arange(-3, 4)[:, None]) ** 2 + np.arange(-3, 4)[None, :] ** 2) / 3.0
        ).astype(np.float32)
    data[size // 3 :, size // 5] = np.nan  # flat undefined: no data
    mask = np.zeros((size, size), np.uint8)
    mask[size // 2, size // 2] = 1
    return data, mask


def turned(deg, size, offset):
    """A turn about the frame's middle, landing shifted by ``offset``."""
    t = np.radians(deg)
    linear = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    middle = np.full(2, (size - 1) / 2)
    return np.column_stack([linear, middle + offset - linear @ middle])


def cases(size):
    shift = (13.0, -7.0)
    return {
        "today: shift_image whole px": lambda d, m: (
            shift_image(d, *shift),
            shift_mask(m, *shift),
        ),
        "today: shift_image subpixel": lambda d, m: (
            shift_image(d, 13.4, -7.3, subpixel=True),
            shift_mask(m, 13.4, -7.3, subpixel=True),
        ),
        "warp integer shift": lambda d, m: warp(d, translation(*shift), d.shape, m),
        "warp rot180 whole px": lambda d, m: warp(d, turned(180, size, shift), d.shape, m),
        "warp rot180 +0.4 px, spline3": lambda d, m: warp(
            d, turned(180, size, (13.4, -7.3)), d.shape, m
        ),
        "warp rot 0.8 deg, spline3": lambda d, m: warp(d, turned(0.8, size, shift), d.shape, m),
        "warp rot 0.8 deg, lanczos3": lambda d, m: warp(
            d, turned(0.8, size, shift), d.shape, m, method="lanczos3"
        ),
    }


def run(size, reps):
    data, mask = frame(size)
    work = cases(size)
    times = {name: [] for name in work}
    for _ in range(reps):  # round robin: a busy spell hits every case alike
        for name, call in work.items():
            start = time.perf_counter()
            call(data, mask)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["today: shift_image whole px"])
    print(f"\n{size}x{size} float32 + uint8 mask, median of {reps}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:32s} {median:8.4f} s  {median / base:7.1f}x today")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    for size in args.sizes:
        run(size, args.reps)


if __name__ == "__main__":
    main()
