# Configuration checks, the inventory of raw nights, the calibration plan and
# every input function. Nothing here touches pixels; header reading is cached
# in <results_dir>/.cache so that re-parsing an unchanged archive is cheap.

import atexit
import gc
import re
import sys
import threading
import time
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

# This workflow's own scripts/ folder: current_basedir is this file's folder
# (rules/), also when another workflow imports this one as a module, where
# workflow.basedir is the host's folder.
SCRIPTS_DIR = Path(workflow.current_basedir).parent / "scripts"
sys.path.insert(0, str(SCRIPTS_DIR))

from ccdreduce import workers  # noqa: E402

# Before the first job can run, Snakemake imports itself, parses this
# workflow, reads the night's headers and plans (~2 s): the workers' imports
# are made meanwhile, on the other core (ccdreduce.workers.start).
if workflow.is_main_process and workers.runs_jobs_here(sys.argv):
    workers.start()
# Python's own exit examines every object Snakemake and astropy made for
# cycles to collect (~0.4 s, after the run's last line): nothing left needs
# it, so the exit skips that search (exit handlers all still run; objects
# in reference cycles are not finalised, and none of ours holds a file).
atexit.register(gc.freeze)

from ccdreduce import (
    codedeps,
    errors,
    frametable,
    inventory,
    layout,
    nightlog,
    policy,
    runlog,
    stacking,
    stalelock,
)  # noqa: E402
from ccdreduce.combine import check_combine_config, complete_entries  # noqa: E402
from ccdreduce.config import (  # noqa: E402
    check_against_plan,
    check_config,
    noise_settings,
    normalise,
    pixel_settings,
)

normalise(config)
try:  # before the schema, so that a typo is named with its fix
    check_combine_config(config)
except errors.ConfigProblem as exc:
    raise WorkflowError(str(exc)) from None
validate(config, "../schemas/config.schema.yaml")
# every combine entry complete, defaults of its kind filled in (combine.DEFAULTS):
# rules pass these, so that a changed default reruns what it changes
MASTER_COMBINE = complete_entries(config["calibration"]["combine"], "master")
STACK_COMBINE = complete_entries(config["stacking"]["combine"], "stack")

RAW = config["raw_dir"].rstrip("/")
RESULTS = config["results_dir"].rstrip("/")
PIXEL_SETTINGS = pixel_settings(config)
# masters never divide by a flat nor take a pedestal: min_flat and pedestal
# are not theirs to rerun for
MASTER_SETTINGS = {
    k: v for k, v in PIXEL_SETTINGS.items() if k not in ("min_flat", "pedestal")
}
# each frame's gain and read noise besides what the masters measured
NOISE_SETTINGS = noise_settings(config)

try:
    check_config(config)
    NIGHTS = inventory.scan(RAW, config, cache_dir=layout.header_cache(RESULTS))
    PLAN = policy.make_plan(
        NIGHTS,
        max_borrow_days=config["calibration"]["max_borrow_days"],
        overscan=config["overscan"]["subtract"],
        on_missing=config["calibration"]["on_missing"],
        temperature_tolerance=config["calibration"]["temperature_tolerance"],
        dark_scaling=config["calibration"]["dark_scaling"],
    )
except (errors.ConfigProblem, errors.CalibrationMissing) as exc:
    raise WorkflowError(str(exc)) from None

# A lock left by a killed run is removed when, and only when, this run takes
# the lock: not here at parse time (a dry run cannot be told from a run yet)
# nor in onstart (after the lock, too late). Only the dead run's own lock
# files go, and a run that ends removes only its own (Snakemake would remove
# all, live runs' too); see ccdreduce.stalelock.
if workflow.is_main_process and not stalelock.guard_snakemake_lock(logger):
    logger.warning(
        "this Snakemake's lock cannot be followed (ccdreduce.stalelock): a lock left "
        "by a killed run stays until `snakemake --unlock`, once no run is running"
    )


STACKING = config["stacking"]
try:
    STACKS = stacking.stack_groups(PLAN, STACKING["group_by"])
except errors.ConfigProblem as exc:
    raise WorkflowError(str(exc)) from None
# colour groups: each stacked as <group>/R, /G, /B, previewed as <group>/<method>.png
COLOUR_GROUPS = stacking.colour_groups(STACKS)
# the colour preview rule's group wildcard: those groups only ("(?!)" matches none)
COLOUR_GROUP_PATTERN = "|".join(re.escape(g) for g in COLOUR_GROUPS) or "(?!)"
try:
    # a pin may name a colour group: it holds for its channels
    check_against_plan(
        config, PLAN, STACKS | {g: STACKS[f"{g}/G"] for g in COLOUR_GROUPS}
    )
except errors.ConfigProblem as exc:
    raise WorkflowError(str(exc)) from None
if workflow.is_main_process:  # distinct header values kept apart: say how
    for _said in inventory.renamed(NIGHTS):
        logger.warning(_said)
for _method in STACKING["methods"]:
    if _method not in STACK_COMBINE:
        raise WorkflowError(
            errors.say(
                f"stacking.methods names {_method!r}, which has no entry under "
                "stacking.combine",
                f"add one, e.g. {_method}: {{method: median}}",
            )
        )


wildcard_constraints:
    night=r"[A-Za-z0-9._-]+",
    exposure=r"[0-9.e+-]+",
    filter=r"[A-Za-z0-9._-]+",
    camera=r"[A-Za-z0-9._-]+",
    group=r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*",


def code(script):
    """Fingerprint of a rule's script and the package modules it runs, given
    as a param so that editing one reruns the rules that use it (Snakemake
    does not track what a run block calls)."""
    return codedeps.fingerprint(SCRIPTS_DIR / script)


def run_script(script, job):
    """A rule's run block: its script (in scripts/) run in a warm worker
    process that keeps its imports from one job to the next (ccdreduce.workers:
    a fresh Python per job cost ~1.1 s, more than most jobs' work), and its
    timing file beside its log (runlog.write_benchmark). ``job`` is the run
    block's ``locals()``: input, output, params, wildcards, threads,
    resources, log and rule, as Snakemake gives them to a run block."""
    started = time.perf_counter()
    usage = workers.run(SCRIPTS_DIR / script, workers.Job.of_run_block(job, config))
    runlog.write_benchmark(
        layout.benchmark_of_log(RESULTS, job["log"][0]),
        time.perf_counter() - started,
        usage,
    )


def master_preview(kind, key="", camera=""):
    """The PNG a master rule draws beside its FITS, for the report."""
    path = layout.master_preview(RESULTS, "{night}", kind, key, camera)
    return report(
        path,
        caption="../report/master.rst",
        category="Masters",
        subcategory="{night}",
        labels={"night": "{night}", "master": Path(path).stem},
    )


def _master(wildcards, kind):
    key = {
        "bias": "",
        "dark": wildcards.get("exposure"),
        "flat": wildcards.get("filter"),
    }
    ref = policy.MasterRef(
        wildcards.night, kind, key[kind] or "", camera=wildcards.get("camera", "")
    )
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
    """Each input frame: raw path, path relative to raw_dir, recipe, start
    and exposure."""

    def frames(wildcards):
        master = _master(wildcards, kind)
        return [
            {
                "path": f.path,
                "raw": f.relpath,
                "recipe": master.recipes[f.relpath].as_dict(),
                "date_obs": f.date_obs,
                "exposure": f.exposure,
            }
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
    given = config["calibration"]["bad_pixels"].get("file")
    return {
        "raw": [frame.path for frame, _ in lights],
        "masters": sorted({m.path(RESULTS) for _, r in lights for m in r.masters()}),
        "bad_pixels": [given] if given else [],
    }


def bad_pixels_preview():
    """The PNG of a night's bad-pixel map, for the report."""
    return report(
        layout.bad_pixels(RESULTS, "{night}", ".png"),
        caption="../report/bad_pixels.rst",
        category="Masters",
        subcategory="{night}",
        labels={"night": "{night}", "master": "bad_pixels"},
    )


def colour_params(frame):
    """A colour frame's pattern, demosaic method and channel files (nothing
    for a mono frame, so that its job's params stay as they were)."""
    if not frame.bayer:
        return {}
    return {
        "bayer": frame.bayer,
        "demosaic": config["colour"]["demosaic"],
        "channels": {
            channel: layout.calibrated_channel(
                RESULTS, frame.night, frame.stem, channel
            )
            for channel in stacking.CHANNELS
        },
    }


def calibrate_params(wildcards):
    return [
        {
            "id": layout.frame_id(frame.night, frame.stem),
            "stem": frame.stem,
            "calibrated": layout.calibrated(RESULTS, frame.night, frame.stem),
            "catalog": layout.catalog(RESULTS, frame.night, frame.stem),
            "path": frame.path,
            "raw": frame.relpath,
            "exposure": frame.exposure,
            "date_obs": frame.date_obs,
            "site_target": frame.site_target,
            "recipe": recipe.as_dict(),
            "overrides": frame.overrides,
        }
        | colour_params(frame)
        for frame, recipe in _lights(wildcards)
    ]


def night_table(wildcards):
    return frametable.rows(PLAN, wildcards.night)


def night_log_rows(wildcards):
    return nightlog.rows(PLAN, wildcards.night)


def night_products(wildcards):
    """One night's masters and calibrated frames: the night's frame table is
    written after them, so it stands for the night (`snakemake
    <results>/calib/<night>/frames.ecsv` reduces one night, previews and star
    catalogues included). Raw files are not inputs: what the table says of
    them comes from the plan, a param."""
    night = wildcards.night
    products = [m.ref.path(RESULTS) for m in PLAN.masters_of(night)]
    if PLAN.lights_of(night):
        products.append(layout.calibrated_dir(RESULTS, night))
    return products


def group_frames(wildcards):
    if wildcards.group not in STACKS:
        raise WorkflowError(
            f"no stack {wildcards.group!r}; stacks: {', '.join(STACKS)}"
        )
    return STACKS[wildcards.group]


def stack_nights(wildcards):
    return sorted({f.night for f in group_frames(wildcards)})


def stack_night_dirs(kind):
    """The per-night folders (calibrated, catalogs) holding a stack's frames."""
    night_dir = {"calibrated": layout.calibrated_dir, "catalogs": layout.catalogs_dir}[
        kind
    ]

    def dirs(wildcards):
        return [night_dir(RESULTS, night) for night in stack_nights(wildcards)]

    return dirs


def registered_dirs(wildcards):
    """The register jobs' folders of a stack: one per night."""
    return [
        layout.registered_dir(RESULTS, night, wildcards.group)
        for night in stack_nights(wildcards)
    ]


def frame_info(frame, group):
    """What the stacking scripts need of one frame: its id, raw file and the
    paths of its calibrated, catalogue and registered files. A colour
    frame in a channel's stack (<group>/R): the channel's file, and the one
    catalogue of its luminance, so every channel registers alike."""
    frame_id = layout.frame_id(frame.night, frame.stem)
    info = {
        "id": frame_id,
        "night": frame.night,
        "stem": frame.stem,
        "file": frame.relpath,
        "calibrated": layout.calibrated(RESULTS, frame.night, frame.stem),
        "catalog": layout.catalog(RESULTS, frame.night, frame.stem),
        "registered": layout.registered(RESULTS, group, frame_id),
    }
    channel = stacking.channel_of(frame, group)
    if channel:
        info["calibrated"] = layout.calibrated_channel(
            RESULTS, frame.night, frame.stem, channel
        )
        info["channel"] = channel
    return info


def group_frame_info(wildcards):
    return [frame_info(f, wildcards.group) for f in group_frames(wildcards)]


def night_group_info(wildcards):
    """The frames of one stack taken in one night (a register job)."""
    frames = [
        frame_info(f, wildcards.group)
        for f in group_frames(wildcards)
        if f.night == wildcards.night
    ]
    if not frames:
        raise WorkflowError(
            f"stack {wildcards.group!r} has no frame from night {wildcards.night}"
        )
    return frames


def pinned_reference(group):
    """A stack's pinned reference; a colour group's pin holds for its channels."""
    return stacking.pinned(STACKING["reference"], group, COLOUR_GROUPS)


def stack_targets(group):
    names = [f"{m}.fits" for m in STACKING["methods"]]
    names += [f"{m}.png" for m in STACKING["methods"]]
    names += ["frames.ecsv", "frames.png", "stats.ecsv"]
    return [layout.stack(RESULTS, group, name) for name in names]


def colour_targets(group):
    """A colour group's preview per method, from its three channel stacks."""
    return [layout.stack(RESULTS, group, f"{m}.png") for m in STACKING["methods"]]


def calibration_targets():
    return [layout.calib(RESULTS, night, "frames.ecsv") for night in NIGHTS]


def all_targets():
    return (
        calibration_targets()
        + [target for group in STACKS for target in stack_targets(group)]
        + [target for group in COLOUR_GROUPS for target in colour_targets(group)]
    )


def end_scheduler_timers():
    """Snakemake's scheduler re-reads its queue from a threading.Timer (1 s,
    not a daemon) after each round, and Python waits for the last of them
    before it exits: ~2 s added to every run, more than a small night's
    combines. Once the run has ended they have nothing left to wake."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()


onsuccess:
    end_scheduler_timers()


onerror:
    end_scheduler_timers()


def warn_without_threads():
    """Rules run their scripts from run blocks (run_script); without
    --force-use-threads Snakemake runs each run block in a whole new
    Snakemake process (parse, inventory, plan: seconds a job)."""
    if workflow.is_main_process and not workflow.use_threads:
        logger.warning(
            "ccdreduce: --force-use-threads is not set (this workflow's "
            "profiles/default sets it): every job will start a whole Snakemake "
            "of its own, seconds each. Fix: add --force-use-threads, or "
            "force-use-threads: true in the profile you run with."
        )


onstart:
    warn_without_threads()
