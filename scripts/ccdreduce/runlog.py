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
    sys.excepthook = lambda kind, value, traceback: log_crash(value)
    return logging.getLogger("ccdreduce")


def log_crash(exc):
    """A job's exception with its traceback, in the job's log and on stderr
    (a script run by Snakemake, or by a warm worker: ccdreduce.workers)."""
    logging.getLogger("ccdreduce").error("%s: %s", type(exc).__name__, exc, exc_info=exc)
