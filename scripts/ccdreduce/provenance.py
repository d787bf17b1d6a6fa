"""Provenance: one mechanism that stamps every product's header.

Scripts never write history cards by hand; they call :func:`stamp` with what
they did, and it writes the same keywords everywhere: the software, the step,
the inputs (IMCMBnnn), the masters applied and the policy that chose them,
the parameters and a hash of the effective configuration.
"""

import functools
import hashlib
import json
import math
from importlib import metadata

import numpy as np

from . import __version__

#: The libraries whose versions decide a product's numbers (astropy-iers-data:
#: the leap-second and Earth-orientation tables behind every time).
PACKAGES = ("astropy", "astropy-iers-data", "numpy", "scipy", "ccdproc", "photutils")

#: Times that cameras write on the UTC scale (MaxIm's JD, the MJD-OBS astropy
#: derives from a UTC DATE-OBS, TIME-OBS). A Julian date must name a uniform
#: time scale, and TIMESYS = 'TT' of a product would put these on TT, so they
#: are not carried from a raw header onto products.
CAMERA_UTC_TIMES = (
    "JD",
    "JD-OBS",
    "JD-HELIO",
    "HJD",
    "MJD-OBS",
    "MJD",
    "JD_UTC",
    "MJD_UTC",
    "TIME-OBS",
)


#: Cards of a registered frame that describe that one frame, not a stack made
#: with it as the reference: its times, shift, sky, raw file and the masters
#: that calibrated it (each input's are in its registered frame and the
#: stack's frames table).
SINGLE_FRAME_CARDS = (
    "BIASFILE",
    "DARKFILE",
    "DARKSCAL",
    "DARKBIAS",
    "FLATFILE",
    "OVERSCAN",
    "OVSCLEV",
    "CALPOL",
    "UNCORR",
    "CALSTATE",
    "PEDESTAL",
    "PEDSRC",
    "DX",
    "DY",
    "DXMEAS",
    "DYMEAS",
    "NMATCH",
    "REGRMS",
    "REGFRAC",
    "REGROT",
    "REGSTAT",
    "REGNOTE",
    "RAWFILE",
    "SKYSUB",
    "PROCSTEP",
    "DATE-BEG",
    "DATE-AVG",
    "DATE-END",
    "MJD-BEG",
    "MJD-AVG",
    "MJD-END",
    "BJD_TDB",
    "AIRMASS",
    "ALTITUDE",
    "LST",
    "TIMENOTE",
)

#: A calibrated frame's CALSTATE, from the best to the worst.
CALIBRATION_STATES = ("calibrated", "partially calibrated", "uncalibrated")

#: IMCMBnnn and IMSCLnnn run out of digits after this many inputs.
MAX_LISTED = 999


def config_hash(config):
    """A short, stable hash of the effective configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def package_versions():
    """'astropy 7.1.0; numpy 2.3.1; ...' for the installed PACKAGES."""
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return "; ".join(found)


def _card_text(value):
    return str(value) if value is not None else "none"


def stamp(
    header,
    step,
    *,
    inputs=(),
    combined=False,
    scales=None,
    recipe=None,
    cards=None,
    params=None,
    config=None,
    notes=(),
):
    """Record in ``header`` how this product was made (in place; returns it).

    ``inputs`` are raw paths relative to raw_dir; ``combined`` says they
    were combined into this product (IMCMBnnn, with ``scales`` the factor
    each was multiplied by, IMSCLnnn) rather than processed (RAWFILE);
    ``recipe`` is a Recipe.as_dict() (the masters applied, each named with
    its night); ``cards`` the step's own results ({keyword: (value,
    comment)}: times, shift, scale, combine method; None removes the card,
    a NaN is said in HISTORY: FITS cannot hold it);
    ``params`` the step's parameters, as HISTORY.
    """
    if header.get("TIMESYS") != "TT":  # a camera's header: its times are on UTC
        dropped = [key for key in CAMERA_UTC_TIMES if key in header]
        for key in dropped:
            del header[key]
        if dropped:
            header.add_history(
                f"removed {', '.join(dropped)}: times on the UTC scale (the raw file keeps them)"
            )
    header["PIPELINE"] = (f"ccdreduce {__version__}", "reduction workflow")
    header["SOFTVERS"] = (package_versions(), "library versions")
    header["PROCSTEP"] = (step, "processing step that wrote this file")
    if config is not None:
        header["CFGHASH"] = (config_hash(config), "sha256 of the effective config, first 16")
    for key in [k for k in header if k.startswith(("IMCMB", "IMSCL"))]:
        del header[key]  # a reference frame's header must not lend its inputs to a stack
    if combined:
        header["NCOMBINE"] = (len(inputs), "number of frames combined")
        # eight-character keywords hold 999 inputs; the rest are in the frames table
        for i, name in enumerate(inputs[:MAX_LISTED], start=1):
            header[f"IMCMB{i:03d}"] = str(name)
        for i, scale in enumerate(list(scales if scales is not None else ())[:MAX_LISTED], 1):
            header[f"IMSCL{i:03d}"] = (float(scale), f"scale applied to IMCMB{i:03d}")
        if len(inputs) > MAX_LISTED:
            header.add_history(f"inputs after the {MAX_LISTED}th: see the frames table")
    elif inputs:
        header["RAWFILE"] = str(inputs[0])
    if recipe is not None:
        header["BIASFILE"] = (_card_text(recipe["bias"]), "master bias")
        header["DARKFILE"] = (_card_text(recipe["dark"]), "master dark")
        header["DARKSCAL"] = (recipe["dark_scale"], "factor applied to the master dark")
        header["DARKBIAS"] = (recipe["dark_includes_bias"], "T: the dark also removed the bias")
        header["FLATFILE"] = (_card_text(recipe["flat"]), "master flat")
        header["OVERSCAN"] = (recipe["overscan"], "overscan level subtracted")
        policy = "; ".join(recipe["notes"]) or "none"
        header["CALPOL"] = (policy, "calibration policy applied")
        header["UNCORR"] = (", ".join(recipe["uncorrected"]) or "none", "left uncorrected")
    for key, value in (cards or {}).items():
        number = value[0] if isinstance(value, tuple) else value
        if value is None:  # a card that must not survive from the input
            header.remove(key, ignore_missing=True)
        elif isinstance(number, float) and not math.isfinite(number):
            # FITS has no NaN or infinity: an unknown value is said, not written
            header.remove(key, ignore_missing=True)
            header.add_history(f"{key} unknown ({number}): not measurable on this frame")
        else:
            header[key] = value
    for key, value in sorted((params or {}).items()):
        header.add_history(f"{step}: {key} = {value}")
    for note in notes:
        header.add_history(str(note))
    return header


def master_header(header, kind, frames, spec, time_cards, config, notes=()):
    """Stamp a master's header (in place; returns it): its inputs, the
    recipe they were calibrated with (not for a bias), the combine and its
    times (``time_cards``, times.master_cards). ``frames`` are the master
    rule's frames (raw, recipe); ``notes`` what the times said.
    """
    policies = sorted({"; ".join(frame["recipe"]["notes"]) for frame in frames})
    first = frames[0]["recipe"]
    cards = dict(time_cards) | {"COMBMETH": (spec.method, "combine method")}
    if kind == "dark":
        cards["DARKBIAS"] = (first["dark_includes_bias"], "T: this dark still holds the bias")
    return stamp(
        header,
        f"master_{kind}",
        inputs=[frame["raw"] for frame in frames],
        combined=True,
        recipe=first if kind != "bias" else None,
        cards=cards,
        params=spec.params(),
        config=config,
        notes=spec.notes(len(frames))
        + [f"inputs calibrated as: {p}" for p in policies if p]
        + list(notes),
    )


def calibration_of_inputs(states):
    """(CALSTATE card, note) of a stack from its inputs' CALSTATE values:
    the least calibrated input's state, and how many inputs are in each."""
    order = {state: i for i, state in enumerate(CALIBRATION_STATES)}
    counts = {state: states.count(state) for state in CALIBRATION_STATES if state in states}
    worst = max(counts, key=order.get)
    said = ", ".join(f"{n} {state}" for state, n in counts.items())
    card = (worst, "least calibrated input (CALSTATE of each)")
    return card, f"inputs: {said}"


def stack_header(
    reference_header,
    table,
    reference_exposure,
    spec,
    config,
    notes=(),
    weights=None,
    calstates=None,
):
    """The header of a combined stack, and the notes on its times.

    ``reference_header`` is the registered reference frame's: it lends its
    pixel grid, flux scale and site keywords, while what belonged to that one
    frame goes (SINGLE_FRAME_CARDS: times, shift, sky, inputs).
    ``table`` is the stack's frames table (the frames whose ``used`` is True
    entered), ``reference_exposure`` the reference frame's (s; the stack is
    scaled to it), ``spec`` its CombineSpec, ``notes`` what the combine said,
    ``weights`` the per-frame weights in effect (None: unweighted). The
    configured parameters go to HISTORY (params); what was in effect beside
    them to cards: WEIGHTS (mode), WGTMIN/WGTMAX (relative to the largest),
    NOISEFLR (sigclip's noise floor, when the engine has one).
    ``calstates``: the inputs' CALSTATE values (None: not said), for the
    stack's CALSTATE (its least calibrated input) and a HISTORY line.
    """
    from . import times
    from .combine import WEIGHTS, weights_mode
    from .fitsfile import set_unit

    header = reference_header.copy()
    for key in SINGLE_FRAME_CARDS:
        header.remove(key, ignore_missing=True)
    header.remove("HISTORY", ignore_missing=True, remove_all=True)
    used = table[[bool(u) for u in table["used"]]]
    spans = [{name: row[name] for name in times.SPAN_COLUMNS} for row in used]
    cards, time_notes = times.combined_cards(spans, used["exposure"])
    cards["EXPTIME"] = (
        float(reference_exposure),
        "effective exposure, s: the stack is scaled to REFFRAME",
    )
    if "EXPOSURE" in header:  # cameras that write both must not disagree with EXPTIME
        cards["EXPOSURE"] = cards["EXPTIME"]
    set_unit(header, "stack")
    cards |= {
        "COMBMETH": (spec.method, "combine method"),
        "WEIGHTED": (weights is not None, "frames weighted (WEIGHTS says how)"),
        "WEIGHTS": (
            weights_mode(spec.weights),
            f"weights: {', '.join(WEIGHTS)} (frames.ecsv column)",
        ),
        "REFFRAME": (table.meta["reference"], "reference frame: pixel grid and flux scale"),
    }
    if weights is not None:
        relative = np.asarray(weights, dtype=float) / np.max(weights)
        cards["WGTMIN"] = (round(float(relative.min()), 6), "smallest frame weight / largest")
        cards["WGTMAX"] = (1.0, "largest frame weight (weights relative to it)")
    if getattr(spec, "noise_floor", None) is not None and spec.method == "sigclip":
        cards["NOISEFLR"] = (bool(spec.noise_floor), "sigclip width >= inputs' median sigma")
    calibration = []
    if calstates:
        cards["CALSTATE"], said = calibration_of_inputs(list(calstates))
        calibration.append(said)
    stamp(
        header,
        f"stack_{spec.method}",
        inputs=list(used["file"]),
        combined=True,
        scales=list(used["scale"]),
        cards=cards,
        params=spec.params() | {"weights": spec.weights},
        config=config,
        notes=list(notes)
        + time_notes
        + calibration
        + ["each input's calibration and shift: its registered frame and this stack's frames.ecsv"],
    )
    return header, time_notes
