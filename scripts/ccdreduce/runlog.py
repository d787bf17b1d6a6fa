"""Logging for the Snakemake scripts: to the rule's log file and to stderr."""

import datetime
import logging
import sys
from pathlib import Path


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


#: The columns of a job's timing file: Snakemake's benchmark names for what
#: the worker measures of the job itself.
BENCHMARK_COLUMNS = ("s", "h:m:s", "max_rss", "cpu_time")


def write_benchmark(path, seconds, usage):
    """A job's timing file (TSV, as Snakemake's benchmark: files): wall
    seconds as Snakemake waited for the job, and the worker's own CPU
    seconds and peak memory (MB) during it (``usage``, from
    ccdreduce.workers). Snakemake's benchmark of a ``run:`` job measured its
    own process with every worker (not the job), and cost ~7 ms a job."""
    whole = datetime.timedelta(seconds=round(seconds))
    values = (f"{seconds:.4f}", str(whole), f"{usage['max_rss']:.2f}", f"{usage['cpu_time']:.2f}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\t".join(BENCHMARK_COLUMNS) + "\n" + "\t".join(values) + "\n")
