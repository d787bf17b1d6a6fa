"""The camera's noise model: gain (e-/ADU) and read noise (e-), where they
came from, and how to measure them from the night's own frames.

Each quantity is taken from the first source that has it:

1. ``header``: the raw frame's keywords (``headers.keywords.gain``, default
   EGAIN then GAIN; ``headers.keywords.read_noise``, RDNOISE, READNOIS,
   RDNOIS, RON). A gain outside PLAUSIBLE_GAIN is not used, with a note:
   N.I.N.A./ASCOM write the CMOS gain *setting* (e.g. 120) as GAIN, not
   e-/ADU (their EGAIN is e-/ADU).
2. ``config``: ``camera.gain`` / ``camera.read_noise``.
3. ``measured``: photon transfer on the night's biases and flats, done by
   the master jobs (read noise in ADU from pairs of biases into the master
   bias as RDNOIADU; gain from pairs of flats into the master flat as
   GAIN, RDNOISE, NOISESRC = 'measured').
4. ``sky``: the frame's own sky, its level against its pixel-to-pixel
   variance (sky / G + (R / G)^2), for what the other sources left open.

The photon-transfer method (Janesick, "Photon Transfer", 2007):

- read noise: two biases B1, B2 differ by twice the read noise and nothing
  else (the bias pattern cancels), so sigma_RN(ADU) = robust_std(B1 - B2) / sqrt 2.
- gain: two flats F1, F2 at levels m1, m2 (bias and dark subtracted, the
  same master subtracted from both, so its noise cancels) share their
  pixel-response pattern, which cancels in D = F1 - F2 m1/m2. Then
  var(D) = m1/G + sigma_RN^2 + (m1/m2)^2 (m2/G + sigma_RN^2), so
  G = m1 (1 + m1/m2) / (var(D) - (1 + (m1/m2)^2) sigma_RN^2),
  which is the familiar (m1 + m2) / (var(F1 - F2) - 2 sigma_RN^2) at m1 = m2.
  var(D) is a 5-sigma clipped variance on the central half of
  the frame (vignetting is least there, hot pixels and cosmic rays do not
  move it); the gain is the median over pairs of flats of similar level.
"""

import math
from dataclasses import dataclass

import numpy as np

from .robust import mad_std

#: e-/ADU that a CCD or CMOS camera's readout can have; anything else in a
#: GAIN card is a setting (N.I.N.A./ASCOM), not a conversion factor.
PLAUSIBLE_GAIN = (0.05, 20.0)
#: e- of read noise a camera can have.
PLAUSIBLE_READ_NOISE = (0.0, 100.0)
#: Sources, in the order they are tried.
SOURCES = ("header", "config", "measured", "sky")
#: Two flats are paired for the gain when their levels differ by less than this.
MAX_PAIR_RATIO = 1.25


@dataclass(frozen=True)
class NoiseModel:
    """Gain in e-/ADU and read noise in e-, and which source gave each."""

    gain: float
    read_noise: float
    gain_source: str
    read_noise_source: str

    @property
    def source(self):
        """'header', 'config', 'measured', 'sky', or e.g. 'header+measured'
        when gain (first) and read noise came from different sources."""
        if self.gain_source == self.read_noise_source:
            return self.gain_source
        return f"{self.gain_source}+{self.read_noise_source}"

    @property
    def read_noise_adu(self):
        return self.read_noise / self.gain

    def variance(self, signal_adu):
        """Variance in ADU^2 of a raw pixel holding ``signal_adu`` above the
        bias: Poisson (of the electrons) plus read noise."""
        signal = np.maximum(np.nan_to_num(signal_adu, nan=0.0), 0.0)
        return (signal / np.float32(self.gain) + np.float32(self.read_noise_adu**2)).astype(
            np.float32
        )

    def cards(self):
        """Header cards GAIN, RDNOISE, NOISESRC."""
        return {
            "GAIN": (round(self.gain, 5), "e-/ADU, noise model"),
            "RDNOISE": (round(self.read_noise, 4), "read noise, e-"),
            "NOISESRC": (self.source, "source of GAIN (+ RDNOISE if another)"),
        }

    def history(self):
        return (
            f"noise model: gain {self.gain:.4g} e-/ADU ({self.gain_source}), "
            f"read noise {self.read_noise:.3g} e- ({self.read_noise_source})"
        )


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def from_header(header, keywords):
    """(gain, read_noise, notes) from a raw header; None for what it lacks or
    what is implausible (said in the notes). ``keywords``: {'gain': [...],
    'read_noise': [...]} as headers.keywords has them."""
    notes = []
    gain = read_noise = None
    for key in keywords.get("gain", ()):
        value = _number(header.get(key.upper()))
        if value is None:
            continue
        if PLAUSIBLE_GAIN[0] <= value <= PLAUSIBLE_GAIN[1]:
            gain = value
            break
        notes.append(
            f"header {key.upper()} = {value:g} is not used as a gain in e-/ADU (plausible "
            f"{PLAUSIBLE_GAIN[0]:g}..{PLAUSIBLE_GAIN[1]:g}): N.I.N.A./ASCOM write the CMOS "
            "gain setting as GAIN; give camera.gain in config.yaml"
        )
    for key in keywords.get("read_noise", ()):
        value = _number(header.get(key.upper()))
        if value is None:
            continue
        if PLAUSIBLE_READ_NOISE[0] < value <= PLAUSIBLE_READ_NOISE[1]:
            read_noise = value
            break
        notes.append(f"header {key.upper()} = {value:g} is not a read noise in e-; not used")
    return gain, read_noise, notes


def from_master_flat(header):
    """(gain, read_noise) a master flat measured (NOISESRC 'measured'), or Nones."""
    if header is None or header.get("NOISESRC") != "measured":
        return None, None
    return _number(header.get("GAIN")), _number(header.get("RDNOISE"))


def from_sky(level, noise, gain=None, read_noise=None):
    """(gain, read_noise) from a sky of ``level`` ADU (above the bias) and
    pixel-to-pixel ``noise`` ADU: level / G + (R / G)^2 = noise^2, solved
    for whichever is None. Both unknown: read noise taken as 0 (the gain is
    then a lower bound; said by the caller)."""
    variance = noise**2
    if gain is None and read_noise is None:
        read_noise = 0.0
    if gain is None:
        # R^2 u^2 + level u - variance = 0 for u = 1/G
        if read_noise == 0:
            u = variance / level if level > 0 else float("nan")
        else:
            r2 = read_noise**2
            u = (-level + math.sqrt(level**2 + 4 * r2 * variance)) / (2 * r2)
        gain = 1.0 / u if u > 0 else float("nan")
    if read_noise is None:
        rest = variance - max(level, 0.0) / gain
        read_noise = gain * math.sqrt(rest) if rest > 0 else 0.0
    return gain, read_noise


def colour_planes(data, mosaic):
    """The frame as arrays of one colour each: a Bayer mosaic's four 2x2
    sub-grids (there a pixel's neighbours are other colours, and their
    difference is colour, not noise), or the frame itself."""
    if not mosaic:
        return [data]
    return [data[dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]


def sky_statistics(data, mosaic=False):
    """(level, noise) of a frame's sky (sky_statistics_of_one_colour); of a
    Bayer mosaic the mean over its four colour sub-grids of their levels and
    of their variances (Poisson noise grows with the level: the two means
    belong together). Measured across colours, a sky of R 300, G 500, B 400
    ADU read 114 ADU of noise against 20.5."""
    if not mosaic:
        return sky_statistics_of_one_colour(data)
    stats = [sky_statistics_of_one_colour(plane) for plane in colour_planes(data, True)]
    level = float(np.mean([level for level, _ in stats]))
    return level, math.sqrt(float(np.mean([noise**2 for _, noise in stats])))


def sky_statistics_of_one_colour(data):
    """(level, pixel-to-pixel noise) of a frame's sky in ADU: the median of
    the pixels away from stars, and the clipped std of their neighbour
    differences / sqrt 2 (vignetting and gradients cancel; cosmic rays are
    clipped). Stars are where the 3x3 mean stands 4.5 of its sigmas above
    the median, grown by 2 px: their wings' gradients are no noise, and
    with them the noise read 1.13-1.18x the sky's scatter on a 20 s frame
    of the lights-only night. A frame that is nearly all "star" (a nebula)
    is measured whole."""
    from scipy import ndimage

    finite = np.isfinite(data)
    level = float(np.median(data[finite]))
    diff = data[:, 1:] - data[:, :-1]
    pairs = finite[:, 1:] & finite[:, :-1]
    rough = float(mad_std(diff[pairs])) / math.sqrt(2)
    smooth = ndimage.uniform_filter(np.where(finite, data, level).astype(np.float64), 3)
    stars = ndimage.binary_dilation(smooth > level + 1.5 * rough, iterations=2)
    sky = finite & ~stars
    sky_pairs = sky[:, 1:] & sky[:, :-1]
    if sky_pairs.sum() >= 0.1 * pairs.sum():
        level, pairs = float(np.median(data[sky])), sky_pairs
    return level, math.sqrt(_robust_var(diff[pairs]) / 2.0)


def resolve(header, keywords, camera=None, measured=(None, None), sky=None):
    """The NoiseModel of one frame, and notes: each quantity from the first
    source that has it (header > config > measured > sky). ``camera`` is
    config's camera {gain, read_noise}; ``measured`` (gain, read_noise) from
    the master flat; ``sky`` a callable giving (level, noise) in raw ADU,
    asked only when something is still missing."""
    gain, read_noise, notes = from_header(header, keywords)
    gain_source = "header" if gain is not None else None
    read_source = "header" if read_noise is not None else None
    camera = camera or {}
    for value, name in ((camera.get("gain"), "gain"), (camera.get("read_noise"), "read_noise")):
        if value is None:
            continue
        if name == "gain" and gain is None:
            gain, gain_source = float(value), "config"
        if name == "read_noise" and read_noise is None:
            read_noise, read_source = float(value), "config"
    m_gain, m_read = measured
    if gain is None and m_gain:
        gain, gain_source = m_gain, "measured"
    if read_noise is None and m_read is not None and m_gain:
        # measured in ADU by the bias job, in e- with the measured gain:
        # rescaled to the gain used
        read_noise = m_read * gain / m_gain
        read_source = "measured"
    if gain is None or read_noise is None:
        if sky is None:
            raise ValueError("no gain or read noise, and no sky to measure them from")
        level, noise = sky()
        both_missing = gain is None and read_noise is None
        gain_sky, read_sky = from_sky(level, noise, gain, read_noise)
        if gain is None:
            gain, gain_source = gain_sky, "sky"
        if read_noise is None:
            read_noise, read_source = read_sky, "sky"
        if both_missing:
            notes.append(
                "gain from the sky with read noise taken as 0 (no header, config or "
                "measured value): give camera.gain and camera.read_noise in config.yaml"
            )
        if not (gain > 0):
            raise ValueError(f"the sky gives no gain (level {level:g}, noise {noise:g} ADU)")
    return NoiseModel(float(gain), float(read_noise), gain_source, read_source), notes


def central(image, fraction=0.5):
    """The central ``fraction`` of an image along each axis."""
    ny, nx = image.shape[-2:]
    y0, x0 = int(ny * (1 - fraction) / 2), int(nx * (1 - fraction) / 2)
    return image[..., y0 : ny - y0, x0 : nx - x0]


def _robust_var(values, clip=5.0, passes=3):
    """Variance of the values within ``clip`` standard deviations of their
    median (hot pixels, cosmic rays out). Not the MAD itself: of integer
    ADU differences it is an integer, biased by up to a few % at 4 ADU."""
    values = values[np.isfinite(values)].astype(np.float64)
    centre, width = np.median(values), float(mad_std(values))
    for _ in range(passes):
        kept = values[np.abs(values - centre) <= clip * width]
        centre, width = kept.mean(), kept.std()
    # a Gaussian clipped at 5 sigma keeps all but 6e-7 of its variance
    return float(width) ** 2


def read_noise_adu(biases):
    """Read noise in ADU from raw (trimmed) biases: the median over
    consecutive pairs of robust_std(B1 - B2) / sqrt 2. None for < 2 biases."""
    if len(biases) < 2:
        return None
    values = [
        math.sqrt(_robust_var(central(biases[i]).astype(np.float64) - central(biases[i + 1])) / 2)
        for i in range(0, len(biases) - 1, 2)
    ]
    return float(np.median(values))


def flat_pairs(levels):
    """Indices (i, j) of flats paired for the gain: neighbours in level,
    each flat used once, levels within MAX_PAIR_RATIO."""
    order = sorted(range(len(levels)), key=lambda i: levels[i])
    pairs = []
    k = 0
    while k + 1 < len(order):
        i, j = order[k], order[k + 1]
        if levels[i] > 0 and levels[j] / levels[i] < MAX_PAIR_RATIO:
            pairs.append((i, j))
            k += 2
        else:
            k += 1
    return pairs


def gain_from_flats(flats, levels, read_noise_adu=None, mosaic=False):
    """Gain in e-/ADU from bias- and dark-subtracted flats (arrays in ADU,
    their median ``levels``), read noise in ADU from the biases (None: taken
    as 0, a flat's Poisson noise dwarfs it). The median over pairs (and, of
    a Bayer mosaic, over its four colour sub-grids, each at its own level:
    one level for all colours read the gain 5 % high); None with fewer than
    one pair."""
    rn2 = (read_noise_adu or 0.0) ** 2
    gains = []
    for i, j in flat_pairs(levels):
        for f1, f2 in zip(
            colour_planes(central(flats[i]), mosaic),
            colour_planes(central(flats[j]), mosaic),
            strict=True,
        ):
            f1, f2 = f1.astype(np.float64), f2.astype(np.float64)
            m1, m2 = float(np.nanmedian(f1)), float(np.nanmedian(f2))
            ratio = m1 / m2
            excess = _robust_var(f1 - f2 * ratio) - (1 + ratio**2) * rn2
            if excess > 0:
                gains.append(m1 * (1 + ratio) / excess)
    return float(np.median(gains)) if gains else None
