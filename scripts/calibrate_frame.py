"""Rule calibrate: one raw science frame -> trimmed, bias- and dark-subtracted,
flat-fielded float32 frame."""

from ccdreduce import provenance, runlog
from ccdreduce.calibrate import Masters, Settings, calibrate_frame
from ccdreduce.fitsfile import write_image

log = runlog.start(snakemake)
frame = snakemake.params.frame
recipe = frame["recipe"]
log.info("calibrating %s", frame["raw"])
log.info("policy: %s", "; ".join(recipe["notes"]))
if recipe["uncorrected"]:
    log.warning("left uncorrected: %s", ", ".join(recipe["uncorrected"]))

result = calibrate_frame(
    snakemake.input.raw,
    recipe,
    Settings(**snakemake.params.settings),
    Masters(snakemake.config["results_dir"]),
)
for key, value in frame["overrides"].items():
    result.header[key] = value
    result.header.add_history(f"{key} = {value!r} from header_overrides in config")
result.header["BUNIT"] = ("adu", "flat-fielded counts")
for line in result.history:
    log.info(line)
provenance.stamp(
    result.header,
    "calibrate",
    inputs=[frame["raw"]],
    recipe=recipe,
    config=snakemake.config,
    notes=result.history,
)
write_image(snakemake.output[0], result.data, result.header, mask=result.mask)
log.info("wrote %s", snakemake.output[0])
