"""Logging for the Snakemake scripts: to the rule's log file and to stderr."""

import logging
import sys


def start(smk):
    """Send this job's logging to ``smk.log[0]``; log a crash there too."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if smk.log:
        handlers.append(logging.FileHandler(smk.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    log = logging.getLogger("ccdreduce")

    def crash(kind, value, traceback):
        log.error("%s: %s", kind.__name__, value, exc_info=(kind, value, traceback))

    sys.excepthook = crash
    return log
