"""Making master calibrations: bias, darks per exposure, flats per filter.

The three share one procedure: calibrate each input as far as its kind
needs (STAGE_BEFORE), optionally normalise it, stack, combine with sigma
clipping, and normalise the result. Only the stage and the normalisation
differ, and those are data here.
"""

import logging

import numpy as np

from .calibrate import load_raw, run_stages
from .combine import CombineSpec, combine
from .errors import FrameProblem
from .fitsfile import set_unit

log = logging.getLogger(__name__)

#: How far each input is calibrated before combining.
STAGE_BEFORE = {"bias": "trim", "dark": "bias", "flat": "dark"}
#: Flats are scaled to median 1 each, and the master again at the end.
NORMALISED = {"flat"}


def finite_median(data):
    """Median of the finite pixels (NaN if there are none)."""
    finite = data[np.isfinite(data)]
    return float(np.median(finite)) if finite.size else float("nan")


def make_master(kind, inputs, settings, spec, masters):
    """Combine raw frames into a master.

    ``inputs`` is a list of (raw path, recipe dict); ``masters`` a
    calibrate.Masters that finds the masters the recipes name; ``spec`` a
    CombineSpec or a calibration.combine entry. Returns (image, header):
    the first frame's header keywords, the caller stamps provenance.
    """
    cube, header = None, None
    for i, (path, recipe) in enumerate(inputs):
        frame = run_stages(
            load_raw(path, settings), recipe, masters, settings, until=STAGE_BEFORE[kind]
        )
        level = finite_median(frame.data)
        if kind in NORMALISED:
            if not level > 0:
                raise FrameProblem(
                    path,
                    f"flat has median {level:g} after bias and dark subtraction",
                    "check the frame (shutter closed? wrong type?) and list it under exclude",
                )
            frame.data /= np.float32(level)
        if cube is None:
            cube = np.empty((len(inputs),) + frame.data.shape, dtype=np.float32)
            header = frame.header
        elif frame.data.shape != cube.shape[1:]:
            raise FrameProblem(
                path,
                f"shape {frame.data.shape[::-1]} differs from the other inputs {cube.shape[:0:-1]}",
                "list it under exclude",
            )
        cube[i] = frame.data
        log.info("[%d/%d] read %s (median %.2f)", i + 1, len(inputs), path, level)
    if not isinstance(spec, CombineSpec):
        spec = CombineSpec.from_config(spec, "master", f"calibration.combine.{kind}")
    log.info("combining %d frames with %s %s", len(inputs), spec.method, spec.params())
    for note in spec.notes(len(inputs)):
        log.info(note)
    image, _, _ = combine(cube, spec)  # a master carries no coverage map
    if kind in NORMALISED:
        image /= np.float32(finite_median(image))
    set_unit(header, kind)
    return image, header
