# Configuration checks, the inventory of raw nights, the calibration plan and
# every input function. Nothing here touches pixels; header reading is cached
# in <results_dir>/.cache so that re-parsing an unchanged archive is cheap.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from ccdreduce import (
    codedeps,
    errors,
    frametable,
    inventory,
    policy,
    stacking,
)  # noqa: E402
from ccdreduce.config import check_config, normalise, pixel_settings  # noqa: E402

normalise(config)
validate(config, "../schemas/config.schema.yaml")

RAW = config["raw_dir"].rstrip("/")
RESULTS = config["results_dir"].rstrip("/")
PIXEL_SETTINGS = pixel_settings(config)
# masters never divide by a flat: min_flat is not theirs to rerun for
MASTER_SETTINGS = {k: v for k, v in PIXEL_SETTINGS.items() if k != "min_flat"}

try:
    check_config(config)
    NIGHTS = inventory.scan(RAW, config, cache_dir=f"{RESULTS}/.cache/headers")
    PLAN = policy.make_plan(
        NIGHTS,
        max_borrow_days=config["calibration"]["max_borrow_days"],
        overscan=config["overscan"]["subtract"],
        on_missing=config["calibration"]["on_missing"],
    )
except (errors.ConfigProblem, errors.CalibrationMissing) as exc:
    raise WorkflowError(str(exc)) from None

STACKING = config["stacking"]
STACKS = stacking.stack_groups(PLAN, STACKING["group_by"])
STACK_OF = {
    (f.night, f.stem): group for group, frames in STACKS.items() for f in frames
}
for _method in STACKING["methods"]:
    if _method not in STACKING["combine"]:
        raise WorkflowError(
            f"stacking.methods names {_method!r}, which has no entry under "
            f"stacking.combine. Fix: add one, e.g. {_method}: {{method: median}}"
        )


wildcard_constraints:
    night=r"[A-Za-z0-9._-]+",
    exposure=r"[0-9.e+-]+",
    filter=r"[A-Za-z0-9._-]+",
    stem=r"[^/]+",
    group=r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*",


def code(script):
    """The package modules a rule's script runs, declared as inputs so that
    editing one reruns the rules that use it (Snakemake tracks only the
    script file itself)."""
    return list(codedeps.modules_of(Path(workflow.basedir) / "scripts" / script))


def _master(wildcards, kind):
    key = {
        "bias": "",
        "dark": wildcards.get("exposure"),
        "flat": wildcards.get("filter"),
    }
    ref = policy.MasterRef(wildcards.night, kind, key[kind] or "")
    if ref not in PLAN.masters:
        raise WorkflowError(f"no {ref.filename} is planned for night {ref.night}")
    return PLAN.masters[ref]


def master_input(kind):
    """Raw frames of a master and the masters they are calibrated with."""

    def inputs(wildcards):
        master = _master(wildcards, kind)
        return {
            "frames": [f.path for f in master.frames],
            "masters": [m.path(RESULTS) for m in master.needed_masters()],
        }

    return inputs


def master_frames(kind):
    """(raw path, path relative to raw_dir, recipe) of each input frame."""

    def frames(wildcards):
        master = _master(wildcards, kind)
        return [
            [f.path, f.relpath, master.recipes[f.relpath].as_dict()]
            for f in master.frames
        ]

    return frames


def _light(wildcards):
    key = (wildcards.night, wildcards.stem)
    if key not in PLAN.lights:
        raise WorkflowError(
            f"no science frame {wildcards.stem} in night {wildcards.night}"
        )
    return PLAN.lights[key]


def calibrate_input(wildcards):
    frame, recipe = _light(wildcards)
    return {"raw": frame.path, "masters": [m.path(RESULTS) for m in recipe.masters()]}


def calibrate_params(wildcards):
    frame, recipe = _light(wildcards)
    return {
        "raw": frame.relpath,
        "recipe": recipe.as_dict(),
        "overrides": frame.overrides,
    }


def night_files(wildcards):
    """Every FITS file of a night, used or not: the table lists them all."""
    return [f.path for f in NIGHTS[wildcards.night].frames]


def night_table(wildcards):
    return frametable.rows(PLAN, wildcards.night)


def night_targets(night):
    masters = [m.ref.path(RESULTS) for m in PLAN.masters_of(night)]
    return (
        masters
        + [m.replace(".fits", ".png") for m in masters]
        + [
            f"{RESULTS}/calibrated/{night}/{f.stem}.fits"
            for f, _ in PLAN.lights_of(night)
        ]
        + [f"{RESULTS}/calib/{night}/frames.ecsv"]
    )


def group_frames(wildcards):
    if wildcards.group not in STACKS:
        raise WorkflowError(
            f"no stack {wildcards.group!r}; stacks: {', '.join(STACKS)}"
        )
    return STACKS[wildcards.group]


def group_files(pattern):
    """One path per frame of the stack, from a pattern with {night}, {stem}."""

    def files(wildcards):
        return [
            pattern.format(results=RESULTS, night=f.night, stem=f.stem)
            for f in group_frames(wildcards)
        ]

    return files


def group_frame_info(wildcards):
    return [
        {
            "id": stacking.frame_id(f),
            "night": f.night,
            "stem": f.stem,
            "file": f.relpath,
        }
        for f in group_frames(wildcards)
    ]


def group_calibrated(wildcards):
    return {
        stacking.frame_id(f): f"{RESULTS}/calibrated/{f.night}/{f.stem}.fits"
        for f in group_frames(wildcards)
    }


def pinned_reference(group):
    return STACKING["reference"].get(group)


def reference_of_frame(wildcards):
    return (
        f"{RESULTS}/stacks/{STACK_OF[(wildcards.night, wildcards.stem)]}/reference.json"
    )


def stack_targets(group):
    folder = f"{RESULTS}/stacks/{group}"
    return (
        [f"{folder}/{m}.fits" for m in STACKING["methods"]]
        + [f"{folder}/{m}.png" for m in STACKING["methods"]]
        + [f"{folder}/frames.ecsv", f"{folder}/frames.png", f"{folder}/stats.ecsv"]
    )


def calibration_targets():
    return [target for night in NIGHTS for target in night_targets(night)]


def all_targets():
    return calibration_targets() + [
        target for group in STACKS for target in stack_targets(group)
    ]
