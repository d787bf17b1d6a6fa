"""Matching speed and accuracy, side by side: today's translation matcher
(register.py as of a commit, read from git) against the new one, on star
lists with a known transform (tests/starlists.py: 20 % of the stars lost,
20 % spurious sources, 0.03 px noise).

Usage: .venv/bin/python benchmarks/match.py [--today REV] [--runs N]
Prints, per night, the median time of N runs of each matcher and, for the
new one, how far its transform puts the frame's real stars from the truth.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from starlists import mapping_error, night, truth  # noqa: E402

from ccdreduce import register  # noqa: E402

# the last commit whose matcher was a translation only
TODAY = "82a2aeb"

NIGHTS = {  # rotation deg, scale, offset (fraction of the reference), frame shape, stars
    "translation, 150 stars": (0.0, 1.0, (0.08, -0.05), (1024, 1024), 150),
    "translation, 300 stars": (0.0, 1.0, (-0.2, 0.1), (1024, 1024), 300),
    "camera put back 0.8 deg": (0.8, 1.0, (0.02, -0.01), (1024, 1024), 200),
    "meridian flip": (180.0, 1.0, (0.01, 0.02), (1024, 1024), 200),
    "meridian flip, PIERSIDE hint": (180.0, 1.0, (0.01, 0.02), (1024, 1024), 200),
    "turned 237 deg, offset 30 %": (237.0, 1.0, (0.3, 0.0), (1024, 1024), 200),
    "2x2 binned": (0.0, 2.0, (0.05, -0.1), (512, 512), 200),
}


def today_module(rev):
    """register.py as it was at ``rev``, imported beside the package."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:scripts/ccdreduce/register.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spec = importlib.util.spec_from_loader("ccdreduce._register_today", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "ccdreduce"
    exec(compile(source, f"{rev}:register.py", "exec"), module.__dict__)
    return module


def timed(function, refusal, runs):
    """(median seconds, the last result or the refusal)."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        try:
            result = function()
        except refusal as exc:
            result = exc
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def same_as_today(new, old):
    if isinstance(old, Exception) or isinstance(new, Exception):
        return "-"
    same = (new.shift.dx, new.shift.dy) == (old.shift.dx, old.shift.dy)
    return "yes" if same and np.array_equal(new.pairs, old.pairs) else "NO"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--today", default=TODAY, help="git revision of today's matcher")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    today = today_module(args.today)
    print(
        f"{'night':30s} {'today ms':>9s} {'new ms':>8s} {'ratio':>6s} {'same':>5s} "
        f"{'error px':>9s} {'turn err':>9s}  today says"
    )
    for name, (rotation, scale, offset, shape, stars) in NIGHTS.items():
        transform = truth(rotation, scale, offset, shape)
        ref_xy, frame_xy, frame_true = night(transform, shape, seed=11)
        ref_xy, frame_xy, frame_true = ref_xy[:stars], frame_xy[:stars], frame_true[:stars]
        common = (ref_xy, frame_xy, shape, 0.25 * max(shape))
        hint = {"hint_rotation": 180.0} if "hint" in name else {}
        old_s, old = timed(
            lambda c=common: today.match_frame(*c), today.RegistrationFailed, args.runs
        )
        new_s, new = timed(
            lambda c=common, h=hint: register.match_frame(*c, **h),
            register.RegistrationFailed,
            args.runs,
        )
        if isinstance(new, Exception):
            error = turn = f"refused: {new}"
        else:
            error = f"{mapping_error(new, transform, frame_true):9.4f}"
            turn = f"{abs((new.rotation - rotation + 180) % 360 - 180):9.5f}"
        verdict = f"refused ({str(old)[:40]}...)" if isinstance(old, Exception) else "matched"
        print(
            f"{name:30s} {old_s * 1e3:9.1f} {new_s * 1e3:8.1f} {new_s / old_s:6.2f} "
            f"{same_as_today(new, old):>5s} {error:>9s} {turn:>9s}  {verdict}"
        )


if __name__ == "__main__":
    main()
