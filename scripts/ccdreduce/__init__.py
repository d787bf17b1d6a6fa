"""ccdreduce: the science code behind the CCD reduction workflow.

Each processing stage lives in its own module, named for what an observer
calls it (``inventory``, ``policy``, ``masters``, ``calibrate``, ``combine``).
The Snakemake scripts in ``scripts/`` are thin procedures that call these.
Per-frame modules import only numpy and astropy.io.fits, so that a
per-frame job starts fast.
"""

__version__ = "0.1.0"
