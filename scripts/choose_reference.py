"""Rule choose_reference: the frame a stack is registered and scaled to.

Every frame's stars are matched onto each of the sharpest frames'; the
reference comes from the largest group of frames that agree with one
another (consistent matches, no rotation), then by quality: the sharpest of
its clear frames. Star counts come last, as artefacts inflate them.

The choice is remembered in reference.lock beside the output, so that a
stack keeps its reference when nights are added; pin one in config to
change it (stacking.reference), or delete the lock to choose afresh.
"""

from ccdreduce import errors, runlog, stacking

log = runlog.start(snakemake)
try:
    stacking.choose(
        snakemake.params.frames,
        snakemake.params.settings,
        snakemake.params.pinned,
        snakemake.output[0],
        log,
    )
except errors.Problem as exc:  # no frame can serve: said in words
    raise SystemExit(f"stack {snakemake.wildcards.group}: {exc}") from None
