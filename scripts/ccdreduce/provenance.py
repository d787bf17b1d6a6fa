"""Provenance: one mechanism that stamps every product's header.

Scripts never write history cards by hand; they call :func:`stamp` with what
they did, and it writes the same keywords everywhere: the software, the step,
the inputs (IMCMBnnn), the masters applied and the policy that chose them,
the parameters and a hash of the effective configuration.
"""

import hashlib
import json

import astropy
import numpy

from . import __version__

#: Julian dates that cameras write on the UTC scale (MaxIm's JD, the MJD-OBS
#: astropy derives from a UTC DATE-OBS). A Julian date must name a uniform
#: time scale, so these are not carried onto products.
UTC_JULIAN_DATES = ("JD", "JD-OBS", "JD-HELIO", "HJD", "MJD-OBS", "MJD", "JD_UTC", "MJD_UTC")


def config_hash(config):
    """A short, stable hash of the effective configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _card_text(value):
    return str(value) if value is not None else "none"


def stamp(
    header, step, *, inputs=(), combined=False, recipe=None, params=None, config=None, notes=()
):
    """Record in ``header`` how this product was made (in place; returns it).

    ``inputs`` are raw paths relative to raw_dir; ``combined`` says they
    were combined into this product (IMCMBnnn) rather than processed (RAWFILE);
    ``recipe`` is a Recipe.as_dict(); ``params`` the step's parameters.
    """
    dropped = [key for key in UTC_JULIAN_DATES if key in header]
    for key in dropped:
        del header[key]
    if dropped:
        header.add_history(
            f"removed {', '.join(dropped)}: Julian dates on the UTC scale (the raw file keeps them)"
        )
    header["PIPELINE"] = (f"ccdreduce {__version__}", "reduction workflow")
    header["SOFTVERS"] = f"astropy {astropy.__version__}, numpy {numpy.__version__}"
    header["PROCSTEP"] = (step, "processing step that wrote this file")
    if config is not None:
        header["CFGHASH"] = (config_hash(config), "sha256 of the effective config, first 16")
    if combined:
        header["NCOMBINE"] = (len(inputs), "number of frames combined")
        for i, name in enumerate(inputs, start=1):
            header[f"IMCMB{i:03d}"] = str(name)
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
    for key, value in sorted((params or {}).items()):
        header.add_history(f"{step}: {key} = {value}")
    for note in notes:
        header.add_history(str(note))
    return header
