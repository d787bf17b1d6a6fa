# Configuration checks, the inventory of raw nights, the calibration plan and
# every input function. Nothing here touches pixels; header reading is cached
# in <results_dir>/.cache so that re-parsing an unchanged archive is cheap.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from ccdreduce import (
    codedeps,
    errors,
    frametable,
    inventory,
    policy,
    stacking,
    stalelock,
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

if workflow.is_main_process:
    _freed = stalelock.clear_if_stale()
    if _freed:
        logger.warning(_freed)


onstart:
    stalelock.record_holder()


onsuccess:
    stalelock.forget_holder()


onerror:
    stalelock.forget_holder()


STACKING = config["stacking"]
STACKS = stacking.stack_groups(PLAN, STACKING["group_by"])
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
    """Fingerprint of the package modules a rule's script runs, given as a
    param so that editing one reruns the rules that use it (Snakemake tracks
    only the script file itself)."""
    return codedeps.fingerprint(Path(workflow.basedir) / "scripts" / script)


def master_preview(name):
    """The PNG a master rule draws beside its FITS, for the report."""
    return report(
        f"{RESULTS}/calib/{{night}}/{name}.png",
        category="Masters",
        subcategory="{night}",
        labels={"night": "{night}", "master": name},
    )


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


def _lights(wildcards):
    lights = PLAN.lights_of(wildcards.night)
    if not lights:
        raise WorkflowError(
            f"night {wildcards.night} has no science frame to calibrate"
        )
    return lights


def calibrate_input(wildcards):
    """A night's raw science frames and every master they are calibrated with."""
    lights = _lights(wildcards)
    return {
        "raw": [frame.path for frame, _ in lights],
        "masters": sorted({m.path(RESULTS) for _, r in lights for m in r.masters()}),
    }


def calibrate_params(wildcards):
    return [
        {
            "id": stacking.frame_id(frame),
            "stem": frame.stem,
            "path": frame.path,
            "raw": frame.relpath,
            "exposure": frame.exposure,
            "recipe": recipe.as_dict(),
            "overrides": frame.overrides,
        }
        for frame, recipe in _lights(wildcards)
    ]


def night_table(wildcards):
    return frametable.rows(PLAN, wildcards.night)


def night_products(wildcards):
    """One night's masters and calibrated frames: the night's frame table is
    written after them, so it stands for the night (`snakemake
    <results>/calib/<night>/frames.ecsv` reduces one night, previews and star
    catalogues included). Raw files are not inputs: what the table says of
    them comes from the plan, a param."""
    night = wildcards.night
    products = [m.ref.path(RESULTS) for m in PLAN.masters_of(night)]
    if PLAN.lights_of(night):
        products.append(f"{RESULTS}/calibrated/{night}")
    return products


def group_frames(wildcards):
    if wildcards.group not in STACKS:
        raise WorkflowError(
            f"no stack {wildcards.group!r}; stacks: {', '.join(STACKS)}"
        )
    return STACKS[wildcards.group]


def stack_night_dirs(kind):
    """The per-night folders (calibrated, catalogs) holding a stack's frames."""

    def dirs(wildcards):
        nights = sorted({f.night for f in group_frames(wildcards)})
        return [f"{RESULTS}/{kind}/{night}" for night in nights]

    return dirs


def catalog_path(frame):
    return f"{RESULTS}/catalogs/{frame.night}/{frame.stem}.ecsv"


def calibrated_path(frame):
    return f"{RESULTS}/calibrated/{frame.night}/{frame.stem}.fits"


def group_frame_info(wildcards):
    return [
        {
            "id": stacking.frame_id(f),
            "night": f.night,
            "stem": f.stem,
            "file": f.relpath,
            "catalog": catalog_path(f),
            "registered": stacking.registered_path(
                f"{RESULTS}/registered", wildcards.group, stacking.frame_id(f)
            ),
        }
        for f in group_frames(wildcards)
    ]


def registered_dirs(wildcards):
    """The register jobs' folders of a stack: one per night."""
    nights = sorted({f.night for f in group_frames(wildcards)})
    return [
        stacking.registered_dir(f"{RESULTS}/registered", night, wildcards.group)
        for night in nights
    ]


def night_group_info(wildcards):
    """What the register job needs of each frame of one stack and night."""
    return [
        {
            "id": stacking.frame_id(f),
            "stem": f.stem,
            "calibrated": calibrated_path(f),
            "catalog": catalog_path(f),
        }
        for f in night_group_frames(wildcards)
    ]


def night_group_frames(wildcards):
    """The frames of one stack taken in one night."""
    frames = [f for f in group_frames(wildcards) if f.night == wildcards.night]
    if not frames:
        raise WorkflowError(
            f"stack {wildcards.group!r} has no frame from night {wildcards.night}"
        )
    return frames


def group_calibrated(wildcards):
    return {stacking.frame_id(f): calibrated_path(f) for f in group_frames(wildcards)}


def pinned_reference(group):
    return STACKING["reference"].get(group)


def stack_targets(group):
    folder = f"{RESULTS}/stacks/{group}"
    return (
        [f"{folder}/{m}.fits" for m in STACKING["methods"]]
        + [f"{folder}/{m}.png" for m in STACKING["methods"]]
        + [f"{folder}/frames.ecsv", f"{folder}/frames.png", f"{folder}/stats.ecsv"]
    )


# Cluster resources that grow with the frames a job reads: (MB fixed, MB per
# megapixel-frame, minutes fixed, minutes per megapixel-frame). Rough upper
# estimates from the benchmarks (4k x 4k frames: ~0.2 s to calibrate, masters
# combined in memory); on a cluster a retry (--retries) doubles them, and
# --set-resources in the profile overrides them.
COSTS = {
    "master": (400, 12, 2, 0.02),
    "calibrate": (400, 40, 2, 0.1),
    "register": (400, 30, 2, 0.05),
    "stack": (400, 8, 5, 0.03),
}


def _frames_of_job(wildcards, kind, master_kind):
    if kind == "master":
        return _master(wildcards, master_kind).frames
    if kind == "calibrate":  # frames calibrated in parallel by the threads
        return [frame for frame, _ in _lights(wildcards)][:2]
    if kind == "register":
        return night_group_frames(wildcards)
    return group_frames(wildcards)


def _megapixel_frames(frames):
    ny, nx = frames[0].shape or (4096, 4096)
    return len(frames) * ny * nx / 1e6


def job_memory(kind, master_kind=None):
    fixed, per_frame, _, _ = COSTS[kind]

    def mem_mb(wildcards, attempt):
        frames = _frames_of_job(wildcards, kind, master_kind)
        return int(attempt * (fixed + per_frame * _megapixel_frames(frames)))

    return mem_mb


def job_runtime(kind, master_kind=None):
    _, _, fixed, per_frame = COSTS[kind]

    def runtime(wildcards, attempt):
        frames = _frames_of_job(wildcards, kind, master_kind)
        return 1 + int(attempt * (fixed + per_frame * _megapixel_frames(frames)))

    return runtime


def calibration_targets():
    return [f"{RESULTS}/calib/{night}/frames.ecsv" for night in NIGHTS]


def all_targets():
    return calibration_targets() + [
        target for group in STACKS for target in stack_targets(group)
    ]
