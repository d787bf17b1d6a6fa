# Masters per night (with their previews), then each night's science frames
# calibrated with the masters the plan (rules/common.smk) chose for each, and
# their stars catalogued.


rule master_bias:
    input:
        unpack(master_input("bias")),
    output:
        master=layout.master(RESULTS, "{night}", "bias"),
        preview=master_preview("bias"),
    log:
        layout.log(RESULTS, layout.master(None, "{night}", "bias")),
    priority: PRIORITY["master"]
    resources:
        mem_mb=job_memory("master", "bias"),
        runtime=job_runtime("master", "bias"),
    params:
        code=code("make_master.py"),
        kind="bias",
        settings=MASTER_SETTINGS,
        frames=master_frames("bias"),
        times=config["times"],
        combine=MASTER_COMBINE["bias"],
    run:
        run_script("make_master.py", locals())


# master_dark and master_flat are master_bias for another kind of master:
# what differs is named below, the rest (script, settings) is shared.
use rule master_bias as master_dark with:
    input:
        unpack(master_input("dark")),
    output:
        master=layout.master(RESULTS, "{night}", "dark", "{exposure}"),
        preview=master_preview("dark", "{exposure}"),
    log:
        layout.log(RESULTS, layout.master(None, "{night}", "dark", "{exposure}")),
    resources:
        mem_mb=job_memory("master", "dark"),
        runtime=job_runtime("master", "dark"),
    params:
        kind="dark",
        frames=master_frames("dark"),
        combine=MASTER_COMBINE["dark"],


use rule master_bias as master_flat with:
    input:
        unpack(master_input("flat")),
    output:
        master=layout.master(RESULTS, "{night}", "flat", "{filter}"),
        preview=master_preview("flat", "{filter}"),
    log:
        layout.log(RESULTS, layout.master(None, "{night}", "flat", "{filter}")),
    resources:
        mem_mb=job_memory("master", "flat"),
        runtime=job_runtime("master", "flat"),
    params:
        kind="flat",
        frames=master_frames("flat"),
        combine=MASTER_COMBINE["flat"],


# A night's second camera (or second set point of its darks) has its masters
# in a sub-folder, calib/<night>/<camera>/: the same rules with one wildcard
# more; the night's main camera keeps calib/<night>/bias.fits... (policy.py).
use rule master_bias as master_bias_camera with:
    output:
        master=layout.master(RESULTS, "{night}", "bias", camera="{camera}"),
        preview=master_preview("bias", camera="{camera}"),
    log:
        layout.log(RESULTS, layout.master(None, "{night}", "bias", camera="{camera}")),


use rule master_dark as master_dark_camera with:
    output:
        master=layout.master(RESULTS, "{night}", "dark", "{exposure}", "{camera}"),
        preview=master_preview("dark", "{exposure}", "{camera}"),
    log:
        layout.log(
            RESULTS, layout.master(None, "{night}", "dark", "{exposure}", "{camera}")
        ),


use rule master_flat as master_flat_camera with:
    output:
        master=layout.master(RESULTS, "{night}", "flat", "{filter}", "{camera}"),
        preview=master_preview("flat", "{filter}", "{camera}"),
    log:
        layout.log(
            RESULTS, layout.master(None, "{night}", "flat", "{filter}", "{camera}")
        ),


rule calibrate:
    input:
        unpack(calibrate_input),
    output:
        calibrated=directory(layout.calibrated_dir(RESULTS, "{night}")),
        catalogs=directory(layout.catalogs_dir(RESULTS, "{night}")),
        # made here, not by a job of its own: from the masters this job reads
        bad_pixels=layout.bad_pixels(RESULTS, "{night}"),
        bad_pixels_preview=bad_pixels_preview(),
    log:
        layout.log(RESULTS, layout.calibrated_dir(None, "{night}")),
    priority: PRIORITY["calibrate"]
    threads: job_threads("calibrate")
    resources:
        mem_mb=job_memory("calibrate"),
        runtime=job_runtime("calibrate"),
    params:
        code=code("calibrate_night.py"),
        frames=calibrate_params,
        settings=PIXEL_SETTINGS,
        detect_sigma=STACKING["registration"]["detect_sigma"],
        times=config["times"],
        noise=NOISE_SETTINGS,
        bad_pixels=config["calibration"]["bad_pixels"],
        cosmic_rays=config["calibration"]["cosmic_rays"],
    run:
        run_script("calibrate_night.py", locals())


rule frame_table:
    input:
        night_products,
    output:
        frames=report(
            layout.calib(RESULTS, "{night}", "frames.ecsv"),
            caption="../report/frame_table.rst",
            category="Frame tables",
            labels={"night": "{night}"},
        ),
        night_log=report(
            layout.calib(RESULTS, "{night}", "night_log.ecsv"),
            caption="../report/night_log.rst",
            category="Night logs",
            labels={"night": "{night}"},
        ),
    log:
        layout.log(RESULTS, layout.calib(None, "{night}", "frames.ecsv")),
    params:
        code=code("frame_table.py"),
        rows=night_table,
        log_rows=night_log_rows,
        times=config["times"],
    run:
        run_script("frame_table.py", locals())
