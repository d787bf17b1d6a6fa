# Stacks: stars found in every calibrated frame, a reference chosen per stack,
# frames registered onto it and sky-subtracted, scale factors measured, and
# the frames combined with each configured method.


rule star_catalog:
    input:
        f"{RESULTS}/calibrated/{{night}}/{{stem}}.fits",
        code=code("star_catalog.py"),
    output:
        f"{RESULTS}/catalogs/{{night}}/{{stem}}.ecsv",
    log:
        f"{RESULTS}/logs/catalogs/{{night}}/{{stem}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/catalogs/{{night}}/{{stem}}.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        frame=lambda wc: f"{wc.night}/{wc.stem}",
        detect_sigma=STACKING["registration"]["detect_sigma"],
    script:
        "../scripts/star_catalog.py"


rule choose_reference:
    input:
        catalogs=group_files("{results}/catalogs/{night}/{stem}.ecsv"),
        code=code("choose_reference.py"),
    output:
        f"{RESULTS}/stacks/{{group}}/reference.json",
    log:
        f"{RESULTS}/logs/stacks/{{group}}/reference.log",
    benchmark:
        f"{RESULTS}/benchmarks/stacks/{{group}}/reference.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        frames=lambda wc: [stacking.frame_id(f) for f in group_frames(wc)],
        calibrated=group_calibrated,
        pinned=lambda wc: pinned_reference(wc.group),
    script:
        "../scripts/choose_reference.py"


rule register:
    input:
        calibrated=f"{RESULTS}/calibrated/{{night}}/{{stem}}.fits",
        catalog=f"{RESULTS}/catalogs/{{night}}/{{stem}}.ecsv",
        # ancient: a stack's reference file is rewritten when nights are
        # added, but the reference itself stays, so registered frames stay
        reference=lambda wc: ancient(reference_of_frame(wc)),
        code=code("register_frame.py"),
    output:
        f"{RESULTS}/registered/{{night}}/{{stem}}.fits",
    log:
        f"{RESULTS}/logs/registered/{{night}}/{{stem}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/registered/{{night}}/{{stem}}.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        frame=lambda wc: f"{wc.night}/{wc.stem}",
        pinned=lambda wc: pinned_reference(STACK_OF[(wc.night, wc.stem)]) or "auto",
        resample=STACKING["registration"]["resample"],
        max_shift=STACKING["registration"]["max_shift"],
        min_matches=STACKING["registration"]["min_matches"],
        sky=STACKING["sky"],
        background_box=STACKING["background_box"],
    script:
        "../scripts/register_frame.py"


rule scale_frames:
    input:
        reference=f"{RESULTS}/stacks/{{group}}/reference.json",
        registered=group_files("{results}/registered/{night}/{stem}.fits"),
        catalogs=group_files("{results}/catalogs/{night}/{stem}.ecsv"),
        code=code("scale_frames.py"),
    output:
        table=report(
            f"{RESULTS}/stacks/{{group}}/frames.ecsv",
            category="Stacks",
            subcategory="{group}",
            labels={"stack": "{group}", "file": "frames.ecsv"},
        ),
        plot=report(
            f"{RESULTS}/stacks/{{group}}/frames.png",
            category="Stacks",
            subcategory="{group}",
            labels={"stack": "{group}", "file": "shifts, scales, FWHM"},
        ),
    log:
        f"{RESULTS}/logs/stacks/{{group}}/frames.log",
    benchmark:
        f"{RESULTS}/benchmarks/stacks/{{group}}/frames.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        group=lambda wc: wc.group,
        frames=group_frame_info,
        scaling=STACKING["scaling"],
    script:
        "../scripts/scale_frames.py"


rule combine_stack:
    input:
        table=f"{RESULTS}/stacks/{{group}}/frames.ecsv",
        registered=group_files("{results}/registered/{night}/{stem}.fits"),
        code=code("combine_stack.py"),
    output:
        f"{RESULTS}/stacks/{{group}}/{{method}}.fits",
    log:
        f"{RESULTS}/logs/stacks/{{group}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/stacks/{{group}}/{{method}}.tsv"
    wildcard_constraints:
        method="|".join(STACKING["methods"]),
    conda:
        "../envs/reduce.yaml"
    threads: 2
    resources:
        mem_mb=STACKING["memory_mb"] + 512,
    params:
        group=lambda wc: wc.group,
        combine=lambda wc: STACKING["combine"][wc.method],
        memory_mb=STACKING["memory_mb"],
        registered=f"{RESULTS}/registered",
    script:
        "../scripts/combine_stack.py"


rule stack_preview:
    input:
        f"{RESULTS}/stacks/{{group}}/{{method}}.fits",
        code=code("preview.py"),
    output:
        report(
            f"{RESULTS}/stacks/{{group}}/{{method}}.png",
            category="Stacks",
            subcategory="{group}",
            labels={"stack": "{group}", "file": "{method}"},
        ),
    log:
        f"{RESULTS}/logs/stacks/{{group}}/{{method}}_preview.log",
    benchmark:
        f"{RESULTS}/benchmarks/stacks/{{group}}/{{method}}_preview.tsv"
    wildcard_constraints:
        method="|".join(STACKING["methods"]),
    conda:
        "../envs/reduce.yaml"
    script:
        "../scripts/preview.py"


rule stack_stats:
    input:
        table=f"{RESULTS}/stacks/{{group}}/frames.ecsv",
        stacks=expand(
            f"{RESULTS}/stacks/{{{{group}}}}/{{method}}.fits",
            method=STACKING["methods"],
        ),
        registered=group_files("{results}/registered/{night}/{stem}.fits"),
        code=code("stack_stats.py"),
    output:
        report(
            f"{RESULTS}/stacks/{{group}}/stats.ecsv",
            category="Stacks",
            subcategory="{group}",
            labels={"stack": "{group}", "file": "stats.ecsv"},
        ),
    log:
        f"{RESULTS}/logs/stacks/{{group}}/stats.log",
    benchmark:
        f"{RESULTS}/benchmarks/stacks/{{group}}/stats.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        methods=STACKING["methods"],
        registered=f"{RESULTS}/registered",
    script:
        "../scripts/stack_stats.py"
