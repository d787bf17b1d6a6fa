"""Rule frame_table: the night's frames.ecsv, and the policy in the log."""

from ccdreduce import frametable, runlog

log = runlog.start(snakemake)
table = frametable.write(snakemake.params.rows, snakemake.output[0])
for row in table:
    if row["status"] == "used":
        log.info(
            "%s: %s%s",
            row["file"],
            row["policy"],
            f"; UNCORRECTED: {row['uncorrected']}" if row["uncorrected"] else "",
        )
    else:
        log.warning("%s %s: %s", row["file"], row["status"], row["reason"])
counts = {s: int((table["status"] == s).sum()) for s in ("used", "excluded", "ignored")}
log.info("%s: %s", snakemake.output[0], ", ".join(f"{n} {s}" for s, n in counts.items()))
