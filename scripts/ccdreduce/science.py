"""A night's science frames, each calibrated, stamped, written and its
stars catalogued: the calibrate rule's work, one frame at a time (the rule
runs frames in threads)."""

from dataclasses import dataclass, field

import numpy as np

from . import bayer, catalog, noise, provenance, times
from .calibrate import Masters, Settings, WorkFrame, load_raw, run_stages
from .fitsfile import MASK_BAD_PIXEL, MASK_COSMIC_RAY, MASK_SATURATED, set_unit, write_image
from .sections import section_slices
from .stars import background

#: Pixels around a saturated one where no cosmic ray is looked for.
SATURATED_MARGIN = 5


@dataclass
class NightSettings:
    """What every frame of a night is calibrated with."""

    settings: Settings  # the pixel settings (config.pixel_settings)
    masters: Masters
    times: dict  # config times: date_obs_is, site, iers
    detect_sigma: float  # star detection threshold of the catalogue
    night: str
    config: dict  # the effective config, hashed into each header
    # the noise model's sources: {"keywords": {gain: [...], read_noise: [...]},
    # "camera": {gain, read_noise}} (config.noise_settings)
    noise: dict = field(default_factory=dict)
    bad_pixels: np.ndarray | None = None  # the night's map, nonzero = bad
    cosmic_rays: dict = field(default_factory=lambda: {"method": "none"})


DEFAULT_KEYWORDS = {
    "gain": ["EGAIN", "GAIN"],
    "read_noise": ["RDNOISE", "READNOIS", "RDNOIS", "RON"],
}


def noise_model(frame, recipe, night):
    """The frame's NoiseModel (header > config > the master flat's measured
    values > its own sky), and notes."""
    measured = (None, None)
    if recipe["flat"]:
        measured = noise.from_master_flat(night.masters.header(recipe["flat"]))

    def sky():
        # the last resort: the frame bias- and dark-subtracted (or its
        # pedestal), on a copy
        work = WorkFrame(frame.path, frame.data.copy(), frame.header.copy(), frame.mask.copy())
        return noise.sky_statistics(
            run_stages(work, recipe, night.masters, night.settings, "pedestal").data,
            mosaic=bayer.is_mosaic(frame.header),
        )

    model, notes = noise.resolve(
        frame.header,
        night.noise.get("keywords", DEFAULT_KEYWORDS),
        night.noise.get("camera"),
        measured,
        sky,
    )
    if recipe.get("pedestal") and model.gain_source == "sky":
        notes.append(
            f"the pedestal took most of the sky with the bias: its gain {model.gain:.3g} e-/ADU "
            "is a lower bound, UNCERT right at the sky and too large on stars; give "
            "camera.gain in config.yaml"
        )
    return model, notes


def mark_bad_pixels(result, bad_pixels):
    """MASK_BAD_PIXEL where the night's map says bad (values kept)."""
    if bad_pixels is None:
        return None
    if bad_pixels.shape != result.data.shape:
        return (
            f"bad-pixel map {bad_pixels.shape[::-1]} does not fit the frame "
            f"{result.data.shape[::-1]}: no pixels marked"
        )
    bad = bad_pixels != 0
    result.mask[bad] |= MASK_BAD_PIXEL
    return f"{int(bad.sum())} bad pixels marked (MASK {MASK_BAD_PIXEL})"


def mark_cosmic_rays(result, settings):
    """MASK_COSMIC_RAY where LA Cosmic (astroscrappy) finds a hit in this
    frame alone (values kept); gain and read noise from the frame's model."""
    settings = dict(settings or {})
    if settings.pop("method", "none") == "none":
        return None
    if result.header is not None and bayer.is_mosaic(result.header):
        # LA Cosmic compares a pixel with its neighbours, on a mosaic other
        # colours: measured, it marked 184 pixels inside 27 of 30 red stars
        return (
            "cosmic rays not searched: a colour mosaic (LA Cosmic would take "
            "colour edges for hits); the stacks' rejection removes them"
        )
    import astroscrappy  # only for those who ask for it
    from scipy import ndimage

    data = np.nan_to_num(np.asarray(result.data, dtype=np.float32), nan=0.0)
    # a saturated star's flat top has edges as sharp as a hit's: measured on
    # a simulated 120 s frame, 11 of 99 stars were cut into without this
    saturated = (result.mask & MASK_SATURATED) > 0
    near_saturated = ndimage.binary_dilation(saturated, iterations=SATURATED_MARGIN)
    hits, _ = astroscrappy.detect_cosmics(
        data,
        inmask=(result.mask != 0) | near_saturated,
        gain=result.noise.gain,
        readnoise=result.noise.read_noise,
        satlevel=np.inf,
        **settings,
    )
    hits &= (result.mask == 0) & ~near_saturated
    result.mask[hits] |= MASK_COSMIC_RAY
    return f"{int(hits.sum())} cosmic-ray pixels marked (LA Cosmic, MASK {MASK_COSMIC_RAY})"


def frame_times(frames, night):
    """The time cards and notes of science ``frames`` (calibrate rule
    params) of ``night`` (NightSettings), all computed together
    (times.frames_cards): from the plan's stamp, exposure, site and target
    (header values, overrides applied), like the night log's."""
    return times.frames_cards(
        [(f["date_obs"], f.get("site_target", {}), f["exposure"], True) for f in frames],
        night.times["date_obs_is"],
        night.times["site"],
        night.night,
    )


def calibrate_and_catalogue(frame, night, timed=None):
    """Calibrate one science frame (a calibrate rule param: id, stem, path,
    raw, exposure, date_obs, site_target, recipe, overrides, and where its
    calibrated frame and catalogue go), write both; ``night`` is its
    NightSettings, ``timed`` its (cards, notes) from :func:`frame_times`
    (computed here when None). Returns its log lines: (information,
    warnings)."""
    recipe = frame["recipe"]
    state = recipe["state"]  # policy.Recipe.state, the one rule
    lines = [f"{frame['raw']}: policy: {'; '.join(recipe['notes'])}"]
    warnings = []
    result = load_raw(frame["path"], night.settings)
    raw_shape = result.data.shape
    for key, value in frame["overrides"].items():  # before the noise model reads GAIN
        result.header[key] = value
        result.header.add_history(f"{key} = {value!r} from header_overrides in config")
    result.noise, notes = noise_model(result, recipe, night)
    warnings += [f"{frame['raw']}: {note}" for note in notes]
    run_stages(result, recipe, night.masters, night.settings)
    if frame.get("bayer"):  # a colour frame: its mosaic's pattern as written
        mark_mosaic(result, frame, night.settings, raw_shape)
    for key, card in result.noise.cards().items():
        result.header[key] = card
    for said in (
        mark_bad_pixels(result, night.bad_pixels),
        mark_cosmic_rays(result, night.cosmic_rays),
    ):
        if said:
            result.history.append(said)
    set_unit(result.header, "calibrated")
    lines += [f"{frame['raw']}: {line}" for line in result.history]
    # when the light was collected, on TT (and BJD_TDB where site and target are known)
    cards, notes = timed or frame_times([frame], night)[0]
    lines += [f"{frame['raw']}: {note}" for note in notes]
    provenance.stamp(
        result.header,
        "calibrate",
        inputs=[frame["raw"]],
        recipe=recipe,
        cards=cards | {"CALSTATE": (state, "calibrated, partially calibrated, uncalibrated")},
        config=night.config,
        notes=result.history,
    )
    write_image(
        frame["calibrated"],
        result.data,
        result.header,
        mask=result.mask,
        uncertainty=result.uncertainty,
    )
    # the catalogue is measured on the pixels exactly as written (float32)
    measured, measured_mask, channels = np.asarray(result.data, dtype=np.float32), result.mask, None
    if frame.get("bayer"):  # a colour frame: its channels, its stars on their luminance
        measured, measured_mask, channels, said = write_channels(result, frame)
        lines.append(f"{frame['raw']}: {said}")
    stars, meta = catalog.measure(
        measured,
        measured_mask,
        frame["id"],
        frame["exposure"],
        night.detect_sigma,
    )
    if channels:
        meta["channels"] = channels
    catalog.write(frame["catalog"], stars, meta)
    lines.append(
        f"{frame['raw']}: {meta['n_stars']} stars, FWHM {meta['fwhm']:.2f} px, "
        f"sky {meta['sky']:.1f} ADU, noise {meta['noise']:.2f} ADU"
    )
    if recipe["uncorrected"]:
        warnings.append(
            f"{frame['raw']}: {state}, left uncorrected: {', '.join(recipe['uncorrected'])}"
        )
    return lines, warnings


# --- colour (Bayer) frames ------------------------------------------------------

#: Cards that describe a mosaic, and so leave a demosaiced channel's header.
MOSAIC_CARDS = ("BAYERPAT", "COLORTYP", "XBAYROFF", "YBAYROFF")


def mosaic_pattern(raw_pattern, trim_section, raw_shape):
    """The pattern at the calibrated mosaic's pixel (0, 0): the raw frame's
    (inventory.Frame.bayer) moved by the trim's first row and column."""
    if not trim_section:
        return raw_pattern
    rows, cols = section_slices(trim_section, raw_shape)
    return bayer.pattern_after_trim(raw_pattern, rows.start or 0, cols.start or 0)


def mark_mosaic(result, frame, settings, raw_shape):
    """Set the calibrated mosaic's BAYERPAT to its pattern at array pixel
    (0, 0) (offsets 0, ROWORDER applied), so that any program reads it
    alike; returns the line of history."""
    pattern = mosaic_pattern(frame["bayer"], settings.trim_section, raw_shape)
    header = result.header
    was = header.get("BAYERPAT", header.get("COLORTYP"))
    header["BAYERPAT"] = (pattern, "Bayer pattern at array pixel (0, 0), numpy order")
    header["XBAYROFF"] = (0, "pattern offset: BAYERPAT is at pixel (0, 0)")
    header["YBAYROFF"] = (0, "pattern offset: BAYERPAT is at pixel (0, 0)")
    header.remove("COLORTYP", ignore_missing=True)
    header.remove("ROWORDER", ignore_missing=True)  # taken into BAYERPAT
    said = f"colour sensor: BAYERPAT {was} -> {pattern} at the calibrated mosaic's pixel (0, 0)"
    result.history.append(said)
    return said


def channel_header(header, channel, method):
    """A demosaiced channel's header: the mosaic's, less the pattern cards,
    with CHANNEL, FILTER (the channel; the sensor's filter in OSCFILT) and
    DEMOSAIC."""
    out = header.copy()
    for key in MOSAIC_CARDS:
        out.remove(key, ignore_missing=True)
    if "FILTER" in out:
        out["OSCFILT"] = (str(out["FILTER"]), "filter in front of the colour sensor")
    out["FILTER"] = (channel, "colour channel of a demosaiced Bayer frame")
    out["CHANNEL"] = (channel, "colour channel: R, G or B")
    out["DEMOSAIC"] = (method, "demosaic method: bilinear or superpixel")
    out.add_history(
        f"channel {channel} of the mosaic (BAYERPAT {header.get('BAYERPAT')}), {method}"
    )
    return out


def write_channels(result, frame):
    """Demosaic a calibrated colour frame (``frame["demosaic"]``: bilinear
    or superpixel) into its three channel files (``frame["channels"]``:
    {channel: path}), each with MASK and UNCERT. Returns the luminance and
    its mask (to catalogue stars on), each channel's sky level and noise
    (the catalogue's meta: register subtracts each channel's own sky) and a
    line of history."""
    method = frame.get("demosaic", "bilinear")
    pattern = result.header["BAYERPAT"]
    planes = bayer.demosaic(
        np.asarray(result.data, dtype=np.float32),
        pattern,
        method,
        mask=result.mask,
        variance=result.variance,
    )
    channels = {}
    for channel in bayer.CHANNELS:
        data = planes.data[channel]
        sigma = None if planes.variance is None else np.sqrt(planes.variance[channel])
        header = channel_header(result.header, channel, method)
        write_image(
            frame["channels"][channel],
            data,
            header,
            mask=planes.mask[channel],
            uncertainty=sigma,
        )
        sky = background(data[planes.mask[channel] == 0])
        channels[channel] = {"sky": sky.level, "noise": sky.noise}
    mask = planes.mask["R"] | planes.mask["G"] | planes.mask["B"]
    shape = planes.data["R"].shape
    said = (
        f"demosaiced ({method}, {pattern}) into R, G, B of {shape[1]}x{shape[0]} pixels; "
        "stars catalogued on their luminance (the mean of the three)"
    )
    return bayer.luminance(planes), mask, channels, said
