"""Rule frame_table: the night's frames.ecsv (what each file is and which
masters calibrated it) and night_log.ecsv (when each frame was taken, on TT
and TDB, and the airmass), both printed in the log."""

from collections import Counter

from ccdreduce import frametable, nightlog, runlog, times

log = runlog.start(snakemake)
settings = snakemake.params.times
if note := times.use_iers(settings["iers"]):
    log.warning(note)
night_log = nightlog.build(snakemake.params.log_rows, settings, snakemake.wildcards.night)

# the frame table says what limits each frame's times, as its header does
time_notes = {row["file"]: row["note"] for row in night_log}
rows = snakemake.params.rows
frametable.add_noise_models(rows, snakemake.config["results_dir"])
for row in rows:
    if time_notes.get(row["file"], "") != row["reason"]:  # not the exclusion again
        row["time_note"] = time_notes.get(row["file"], "")
table = frametable.write(rows, snakemake.output.frames)
for row in table:
    if row["status"] == "used":
        log.info(
            "%s: %s%s",
            row["file"],
            row["policy"],
            f"; UNCORRECTED: {row['uncorrected']}" if row["uncorrected"] else "",
        )
        if row["calibration"] not in ("", "calibrated"):
            log.warning("%s: %s: missing %s", row["file"], row["calibration"], row["uncorrected"])
    else:
        log.warning("%s %s: %s", row["file"], row["status"], row["reason"])
counts = {s: int((table["status"] == s).sum()) for s in ("used", "excluded", "ignored")}
log.info("%s: %s", snakemake.output.frames, ", ".join(f"{n} {s}" for s, n in counts.items()))
states = Counter(state for state in table["calibration"] if state)
if set(states) - {"calibrated"}:
    log.warning("science frames: %s", ", ".join(f"{n} {s}" for s, n in sorted(states.items())))

night_log.write(snakemake.output.night_log, format="ascii.ecsv", overwrite=True)
log.info("night log (UTC start; mid-exposure on TT; BJD on TDB):")
for line in nightlog.lines(night_log):
    log.info("  %s", line)
for note, count in Counter(row["note"] for row in night_log if row["note"]).items():
    log.warning("%d frame%s: %s", count, "s" if count > 1 else "", note)
log.info("wrote %s (%d frames)", snakemake.output.night_log, len(night_log))
