# The cluster cost model: memory and runtime of each job grow with the frames
# it reads (found with the plan and input functions of rules/common.smk).
#
# COSTS per kind of job: (MB fixed, MB per megapixel held in memory at once,
# minutes fixed, minutes per megapixel processed). Rough upper estimates from
# the benchmarks (4k x 4k frames: ~0.2 s to calibrate). Masters combine all
# their frames in memory; the calibrate job holds one frame per thread;
# registration and the stack rules one frame at a time (combine_stack has its
# own cap, stacking.memory_mb).
# A retry (--retries) doubles them; --set-resources in a profile overrides.
COSTS = {
    "master": (400, 12, 2, 0.02),
    "calibrate": (400, 40, 2, 0.1),
    "register": (400, 30, 2, 0.05),
    "stack": (400, 8, 5, 0.03),
}
#: Frames from which a calibrate or combine job takes two threads: there
#: numpy on whole frames (which lets go of the GIL) is most of the work and
#: two threads nearly halve it. On smaller frames the work is mostly Python
#: (catalogues, headers, times), where two threads of one job take turns,
#: while two one-thread jobs in two worker processes run side by side:
#: benchmarks/end_to_end.py, demo and two nights, ~20 % less wall time.
TWO_THREADS_FROM_MEGAPIXELS = 4.0


def _frames_of(wildcards, kind):
    if kind == "calibrate":
        return [frame for frame, _ in _lights(wildcards)]
    if kind == "register":
        return [f for f in group_frames(wildcards) if f.night == wildcards.night]
    return group_frames(wildcards)


def _threads_for(frames):
    large = frames and _megapixels(frames[:1]) >= TWO_THREADS_FROM_MEGAPIXELS
    return 2 if large else 1


def job_threads(kind):
    def threads(wildcards):
        return _threads_for(_frames_of(wildcards, kind))

    return threads


def _frames_of_job(wildcards, kind, master_kind):
    """(frames held in memory at once, frames processed one after another)."""
    if kind == "master":
        frames = _master(wildcards, master_kind).frames
        return frames, frames
    frames = _frames_of(wildcards, kind)
    if kind == "calibrate":  # one frame in memory per thread
        threads = _threads_for(frames)
        return frames[:threads], frames[::threads]
    return frames[:1], frames


def _megapixels(frames):
    ny, nx = frames[0].shape or (4096, 4096)
    return len(frames) * ny * nx / 1e6


def job_memory(kind, master_kind=None):
    fixed, per_megapixel, _, _ = COSTS[kind]

    def mem_mb(wildcards, attempt):
        held, _ = _frames_of_job(wildcards, kind, master_kind)
        return int(attempt * (fixed + per_megapixel * _megapixels(held)))

    return mem_mb


def job_runtime(kind, master_kind=None):
    _, _, fixed, per_megapixel = COSTS[kind]

    def runtime(wildcards, attempt):
        _, processed = _frames_of_job(wildcards, kind, master_kind)
        return 1 + int(attempt * (fixed + per_megapixel * _megapixels(processed)))

    return runtime


# Which ready job runs first when the cores are busy (Snakemake's `priority:`,
# higher first; the greedy selector breaks ties by input size). Every stack
# waits for the last night's calibration, the longest job of a night: a
# night is calibrated as soon as its masters are made, while the other
# cores make the next night's masters; then each stack's chain; frame tables
# (a night's log, input of nothing) fill the gaps. Measured on the demo (2
# cores, medians of 8 alternating runs): 8.07 s without priorities, 8.27 s
# with all masters first (the last calibration then ran alone), 7.85 s so.
PRIORITY = {"calibrate": 50, "master": 40, "stack": 30, "combine": 20, "summary": 10}
