"""Rule register: one night's frames of one stack, each shifted onto the
stack's reference grid and sky subtracted, written into one folder. A frame
that cannot be registered is written as NaN with the reason in its header,
and the stack leaves it out.

One job per (night, stack) rather than per frame: the per-frame work is a
fraction of a second, while every job costs the DAG (and a cluster) more.
"""

from pathlib import Path

from ccdreduce import catalog, provenance, register, runlog, stacking
from ccdreduce.errors import FrameProblem
from ccdreduce.fitsfile import read_product, read_uncertainty, set_unit, write_image

log = runlog.start(snakemake)
params = snakemake.params
reference = stacking.read_reference(snakemake.input.reference)
folder = Path(snakemake.output[0])
folder.mkdir(parents=True, exist_ok=True)
log.info(
    "%d frames of %s from %s onto reference %s",
    len(params.frames),
    params.group,
    snakemake.wildcards.night,
    reference["reference"],
)
failed = 0
for frame in params.frames:
    data, header, mask = read_product(frame["calibrated"])
    uncertainty = read_uncertainty(frame["calibrated"])
    if uncertainty is None:  # every calibrated frame has one since the noise model
        raise FrameProblem(
            frame["calibrated"],
            "the calibrated frame has no UNCERT extension (made before the noise model)",
            "rerun calibrate: snakemake --forcerun calibrate",
        )
    stars, meta = catalog.read(frame["catalog"])
    meta = catalog.channel_meta(meta, frame.get("channel"))  # a colour channel's own sky
    moved, moved_mask, sigma, cards, message, ok = register.onto_reference(
        data, mask, stars, meta, reference, frame["id"], params.settings, uncertainty
    )
    (log.info if ok else log.warning)(
        "%s: %s", frame["id"], message if ok else f"not registered: {message}"
    )
    failed += not ok
    set_unit(header, "registered")
    provenance.stamp(
        header,
        "register",
        inputs=[header.get("RAWFILE", frame["id"])],
        cards=cards,
        config=snakemake.config,
    )
    write_image(frame["registered"], moved, header, mask=moved_mask, uncertainty=sigma)
log.info("wrote %d frames to %s (%d not registered)", len(params.frames), folder, failed)
