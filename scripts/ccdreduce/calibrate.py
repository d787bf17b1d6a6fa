"""Calibrating one raw frame: the stages in order, written as data.

``STAGES`` lists (name, function); a master dark runs the stages up to
"bias", a master flat up to "dark", a science frame all of them. Each stage
takes the frame being built, the recipe (which masters, what scale) and the
settings, and returns nothing: it changes the frame in place and appends a
line of history.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import bayer, noise
from .errors import FrameProblem
from .fitsfile import (
    MASK_BAD_FLAT,
    MASK_SATURATED,
    map_pixels,
    read_header,
    read_image,
    read_uncertainty,
)
from .sections import section_slices

assert MASK_SATURATED == 1  # load_raw writes the saturation test's booleans as bit 1

#: Percentile of a frame's pixels taken as its pedestal when none is
#: configured: below the sky's noise (2.6 sigma under a flat sky), above the
#: few dead and trapped pixels, so the frame stays positive where it is sky.
PEDESTAL_PERCENTILE = 0.5


@dataclass
class Settings:
    """The calibration settings of config.yaml that act on pixels
    (built from rule params: ccdreduce.config.pixel_settings)."""

    trim_section: str | None = None
    overscan_section: str | None = None
    overscan_model: str = "median"  # "median": one level; "row": one per row
    saturation_adu: float = 65535.0
    min_flat: float = 0.05
    # ADU subtracted from a frame that nothing else takes the bias from
    # (recipe "pedestal"); None: the frame's PEDESTAL_PERCENTILE
    pedestal: float | None = None


@dataclass
class WorkFrame:
    """A frame on its way through the stages."""

    path: str
    data: np.ndarray
    header: object
    mask: np.ndarray
    history: list = field(default_factory=list)
    noise: object = None  # a noise.NoiseModel: then ``variance`` is carried
    variance: np.ndarray | None = None  # ADU^2, once the signal is known

    @property
    def uncertainty(self):
        """The standard deviation of each pixel (None without a noise model)."""
        return None if self.variance is None else np.sqrt(self.variance)


class Masters:
    """Master frames read once and shared by every frame that needs them.

    Recipes name masters relative to results_dir; this resolves them.
    """

    def __init__(self, results_dir="."):
        self.results_dir = Path(results_dir)
        self._loaded = {}
        self._sigma = {}
        self._headers = {}
        self._bad_flat = {}

    def get(self, name):
        if name not in self._loaded:
            # memory-mapped: a per-frame job touches each master once
            self._loaded[name] = map_pixels(self.results_dir / name)
        return self._loaded[name]

    def header(self, name):
        """A master's primary header (its measured noise cards)."""
        if name not in self._headers:
            self._headers[name] = read_header(self.results_dir / name)
        return self._headers[name]

    def sigma(self, name):
        """A master's UNCERT (its standard deviation), or None if it has none."""
        if name not in self._sigma:
            self._sigma[name] = read_uncertainty(self.results_dir / name)
        return self._sigma[name]

    def bad_flat(self, name, min_flat):
        """Where a master flat is too low (or NaN) to divide by; computed once."""
        if (name, min_flat) not in self._bad_flat:
            flat = self.get(name)
            bad = ~(flat >= min_flat)
            self._bad_flat[(name, min_flat)] = bad if bad.any() else None
        return self._bad_flat[(name, min_flat)]


def load_raw(path, settings):
    data, header = read_image(path)
    saturation = float(header.get("SATURATE", settings.saturation_adu))
    mask = (data >= saturation).view(np.uint8)  # MASK_SATURATED is 1
    return WorkFrame(path=str(path), data=data, header=header, mask=mask)


def subtract_overscan(frame, recipe, masters, settings):
    if not recipe["overscan"]:
        return
    rows, cols = section_slices(settings.overscan_section, frame.data.shape)
    strip = frame.data[rows, cols]
    if settings.overscan_model == "row":
        level = np.median(strip, axis=1)
        full = np.full(frame.data.shape[0], np.nan, dtype=np.float32)
        full[rows] = level
        frame.data -= full[:, None]
        frame.history.append(f"overscan {settings.overscan_section}: row medians subtracted")
    else:
        level = float(np.median(strip))
        frame.data -= level
        frame.header["OVSCLEV"] = (level, "overscan level subtracted, ADU")
        frame.history.append(f"overscan {settings.overscan_section}: {level:.2f} ADU subtracted")


def trim(frame, recipe, masters, settings):
    if not settings.trim_section:
        return
    try:
        rows, cols = section_slices(settings.trim_section, frame.data.shape)
    except ValueError as exc:
        raise FrameProblem(
            frame.path,
            f"trim_section {exc}",
            "set trim_section in config.yaml to a section inside the frame, or null for no trim",
        ) from exc
    frame.data = np.ascontiguousarray(frame.data[rows, cols])
    frame.mask = np.ascontiguousarray(frame.mask[rows, cols])
    if frame.variance is not None:
        frame.variance = np.ascontiguousarray(frame.variance[rows, cols])
    frame.header["TRIMSEC"] = (settings.trim_section, "section of the raw frame kept")
    frame.history.append(f"trimmed to {settings.trim_section}")


def _master_for(frame, recipe, masters, kind):
    """The master the recipe names for this stage, checked against the frame."""
    name = recipe[kind]
    master = masters.get(name)
    if master.shape != frame.data.shape:
        raise FrameProblem(
            frame.path,
            f"shape {frame.data.shape[::-1]} after trimming differs from master "
            f"{name} {master.shape[::-1]}",
            "use the same trim_section for all frames, and keep binnings in separate nights",
        )
    return master


def _start_variance(frame):
    """The raw pixels' variance from the signal above the bias (now in
    ``frame.data``): Poisson and read noise, by the frame's noise model."""
    if frame.noise is not None and frame.variance is None:
        frame.variance = frame.noise.variance(frame.data)
        frame.history.append(frame.noise.history())


def _add_master_variance(frame, recipe, masters, kind, scale=1.0):
    if frame.variance is None:
        return
    sigma = masters.sigma(recipe[kind])
    if sigma is None:
        frame.history.append(f"{recipe[kind]} has no UNCERT: its noise not counted")
        return
    frame.variance += np.float32(scale * scale) * np.square(sigma, dtype=np.float32)


def subtract_bias(frame, recipe, masters, settings):
    if not recipe["bias"]:
        return
    frame.data -= _master_for(frame, recipe, masters, "bias")
    _start_variance(frame)
    _add_master_variance(frame, recipe, masters, "bias")
    frame.history.append(f"bias subtracted: {recipe['bias']}")


def subtract_dark(frame, recipe, masters, settings):
    if not recipe["dark"]:
        return
    dark = _master_for(frame, recipe, masters, "dark")
    scale = np.float32(recipe["dark_scale"])
    frame.data -= dark if scale == 1 else scale * dark
    # without a bias the dark stood for it: the signal is known only now
    _start_variance(frame)
    _add_master_variance(frame, recipe, masters, "dark", float(scale))
    frame.history.append(f"dark subtracted x{float(scale):.6g}: {recipe['dark']}")


def low_level(data, percentile=PEDESTAL_PERCENTILE):
    """A robust low level of a frame: the ``percentile`` of its finite,
    unsaturated pixels (NaN if it has none)."""
    values = data[np.isfinite(data)]
    return float(np.percentile(values, percentile)) if values.size else float("nan")


def subtract_pedestal(frame, recipe, masters, settings):
    """No bias, dark or overscan: subtract calibration.pedestal, else the
    frame's own low level, so the signal is counted from about the bias."""
    if not recipe.get("pedestal"):
        return
    if settings.pedestal is not None:
        level, source = float(settings.pedestal), "config"
        said = f"calibration.pedestal {level:.2f} ADU subtracted (no bias, dark or overscan)"
    else:
        unsaturated = np.where(frame.mask & MASK_SATURATED, np.nan, frame.data)
        level, source = low_level(unsaturated), f"p{PEDESTAL_PERCENTILE:g}"
        if not np.isfinite(level):
            raise FrameProblem(
                frame.path,
                "no unsaturated pixel to take a pedestal from",
                "set calibration.pedestal in config.yaml, or exclude the frame",
            )
        said = (
            f"pedestal {level:.2f} ADU subtracted: the frame's {PEDESTAL_PERCENTILE:g}th "
            "percentile (no bias, dark, overscan or calibration.pedestal)"
        )
    frame.data -= np.float32(level)
    frame.header["PEDESTAL"] = (round(level, 3), "ADU subtracted in place of a bias")
    frame.header["PEDSRC"] = (source, "PEDESTAL from: config, or pN = Nth percentile")
    frame.history.append(said)
    _start_variance(frame)
    _count_sky_under_pedestal(frame)


def _count_sky_under_pedestal(frame):
    """A pedestal takes off more than the bias: the sky under it is no
    longer in the signal, so the model's Poisson term misses its noise. The
    sky's measured pixel-to-pixel noise beyond what the model predicts at
    the sky level is added to every pixel (the sky under the pedestal is the
    same everywhere; zero when the model was fitted to this sky)."""
    if frame.variance is None:
        return
    level, measured = noise.sky_statistics(frame.data, mosaic=bayer.is_mosaic(frame.header))
    predicted = float(frame.noise.variance(np.float32(level)))
    extra = measured**2 - predicted
    if extra > 0.01 * predicted:  # not a model fitted to this very sky
        frame.variance += np.float32(extra)
        frame.history.append(
            f"variance + {extra:.4g} ADU^2: the sky's noise {measured:.3g} ADU against "
            f"{predicted**0.5:.3g} ADU predicted at its level above the pedestal"
        )


def divide_flat(frame, recipe, masters, settings):
    if not recipe["flat"]:
        return
    flat = _master_for(frame, recipe, masters, "flat")
    _start_variance(frame)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame.data /= flat
        if frame.variance is not None:
            frame.variance /= np.square(flat, dtype=np.float32)
            sigma = masters.sigma(recipe["flat"])
            if sigma is not None:
                frame.variance += np.square(frame.data * (sigma / flat), dtype=np.float32)
    bad = masters.bad_flat(recipe["flat"], settings.min_flat)
    if bad is not None:
        frame.data[bad] = np.nan
        if frame.variance is not None:
            frame.variance[bad] = np.nan
        frame.mask[bad] |= MASK_BAD_FLAT
        frame.history.append(f"{int(bad.sum())} pixels with flat < {settings.min_flat} set to NaN")
    frame.history.append(f"flat divided: {recipe['flat']}")


#: The order of calibration, as data.
STAGES = (
    ("overscan", subtract_overscan),
    ("trim", trim),
    ("bias", subtract_bias),
    ("dark", subtract_dark),
    ("pedestal", subtract_pedestal),
    ("flat", divide_flat),
)


def run_stages(frame, recipe, masters, settings, until="flat"):
    """Apply the stages in order, up to and including ``until``."""
    for name, stage in STAGES:
        stage(frame, recipe, masters, settings)
        if name == until:
            break
    if until == "flat":
        _start_variance(frame)  # a frame no master touched: its raw signal
    return frame


def calibrate_frame(path, recipe, settings, masters, noise=None):
    """A raw light frame calibrated as its recipe says (float32); with a
    noise model (a NoiseModel, or a callable of the raw header giving one)
    its variance too."""
    frame = load_raw(path, settings)
    frame.noise = noise(frame.header) if callable(noise) else noise
    return run_stages(frame, recipe, masters, settings)
