# CCD reduction workflow: raw nights -> master calibrations -> calibrated
# science frames -> registered, scaled and combined stacks. Configuration in
# config.yaml; rules in rules/; the science in scripts/ccdreduce/.
# Run with: .venv/bin/snakemake --cores 2   (or the target `calibration` only)


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/calibration.smk"
include: "rules/stacking.smk"


rule all:
    default_target: True
    input:
        all_targets(),


rule calibration:
    input:
        calibration_targets(),
