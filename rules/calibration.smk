# Masters per night, then every science frame calibrated with the masters
# the plan (rules/common.smk) chose for it.


rule master_bias:
    input:
        unpack(master_input("bias")),
        code=code("make_master.py"),
    output:
        f"{RESULTS}/calib/{{night}}/bias.fits",
    log:
        f"{RESULTS}/logs/calib/{{night}}/bias.log",
    benchmark:
        f"{RESULTS}/benchmarks/calib/{{night}}/bias.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        kind="bias",
        settings=MASTER_SETTINGS,
        frames=master_frames("bias"),
        combine=config["calibration"]["combine"]["bias"],
    script:
        "../scripts/make_master.py"


rule master_dark:
    input:
        unpack(master_input("dark")),
        code=code("make_master.py"),
    output:
        f"{RESULTS}/calib/{{night}}/dark_{{exposure}}s.fits",
    log:
        f"{RESULTS}/logs/calib/{{night}}/dark_{{exposure}}s.log",
    benchmark:
        f"{RESULTS}/benchmarks/calib/{{night}}/dark_{{exposure}}s.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        kind="dark",
        settings=MASTER_SETTINGS,
        frames=master_frames("dark"),
        combine=config["calibration"]["combine"]["dark"],
    script:
        "../scripts/make_master.py"


rule master_flat:
    input:
        unpack(master_input("flat")),
        code=code("make_master.py"),
    output:
        f"{RESULTS}/calib/{{night}}/flat_{{filter}}.fits",
    log:
        f"{RESULTS}/logs/calib/{{night}}/flat_{{filter}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/calib/{{night}}/flat_{{filter}}.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        kind="flat",
        settings=MASTER_SETTINGS,
        frames=master_frames("flat"),
        combine=config["calibration"]["combine"]["flat"],
    script:
        "../scripts/make_master.py"


rule master_preview:
    input:
        f"{RESULTS}/calib/{{night}}/{{master}}.fits",
        code=code("preview.py"),
    output:
        report(
            f"{RESULTS}/calib/{{night}}/{{master}}.png",
            category="Masters",
            subcategory="{night}",
            labels={"night": "{night}", "master": "{master}"},
        ),
    log:
        f"{RESULTS}/logs/calib/{{night}}/{{master}}_preview.log",
    benchmark:
        f"{RESULTS}/benchmarks/calib/{{night}}/{{master}}_preview.tsv"
    wildcard_constraints:
        master=r"bias|dark_[0-9.e+-]+s|flat_[A-Za-z0-9._-]+",
    conda:
        "../envs/reduce.yaml"
    script:
        "../scripts/preview.py"


rule calibrate:
    input:
        unpack(calibrate_input),
        code=code("calibrate_frame.py"),
    output:
        f"{RESULTS}/calibrated/{{night}}/{{stem}}.fits",
    log:
        f"{RESULTS}/logs/calibrated/{{night}}/{{stem}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/calibrated/{{night}}/{{stem}}.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        frame=calibrate_params,
        settings=PIXEL_SETTINGS,
    script:
        "../scripts/calibrate_frame.py"


rule frame_table:
    input:
        night_files,
        code=code("frame_table.py"),
    output:
        report(
            f"{RESULTS}/calib/{{night}}/frames.ecsv",
            category="Frame tables",
            labels={"night": "{night}"},
        ),
    log:
        f"{RESULTS}/logs/calib/{{night}}/frames.log",
    benchmark:
        f"{RESULTS}/benchmarks/calib/{{night}}/frames.tsv"
    conda:
        "../envs/reduce.yaml"
    params:
        rows=night_table,
    script:
        "../scripts/frame_table.py"
