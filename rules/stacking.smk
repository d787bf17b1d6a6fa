# Stacks: a reference chosen per stack from the calibrated frames' star
# catalogues, each night's frames registered onto it and sky-subtracted,
# scale factors measured, and the frames combined with each configured method.


rule choose_reference:
    input:
        catalogs=stack_night_dirs("catalogs"),
    output:
        layout.stack(RESULTS, "{group}", "reference.json"),
    log:
        layout.log(RESULTS, layout.stack(None, "{group}", "reference.json")),
    priority: PRIORITY["stack"]
    params:
        code=code("choose_reference.py"),
        frames=group_frame_info,
        pinned=lambda wc: pinned_reference(wc.group),
        settings=STACKING["registration"],
    run:
        run_script("choose_reference.py", locals())


rule register:
    input:
        calibrated=layout.calibrated_dir(RESULTS, "{night}"),
        catalogs=layout.catalogs_dir(RESULTS, "{night}"),
        # ancient: a stack's reference file is rewritten when nights are
        # added, but the reference itself stays, so registered frames stay
        reference=ancient(layout.stack(RESULTS, "{group}", "reference.json")),
    output:
        directory(layout.registered_dir(RESULTS, "{night}", "{group}")),
    log:
        layout.log(RESULTS, layout.registered_dir(None, "{night}", "{group}")),
    priority: PRIORITY["stack"]
    resources:
        mem_mb=job_memory("register"),
        runtime=job_runtime("register"),
    params:
        code=code("register_night.py"),
        group=lambda wc: wc.group,
        frames=night_group_info,
        # not read by the script: pinning another reference reruns the job
        pinned=lambda wc: pinned_reference(wc.group) or "auto",
        settings={
            "resample": STACKING["registration"]["resample"],
            "transform": STACKING["registration"]["transform"],
            "max_shift": STACKING["registration"]["max_shift"],
            "min_matches": STACKING["registration"]["min_matches"],
            "min_match_fraction": STACKING["registration"]["min_match_fraction"],
            "max_rms": STACKING["registration"]["max_rms"],
            "max_corner_shift": STACKING["registration"]["max_corner_shift"],
            "sky": STACKING["sky"],
            "background_box": STACKING["background_box"],
        },
    run:
        run_script("register_night.py", locals())


rule scale_frames:
    input:
        reference=layout.stack(RESULTS, "{group}", "reference.json"),
        registered=registered_dirs,
        catalogs=stack_night_dirs("catalogs"),
    output:
        table=report(
            layout.stack(RESULTS, "{group}", "frames.ecsv"),
            caption="../report/stack_frames.rst",
            category="Stacks",
            subcategory="{group}",
            labels={"stack": "{group}", "file": "frames.ecsv"},
        ),
        plot=report(
            layout.stack(RESULTS, "{group}", "frames.png"),
            caption="../report/stack_plot.rst",
            category="Stacks",
            subcategory="{group}",
            labels={"stack": "{group}", "file": "shifts, scales, FWHM"},
        ),
    log:
        layout.log(RESULTS, layout.stack(None, "{group}", "frames.ecsv")),
    priority: PRIORITY["stack"]
    resources:
        mem_mb=job_memory("stack"),
        runtime=job_runtime("stack"),
    params:
        code=code("scale_frames.py"),
        group=lambda wc: wc.group,
        frames=group_frame_info,
        scaling=STACKING["scaling"],
        select=STACKING["select"],
    run:
        run_script("scale_frames.py", locals())


rule combine_stack:
    input:
        table=layout.stack(RESULTS, "{group}", "frames.ecsv"),
        registered=registered_dirs,
    output:
        stack=layout.stack(RESULTS, "{group}", "{method}.fits"),
        preview=report(
            layout.stack(RESULTS, "{group}", "{method}.png"),
            caption="../report/stack_preview.rst",
            category="Stacks",
            subcategory="{group}",
            labels={"stack": "{group}", "file": "{method}"},
        ),
    log:
        layout.log(RESULTS, layout.stack(None, "{group}", "{method}.fits")),
    wildcard_constraints:
        method="|".join(STACKING["methods"]),
    priority: PRIORITY["combine"]
    threads: job_threads("stack")
    resources:
        # the combine reads by row bands within stacking.memory_mb
        mem_mb=STACKING["memory_mb"] + 512,
        runtime=job_runtime("stack"),
    params:
        code=code("combine_stack.py"),
        group=lambda wc: wc.group,
        combine=lambda wc: STACK_COMBINE[wc.method],
        memory_mb=STACKING["memory_mb"],
        frames=group_frame_info,
    run:
        run_script("combine_stack.py", locals())


rule stack_stats:
    input:
        table=layout.stack(RESULTS, "{group}", "frames.ecsv"),
        stacks=expand(
            layout.stack(RESULTS, "{{group}}", "{method}.fits"),
            method=STACKING["methods"],
        ),
        registered=registered_dirs,
    output:
        report(
            layout.stack(RESULTS, "{group}", "stats.ecsv"),
            caption="../report/stack_stats.rst",
            category="Stacks",
            subcategory="{group}",
            labels={"stack": "{group}", "file": "stats.ecsv"},
        ),
    log:
        layout.log(RESULTS, layout.stack(None, "{group}", "stats.ecsv")),
    priority: PRIORITY["summary"]
    params:
        code=code("stack_stats.py"),
        group=lambda wc: wc.group,
        methods=STACKING["methods"],
        frames=group_frame_info,
    run:
        run_script("stack_stats.py", locals())


# a colour group's <method>.png is its colour preview, not a stack's own
ruleorder: colour_preview > combine_stack


rule colour_preview:
    input:
        expand(
            layout.stack(RESULTS, "{{group}}/{channel}", "{{method}}.fits"),
            channel=stacking.CHANNELS,
        ),
    output:
        report(
            layout.stack(RESULTS, "{group}", "{method}.png"),
            caption="../report/colour_preview.rst",
            category="Stacks",
            subcategory="{group}",
            labels={"stack": "{group}", "file": "{method} (colour)"},
        ),
    log:
        layout.log(RESULTS, layout.stack(None, "{group}", "{method}.fits"), "colour"),
    wildcard_constraints:
        # only the colour groups: every other <method>.png is a stack's preview
        group=COLOUR_GROUP_PATTERN,
        method="|".join(STACKING["methods"]),
    priority: PRIORITY["summary"]
    params:
        code=code("colour_preview.py"),
    run:
        run_script("colour_preview.py", locals())
