"""A night's science frames, each calibrated, stamped, written and its
stars catalogued: the calibrate rule's work, one frame at a time (the rule
runs frames in threads)."""

from dataclasses import dataclass

import numpy as np

from . import catalog, provenance, times
from .calibrate import Masters, Settings, calibrate_frame
from .fitsfile import set_unit, write_image


@dataclass
class NightSettings:
    """What every frame of a night is calibrated with."""

    settings: Settings  # the pixel settings (config.pixel_settings)
    masters: Masters
    times: dict  # config times: date_obs_is, site, iers
    detect_sigma: float  # star detection threshold of the catalogue
    night: str
    config: dict  # the effective config, hashed into each header


def calibrate_and_catalogue(frame, night):
    """Calibrate one science frame (a calibrate rule param: id, stem, path,
    raw, exposure, date_obs, recipe, overrides, and where its calibrated
    frame and catalogue go), write both; ``night`` is its NightSettings. Returns its log lines:
    (information, warnings)."""
    recipe = frame["recipe"]
    lines = [f"{frame['raw']}: policy: {'; '.join(recipe['notes'])}"]
    result = calibrate_frame(frame["path"], recipe, night.settings, night.masters)
    for key, value in frame["overrides"].items():
        result.header[key] = value
        result.header.add_history(f"{key} = {value!r} from header_overrides in config")
    set_unit(result.header, "calibrated")
    lines += [f"{frame['raw']}: {line}" for line in result.history]
    # when the light was collected, on TT (and BJD_TDB where site and target are known)
    cards, notes = times.frame_cards(
        frame["date_obs"],
        result.header,
        frame["exposure"],
        night.times["date_obs_is"],
        night.times["site"],
        night=night.night,
    )
    lines += [f"{frame['raw']}: {note}" for note in notes]
    provenance.stamp(
        result.header,
        "calibrate",
        inputs=[frame["raw"]],
        recipe=recipe,
        cards=cards,
        config=night.config,
        notes=result.history,
    )
    write_image(
        frame["calibrated"],
        result.data,
        result.header,
        mask=result.mask,
    )
    # the catalogue is measured on the pixels exactly as written (float32)
    stars, meta = catalog.measure(
        np.asarray(result.data, dtype=np.float32),
        result.mask,
        frame["id"],
        frame["exposure"],
        night.detect_sigma,
    )
    catalog.write(frame["catalog"], stars, meta)
    lines.append(
        f"{frame['raw']}: {meta['n_stars']} stars, FWHM {meta['fwhm']:.2f} px, "
        f"sky {meta['sky']:.1f} ADU, noise {meta['noise']:.2f} ADU"
    )
    warnings = []
    if recipe["uncorrected"]:
        warnings.append(f"{frame['raw']}: left uncorrected: {', '.join(recipe['uncorrected'])}")
    return lines, warnings
