"""Making master calibrations: bias, darks per exposure, flats per filter.

The three share one procedure: calibrate each input as far as its kind
needs (STAGE_BEFORE), optionally normalise it, stack, combine with sigma
clipping, and normalise the result. Only the stage and the normalisation
differ, and those are data here.

Saturated input pixels are NaN before the combine (they enter none). The
master's UNCERT comes from the inputs' own scatter at each pixel
(combine(..., uncertainty="scatter")), which needs no noise model. The
bias job measures the read noise (ADU) from its biases, the flat job the
gain from its flats (photon transfer, ccdreduce.noise), into their headers.
"""

import logging
from dataclasses import dataclass, field

import numpy as np

from . import bayer, noise
from .calibrate import load_raw, run_stages
from .combine import CombineSpec, combine
from .errors import FrameProblem
from .fitsfile import MASK_NO_DATA, MASK_SATURATED, read_header, set_unit

log = logging.getLogger(__name__)

#: How far each input is calibrated before combining.
STAGE_BEFORE = {"bias": "trim", "dark": "bias", "flat": "dark"}
#: Flats are scaled to median 1 each, and the master again at the end.
NORMALISED = {"flat"}


def finite_median(data):
    """Median of the finite pixels (NaN if there are none)."""
    finite = data[np.isfinite(data)]
    return float(np.median(finite)) if finite.size else float("nan")


@dataclass
class Master:
    """A combined master: pixels, header (the first input's keywords, with
    the measured noise cards), standard deviation per pixel, log notes."""

    image: np.ndarray
    header: object
    sigma: np.ndarray
    notes: list = field(default_factory=list)

    @property
    def mask(self):
        """MASK: no data where no input was valid (the image is NaN)."""
        return np.where(np.isfinite(self.image), 0, MASK_NO_DATA).astype(np.uint8)


def combine_with_sigma(cube, spec):
    """(image, sigma) of a master: the combine's uncertainty from the inputs'
    own scatter (a master's inputs carry no sigma of their own)."""
    image, _, sigma = combine(cube, spec, uncertainty="scatter")
    # Where the survivors cannot show a scatter, it is not zero: integer
    # biases whose MAD is 0 (three of five values equal) leave only equal
    # values after a MAD clip, and one survivor has no spread. Such pixels
    # take the master's typical sigma (the median of the others).
    unknown = np.isfinite(image) & ~(sigma > 0)
    if unknown.any():
        known = sigma[np.isfinite(image) & (sigma > 0)]
        sigma[unknown] = np.median(known) if known.size else np.nan
    return image, sigma


def _bias_read_noise(recipe, masters):
    """The read noise in ADU the master bias a recipe names measured, else
    its master dark's (a night without biases), or None."""
    for kind in ("bias", "dark"):
        if recipe.get(kind):
            value = read_header(masters.results_dir / recipe[kind]).get("RDNOIADU")
            if value is not None:
                return float(value)
    return None


def noise_cards(kind, cube, levels, inputs, masters, header=None):
    """Header cards the master's inputs measure, and log notes: the bias's
    read noise (ADU), the flat's gain (and the read noise in e-)."""
    if kind == "bias" or (kind == "dark" and inputs[0][1].get("dark_includes_bias")):
        # a night without biases: its darks (bias not subtracted) differ by
        # their read noise and their dark current's noise, an upper bound
        rn = noise.read_noise_adu(cube)
        if rn is None:
            return {}, [f"one {kind}: no read noise measured (needs two)"]
        return {"RDNOIADU": (round(rn, 4), f"read noise measured from the {kind}s, ADU")}, [
            f"read noise {rn:.3f} ADU (photon transfer, {len(cube)} {kind}s)"
        ]
    if kind != "flat":
        return {}, []
    rn = _bias_read_noise(inputs[0][1], masters)
    flats = [cube[i] * np.float32(levels[i]) for i in range(len(cube))]
    mosaic = header is not None and bayer.is_mosaic(header)
    gain = noise.gain_from_flats(flats, levels, rn, mosaic=mosaic)
    if gain is None:
        return {}, ["no two flats of similar level: no gain measured"]
    cards = {"GAIN": (round(gain, 5), "e-/ADU, measured from the flats")}
    said = f"gain {gain:.4g} e-/ADU (photon transfer, {len(cube)} flats)"
    if rn is not None:
        cards["RDNOISE"] = (round(rn * gain, 4), "read noise, e-, measured (bias x gain)")
        said += f", read noise {rn * gain:.3g} e-"
    else:
        cards["RDNOISE"] = None
        said += "; no master bias read noise: taken as 0 in the gain"
    cards["NOISESRC"] = ("measured", "GAIN, RDNOISE by photon transfer")
    return cards, [said]


def build_master(kind, inputs, settings, spec, masters):
    """Combine raw frames into a master.

    ``inputs`` is a list of (raw path, recipe dict); ``masters`` a
    calibrate.Masters that finds the masters the recipes name; ``spec`` a
    CombineSpec or a calibration.combine entry. Returns a Master; the
    caller stamps provenance.
    """
    cube, header = None, None
    levels = []
    for i, (path, recipe) in enumerate(inputs):
        frame = run_stages(
            load_raw(path, settings), recipe, masters, settings, until=STAGE_BEFORE[kind]
        )
        # a saturated pixel says nothing of the master: it enters no combine
        frame.data[(frame.mask & MASK_SATURATED) > 0] = np.nan
        level = finite_median(frame.data)
        levels.append(level)
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
    cards, notes = noise_cards(kind, cube, levels, inputs, masters, header)
    image, sigma = combine_with_sigma(cube, spec)  # a master carries no coverage map
    if kind in NORMALISED:
        norm = np.float32(finite_median(image))
        image /= norm
        sigma /= norm
    set_unit(header, kind)
    for key, card in cards.items():
        if card is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = card
    for note in notes:
        log.info(note)
    return Master(image, header, sigma, notes)
