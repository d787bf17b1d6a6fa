"""A deterministic simulator of raw CCD nights, with the truth written beside.

What it models, in the order light and charge meet the camera:
stars (Moffat PSF, known positions and fluxes) and sky, dimmed by a
per-frame transparency and moved by the night's pointing plus a sub-pixel
dither; the flat field (vignetting, dust donuts, pixel response); dark
current with hot pixels; Poisson noise; cosmic rays; then gain, a bias level
with row and column structure, read noise, an overscan strip and uint16
saturation. Each night writes its headers in a different camera dialect.

The mount and camera (issue 13): a night may have its camera turned on the
sky (``rotation``), a German equatorial mount that flips at the meridian
partway through (``flip_at``: the later frames turned 180 deg more, PIERSIDE
East then West) and 2x2 binning (``binning``). The sky is one catalogue for
all nights, in the *sky grid*: the pixels of an unbinned, unturned frame at
pointing (0, 0). Each light's truth record carries ``transform``, the 2x3
matrix from its 0-based pixel (x, y, 1) to the sky grid; ``true_positions``
and ``relative_transform`` use it.

Data quality and noise (issue 14): a camera may have bad columns
(``Camera.bad_columns``: a dead segment of low response with a charge trap,
a hot column of extra dark current) beside its hot pixels; the truth lists
both (``hot_pixels``, ``camera.bad_columns``), and each light's record gives
its noise: ``sky_sigma_adu``, the standard deviation of one calibrated sky
pixel at the frame centre (Poisson of sky and dark, read noise, through the
gain and the flat), with ``gain`` and ``read_noise``. Each dialect writes the
gain and read-noise keywords its software writes (NOISE_CARDS).

Same seed, same bytes: every frame draws from its own generator seeded by
(seed, night, frame), so nights can be made one at a time.
"""

import json
import math
import zlib
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits

FILTERS = ("V", "R")
#: The filter of a colour camera's frames (a UV/IR cut, as on most).
COLOUR_FILTER = "L"


@dataclass(frozen=True)
class BadColumn:
    """A column segment, rows y0 to y1 (0-based, y1 excluded), of unbinned
    pixels. ``response`` multiplies the light it collects (flat light too, so
    the flat shows it); ``trap`` electrons per pixel are lost in transfer
    (a charge trap: nothing a flat, taken bright, corrects at sky level);
    ``dark`` adds e-/s of dark current (a hot column)."""

    x: int
    y0: int
    y1: int
    response: float = 1.0
    trap: float = 0.0
    dark: float = 0.0


def dead_column(x, y0, y1, response=0.3, trap=60.0):
    """A low-response column segment with a charge trap: dark at sky level
    after flat-fielding, like the one near x = 1130 of a real L stack."""
    return BadColumn(x, y0, y1, response=response, trap=trap)


def hot_column(x, y0, y1, dark=20.0):
    """A column segment of strong dark current (e-/s)."""
    return BadColumn(x, y0, y1, dark=dark)


@dataclass
class Camera:
    ny: int = 512  # active rows
    nx: int = 512  # active columns
    overscan: int = 16  # overscan columns to the right of the active area
    gain: float = 1.5  # e-/ADU
    read_noise: float = 6.0  # e-
    bias_level: float = 1000.0  # ADU
    dark_current: float = 0.05  # e-/s, typical pixel
    hot_fraction: float = 0.003
    saturation: int = 65535
    bad_columns: tuple = ()  # BadColumn segments; none on the demo camera
    # False: an even response (no vignetting, dust or pixel response), so a
    # night stacked without a flat can be checked against the stars' truth
    flat_field: bool = True
    # a colour sensor's Bayer pattern at raw pixel (0, 0), e.g. "GRBG"
    # (written as BAYERPAT); None: a mono sensor, as on the demo camera
    bayer: str | None = None

    @property
    def raw_shape(self):
        return self.ny, self.nx + self.overscan

    @property
    def trim_section(self):
        return f"[1:{self.nx},1:{self.ny}]"

    @property
    def overscan_section(self):
        if not self.overscan:  # a camera without a strip, e.g. for trim_section null
            return None
        return f"[{self.nx + 3}:{self.nx + self.overscan},1:{self.ny}]"

    def binned(self, binning):
        """The camera as a binned readout sees it: fewer, larger pixels
        (gain and read noise are per read pixel, so they stay)."""
        if binning == 1:
            return self
        if any(n % binning for n in (self.ny, self.nx, self.overscan)):
            raise ValueError(f"a {self.ny}x{self.nx}+{self.overscan} camera does not bin {binning}")
        return replace(
            self, ny=self.ny // binning, nx=self.nx // binning, overscan=self.overscan // binning
        )


@dataclass
class NightSpec:
    name: str
    dialect: str  # maxim | nina | iraf | lab
    start: str  # UTC of the first frame
    pointing: tuple  # (x, y) offset of the field in pixels
    n_bias: int = 7
    darks: dict = field(default_factory=lambda: {30.0: 5, 60.0: 5})
    flats: dict = field(default_factory=lambda: {"V": (3.0, 7), "R": (2.0, 7)})
    lights: dict = field(
        default_factory=lambda: {("V", 30.0): 3, ("V", 60.0): 2, ("R", 30.0): 3, ("R", 60.0): 2}
    )
    suffix: str = ".fits"
    seeing: float = 3.4  # FWHM in pixels
    # extra science frames through cloud: (filter, exposure, transparency)
    clouded: list = field(default_factory=list)
    # deg the sky appears turned counter-clockwise in (x, y) about the frame
    # centre, e.g. 0.8 after the camera was taken off and put back
    rotation: float = 0.0
    # fraction of the night's lights (in time order) after which a German
    # equatorial mount flips: the later lights are turned 180 deg more
    flip_at: float | None = None
    # PIERSIDE of the night's first lights ("EAST" when flipping and unset);
    # the header is written on every light only when set or with a flip
    pier_side: str | None = None
    binning: int = 1  # 1 or 2: each read pixel sums binning x binning pixels
    # range of the lights' transparency (drawn uniformly per frame)
    transparency: tuple = (0.75, 1.0)
    # cosmic-ray hits per second on 512 x 512 pixels
    cosmic_ray_rate: float = 0.35
    # the camera (issue 15): INSTRUME written; a label that puts its files in
    # a sub-folder of the night and prefixes their names (two cameras in one
    # night); SET-TEMP (deg C, not written when None), per dark exposure if
    # given in dark_set_temps; how the lights' headers spell a filter
    # ({"V": "Johnson V"}); extra header cards (GAIN, OFFSET of a CMOS)
    instrument: str = "Simulated CCD"
    camera_label: str = ""
    set_temp: float | None = None
    dark_set_temps: dict = field(default_factory=dict)
    filter_spellings: dict = field(default_factory=dict)
    cards: dict = field(default_factory=dict)


def demo_nights():
    """The bundled demo: three nights that exercise the calibration policy.

    2025-03-01 has everything; 2025-03-02 has no bias frames (borrows the
    bias of 03-01); 2025-03-05 has no flats (borrows those of 03-02) and its
    darks do not match the 45 s science frames (scaled); its last two R
    frames were taken through cloud, one clouded out (no stars), one with
    30 % transparency, and must be left out of the stack.

    Each night is named for its local evening and starts at 19:40-19:50 EST
    (00:40-00:50 UTC the next day), at the site the headers give (41.988 N,
    70.97 W); NGC 2362 is then near the meridian, 20-23 deg high.
    """
    return [
        NightSpec("2025-03-01", "maxim", "2025-03-02T00:40:00", (0.0, 0.0)),
        NightSpec(
            "2025-03-02",
            "nina",
            "2025-03-03T00:42:00",
            (43.0, -27.0),
            n_bias=0,
            suffix=".fit",
            seeing=3.9,
        ),
        NightSpec(
            "2025-03-05",
            "lab",
            "2025-03-06T00:50:00",
            (-31.0, 18.0),
            flats={},
            lights={("V", 45.0): 3, ("R", 45.0): 3, ("R", 60.0): 2},
            suffix=".fts",
            seeing=3.0,
            clouded=[("R", 60.0, 0.0), ("R", 60.0, 0.3)],
        ),
    ]


def mount_nights():
    """Four small nights of one field for the registration tests, each with
    its own calibration and four R lights of 30 s on the 512x512 camera:

    2025-03-10  the mount flips halfway: two lights unturned (PIERSIDE EAST,
                pointing (0, 0), so the sky grid is this night's grid), two
                turned 180 deg (WEST)
    2025-03-11  the camera put back 0.8 deg turned, pointing moved
    2025-03-12  the camera turned 90 deg
    2025-03-13  the camera binned 2x2 (256x256 pixels)

    Pointings stay within 25 pixels, so every frame overlaps every other by
    more than 80 % and the catalogue (which reaches 80 pixels beyond the
    frame) fills every frame, whatever its rotation.

    With the default camera the binned frames are 256x264 (overscan binned
    too), so one ``trim_section`` cannot fit both binnings; simulate with
    ``Camera(overscan=0)`` and run with ``trim_section=null`` to reduce all
    four nights in one run.
    """
    small = {
        "n_bias": 3,
        "darks": {30.0: 3},
        "flats": {"R": (2.0, 3)},
        "lights": {("R", 30.0): 4},
    }
    return [
        NightSpec("2025-03-10", "maxim", "2025-03-11T00:40:00", (0.0, 0.0), flip_at=0.5, **small),
        NightSpec(
            "2025-03-11", "maxim", "2025-03-12T00:40:00", (14.0, -9.0), rotation=0.8, **small
        ),
        NightSpec(
            "2025-03-12", "maxim", "2025-03-13T00:40:00", (-12.0, 20.0), rotation=90.0, **small
        ),
        NightSpec("2025-03-13", "maxim", "2025-03-14T00:40:00", (9.0, 11.0), binning=2, **small),
    ]


def colour_camera():
    """The small colour camera of colour_nights(): 256 x 256 pixels behind
    a GRBG Bayer mosaic (row 0: G R, row 1: B G), the demo's gain and read
    noise."""
    return Camera(ny=256, nx=256, overscan=8, bayer="GRBG")


def colour_nights():
    """One night of a colour camera (colour_camera()) for the colour tests
    (issue 15): 3 biases, 3 darks and 5 flats through the camera's UV/IR
    cut ('L', a warm lamp: blue pixels see half the light of green), 16
    lights of 30 s dithered by up to 3 px (a channel collects a quarter or
    half of a star's light: the stack needs the photons of many frames). Stars have colours (truth
    'colour': each star's R, G and B flux)."""
    return [
        NightSpec(
            "2025-05-01",
            "nina",
            "2025-05-02T01:00:00",
            (0.0, 0.0),
            n_bias=3,
            darks={30.0: 3},
            flats={COLOUR_FILTER: (2.0, 5)},
            lights={(COLOUR_FILTER, 30.0): 16},
        )
    ]


def noise_camera():
    """The small camera of noise_nights(): 256 x 256 pixels, the demo's
    gain and read noise, one dead column segment and one hot column (the
    hot pixels as on every camera)."""
    return Camera(
        ny=256,
        nx=256,
        overscan=8,
        bad_columns=(dead_column(150, 40, 220), hot_column(90, 0, 256)),
    )


def noise_nights():
    """Two nights of one field for the noise and data-quality tests (issue
    14), simulated on noise_camera(): the second pointed 44 px away in x, so
    a stack on one night's grid has a 44 px strip covered by that night's 6
    frames beside the 12-frame overlap (and narrower strips of fewer frames
    at the dither edges); transparency 0.55-1.0 and exposures of 30 and
    60 s, so the frames' noise on the reference's scale differs by ~2x;
    cosmic rays 13x as often as on the demo nights (~65 hits in a 60 s
    frame), so the 6-frame strip carries dozens.

    2025-04-01 (IRAF dialect) writes GAIN and RDNOISE; 2025-04-02 (the lab
    camera) writes neither, so its noise model must be measured from its
    biases and flats (photon transfer).
    """
    common = {
        "n_bias": 5,
        "darks": {30.0: 3, 60.0: 3},
        "flats": {"R": (2.0, 5)},
        "lights": {("R", 30.0): 3, ("R", 60.0): 3},
        "transparency": (0.55, 1.0),
        "cosmic_ray_rate": 4.5,
    }
    return [
        NightSpec("2025-04-01", "iraf", "2025-04-02T01:00:00", (0.0, 0.0), **common),
        NightSpec("2025-04-02", "lab", "2025-04-03T01:00:00", (44.0, 0.0), **common),
    ]


DIALECTS = {
    "maxim": {
        "key": "IMAGETYP",
        "bias": "Bias Frame",
        "dark": "Dark Frame",
        "flat": "Flat Field",
        "light": "Light Frame",
        "exptime": ("EXPTIME", "EXPOSURE"),
    },
    "nina": {
        "key": "IMAGETYP",
        "bias": "BIAS",
        "dark": "DARK",
        "flat": "FLAT",
        "light": "LIGHT",
        "exptime": ("EXPOSURE",),
    },
    "iraf": {
        "key": "IMAGETYP",
        "bias": "zero",
        "dark": "dark",
        "flat": "flat",
        "light": "object",
        "exptime": ("EXPTIME",),
    },
    "lab": {
        "key": "PICTTYPE",
        "bias": 2,
        "dark": 3,
        "flat": 4,
        "light": 1,
        "exptime": ("EXPTIME",),
    },
}


#: Gain and read-noise cards each dialect's software writes: MaxIm DL EGAIN
#: (e-/ADU); N.I.N.A. EGAIN and GAIN, the camera's gain *setting* (ASCOM
#: units, e.g. 120, not e-/ADU); IRAF-style headers GAIN (e-/ADU) and RDNOISE
#: (e-); the lab camera none. Values: "gain", "read_noise" or a constant.
NOISE_CARDS = {
    "maxim": {"EGAIN": ("gain", "e-/ADU")},
    "nina": {"GAIN": (120, "camera gain setting"), "EGAIN": ("gain", "e-/ADU")},
    "iraf": {"GAIN": ("gain", "e-/ADU"), "RDNOISE": ("read_noise", "read noise (e-)")},
    "lab": {},
}


def _rng(seed, *names):
    parts = [seed] + [zlib.crc32(str(n).encode()) for n in names]
    return np.random.default_rng(parts)


class Sky:
    """Everything fixed for the whole run: camera, bias, dark, flats, stars."""

    def __init__(self, camera, seed=2025, n_stars=160):
        self.camera = camera
        self.seed = seed
        c = camera
        rng = _rng(seed, "instrument")
        ny, nxr = c.raw_shape
        rows = np.arange(ny)[:, None]
        # bias: level + column pattern + slow row wave, in ADU
        bias = c.bias_level + rng.normal(0, 2.0, nxr)[None, :] + 3.0 * np.sin(rows / 37.0)
        self.bias = bias.astype(np.float32) * np.ones((ny, nxr), np.float32)
        # dark current (e-/s): a gamma-spread floor plus hot pixels
        dark = rng.gamma(4.0, c.dark_current / 4.0, (c.ny, c.nx))
        hot = rng.random((c.ny, c.nx)) < c.hot_fraction
        dark[hot] = rng.uniform(2.0, 40.0, hot.sum())
        self.dark_current = dark.astype(np.float32)
        self.hot = hot
        # flat field: pixel response x vignetting x dust donuts
        y, x = np.mgrid[0 : c.ny, 0 : c.nx]
        r2 = ((x - c.nx / 2) ** 2 + (y - c.ny / 2) ** 2) / ((c.nx / 2) ** 2 + (c.ny / 2) ** 2)
        prnu = 1.0 + rng.normal(0, 0.01, (c.ny, c.nx))
        common = self._donuts(rng, x, y, 3)
        self.flats = {}
        for i, name in enumerate(FILTERS):
            frng = _rng(seed, "filter", name)
            vignetting = 1.0 - (0.14 + 0.03 * i) * r2
            flat = prnu * vignetting * common * self._donuts(frng, x, y, 2)
            self.flats[name] = (flat / np.median(flat)).astype(np.float32)
        # stars on a field larger than the frame, so pointings can move it
        srng = _rng(seed, "stars")
        margin = 80
        self.stars = {
            "x": srng.uniform(-margin, c.nx + margin, n_stars),
            "y": srng.uniform(-margin, c.ny + margin, n_stars),
        }
        base = 10 ** srng.uniform(1.3, 4.7, n_stars)  # e-/s in V; the brightest saturate
        colour = srng.normal(1.3, 0.25, n_stars)
        self.stars["V"] = base
        self.stars["R"] = base * colour
        self.sky_rate = {"V": 4.0, "R": 7.0}  # e-/s/pixel
        self.colour = self._colour(c) if c.bayer else None
        self.trap = self._bad_columns(c)
        if not c.flat_field:  # after every draw: the other cameras' bytes stay
            self.flats = {name: np.ones_like(flat) for name, flat in self.flats.items()}

    def _colour(self, c):
        """A colour sensor (issue 15): each star's flux in R, G and B (e-/s
        at the sensor, before its response), the sky per channel, the
        channels' response (QE x dye, in the flat 'L' so that lights and
        flats see it) and the flat lamp's colour (in flats only). Draws from
        generators of its own: a mono camera's bytes do not change."""
        from .bayer import colour_masks

        rng = _rng(self.seed, "colour")
        base = self.stars["V"]
        # a colour index per star: red stars brighter in R, fainter in B
        index = rng.normal(0.0, 1.0, base.size)
        stars = {
            "R": base * np.exp(0.3 * index),
            "G": base.copy(),
            "B": base * np.exp(-0.3 * index),
        }
        response = {"R": 0.75, "G": 1.0, "B": 0.6}
        lamp = {"R": 1.15, "G": 1.0, "B": 0.55}  # a warm flat panel
        sky_rate = {"R": 5.0, "G": 6.0, "B": 3.5}
        sites = colour_masks(c.bayer, (c.ny, c.nx))
        y, x = np.mgrid[0 : c.ny, 0 : c.nx]
        r2 = ((x - c.nx / 2) ** 2 + (y - c.ny / 2) ** 2) / ((c.nx / 2) ** 2 + (c.ny / 2) ** 2)
        frng = _rng(self.seed, "filter", COLOUR_FILTER)
        prnu = 1.0 + frng.normal(0, 0.01, (c.ny, c.nx))
        flat = prnu * (1.0 - 0.12 * r2) * self._donuts(frng, x, y, 3)
        flat *= sum(np.where(sites[ch], response[ch], 0.0) for ch in response)
        self.flats[COLOUR_FILTER] = (flat / np.median(flat)).astype(np.float32)
        # for star_free and sky_sigma: the brightest channel, the mean sky
        self.stars[COLOUR_FILTER] = np.max([stars[ch] * response[ch] for ch in stars], axis=0)
        self.sky_rate[COLOUR_FILTER] = float(np.mean(list(sky_rate.values())))
        return {
            "pattern": c.bayer,
            "stars": stars,
            "response": response,
            "lamp": lamp,
            "sky_rate": sky_rate,
            "sites": sites,
            "lamp_mosaic": sum(np.where(sites[ch], lamp[ch], 0.0) for ch in lamp),
        }

    def colour_light(self, xs, ys, exposure, transparency, fwhm):
        """Electrons a colour sensor's pixels collect before the flat: each
        pixel the star and sky light of its own colour."""
        c, colour = self.camera, self.colour
        image = np.zeros((c.ny, c.nx))
        for channel, sites in colour["sites"].items():
            fluxes = colour["stars"][channel] * exposure * transparency
            light = render_stars((c.ny, c.nx), xs, ys, fluxes, fwhm)
            light += colour["sky_rate"][channel] * exposure
            image[sites] = light[sites]
        return image

    def _bad_columns(self, c):
        """Put the camera's bad columns into the dark current and the flats
        (after every random draw, so a camera without any is the same bytes
        as before they existed); return the trap's electrons per pixel, or
        None."""
        if not c.bad_columns:
            return None
        trap = np.zeros((c.ny, c.nx))
        for col in c.bad_columns:
            rows = slice(col.y0, col.y1)
            self.dark_current[rows, col.x] += np.float32(col.dark)
            for name in self.flats:
                self.flats[name][rows, col.x] *= np.float32(col.response)
            trap[rows, col.x] += col.trap
        return trap

    def bad_column_mask(self):
        """Unbinned pixels of the camera's bad columns."""
        c = self.camera
        mask = np.zeros((c.ny, c.nx), bool)
        for col in c.bad_columns:
            mask[col.y0 : col.y1, col.x] = True
        return mask

    def sky_sigma(self, filt, exposure, binning=1):
        """Standard deviation (ADU) of one calibrated sky pixel at the frame
        centre: Poisson of sky and typical dark current, read noise, divided
        by the gain and by the flat there (the flat, normalised to median 1,
        scales the sky up and the noise of the whole down). The frame's own
        noise; the masters' is not counted."""
        c = self.camera
        flat = self.flats[filt].astype(np.float64)
        box = (slice(c.ny // 2 - 8, c.ny // 2 + 8), slice(c.nx // 2 - 8, c.nx // 2 + 8))
        response = float(np.median(flat[box]))
        dark = float(np.median(self.dark_current)) * exposure
        pixels = binning**2
        # the sky is not dimmed by cloud (transparency dims the stars)
        electrons = pixels * (self.sky_rate[filt] * exposure * response + dark)
        return float(np.sqrt(electrons + c.read_noise**2) / c.gain / response)

    @staticmethod
    def _donuts(rng, x, y, count):
        image = np.ones(x.shape)
        for _ in range(count):
            cx, cy = rng.uniform(40, x.shape[1] - 40), rng.uniform(40, x.shape[0] - 40)
            radius, width = rng.uniform(8, 18), rng.uniform(2.0, 3.5)
            depth = rng.uniform(0.03, 0.07)
            r = np.hypot(x - cx, y - cy)
            image *= 1.0 - depth * np.exp(-0.5 * ((r - radius) / width) ** 2)
        return image


def _turn(degrees):
    """cos and sin of an angle in degrees, exact at multiples of 90 deg so
    that a flip is exactly a half-turn and no turn is exactly the identity."""
    quarter = degrees / 90.0
    if quarter == round(quarter):
        return ((1, 0), (0, 1), (-1, 0), (0, -1))[int(round(quarter)) % 4]
    return math.cos(math.radians(degrees)), math.sin(math.radians(degrees))


def _frame_centre(camera):
    """The unbinned frame's centre, 0-based: the axis a rotation turns about."""
    return (camera.nx - 1) / 2, (camera.ny - 1) / 2


def frame_transform(camera, pointing, rotation=0.0, binning=1):
    """2x3 matrix taking a frame's 0-based pixel (x, y, 1) to the sky grid.

    Frame pixel p (binned) covers unbinned pixels whose centre is
    q = binning * p + (binning - 1) / 2; the sky turned by ``rotation`` about
    the unbinned centre c lands at q, so q = c + R(rotation) (s - pointing - c)
    and s = R(-rotation) (q - c) + c + pointing. ``camera`` is unbinned.
    """
    cos, sin = _turn(rotation)
    back = np.array([[cos, sin], [-sin, cos]], dtype=float)  # R(-rotation)
    centre = np.array(_frame_centre(camera))
    half = (binning - 1) / 2
    # summed in this order so that an unturned 1x1 frame's shift is its
    # pointing exactly
    shift = np.asarray(pointing, float) + (centre - back @ centre) + back @ [half, half]
    return np.hstack([binning * back, shift[:, None]])


def _square(transform):
    return np.vstack([np.asarray(transform, float), [0.0, 0.0, 1.0]])


def truth_transform(record):
    """A light's truth record -> its 2x3 frame-to-sky-grid matrix."""
    return np.asarray(record["transform"], float)


def relative_transform(reference, record):
    """The true 2x3 transform from a frame's pixel to the reference frame's
    pixel (T_ref^-1 @ T_frame), from their truth records: what registration
    should find."""
    return (np.linalg.inv(_square(truth_transform(reference))) @ _square(truth_transform(record)))[
        :2
    ]


def true_positions(truth, record):
    """0-based (x, y) in the frame of a light's truth record of every
    catalogue star (also those off the frame), in catalogue order. ``truth``
    is the truth.json dictionary, or anything with it as ``.data``."""
    stars = getattr(truth, "data", truth)["stars"]
    transform = truth_transform(record)
    sky = np.vstack([stars["x"], stars["y"]]) - transform[:, 2:]
    x, y = np.linalg.solve(transform[:, :2], sky)
    return x, y


def star_free(truth, record, shape, sigma, margin=2.0):
    """Pixels of a light's frame (or of anything on its grid, a stack with
    it as reference) farther from every catalogue star than where the star's
    Moffat wing (beta 3) falls below 0.2 ``sigma`` (ADU), plus ``margin``
    px: the sky to measure noise on. ``truth`` as for true_positions."""
    data = getattr(truth, "data", truth)
    x, y = true_positions(data, record)
    flux = np.asarray(data["stars"][record["filter"]]) * record["exposure"]
    flux = flux * record["transparency"] / data["camera"]["gain"]
    alpha = record["fwhm"] / (2 * np.sqrt(2 ** (1 / 3) - 1))
    peak = flux * 2 / (np.pi * alpha**2)  # of a Moffat beta 3
    radius = alpha * np.sqrt(np.clip(peak / (0.2 * sigma), 1, None) ** (1 / 3) - 1) + margin
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    free = np.ones(shape, bool)
    for xi, yi, ri in zip(x, y, radius, strict=True):
        if -ri < xi < shape[1] + ri and -ri < yi < shape[0] + ri:
            free &= (xx - xi) ** 2 + (yy - yi) ** 2 > ri**2
    return free


def _unbinned_positions(camera, x, y, pointing, rotation):
    """Where sky-grid stars land on the unbinned, turned frame."""
    xs, ys = x - pointing[0], y - pointing[1]
    if rotation % 360 == 0:  # as before rotations existed, bit for bit
        return xs, ys
    cos, sin = _turn(rotation)
    cx, cy = _frame_centre(camera)
    return cx + cos * (xs - cx) - sin * (ys - cy), cy + sin * (xs - cx) + cos * (ys - cy)


def bin_image(image, binning):
    """Sum binning x binning blocks, as a binned readout sums charge; a 1x1
    readout is the image itself."""
    if binning == 1:
        return image
    ny, nx = image.shape
    return image.reshape(ny // binning, binning, nx // binning, binning).sum(axis=(1, 3))


def moffat_stamp(dx, dy, fwhm, beta=3.0, radius=15, oversample=5):
    """A Moffat PSF sampled on a (2r+1)^2 stamp, pixel-integrated by
    oversampling and normalised to sum 1. (dx, dy): sub-pixel offset of the
    centre from the stamp's central pixel."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    n = 2 * radius + 1
    sub = (np.arange(n * oversample) + 0.5) / oversample - radius - 0.5
    yy = sub[:, None] - dy
    xx = sub[None, :] - dx
    psf = (1.0 + (xx**2 + yy**2) / alpha**2) ** (-beta)
    psf = psf.reshape(n, oversample, n, oversample).sum(axis=(1, 3))
    return psf / psf.sum()


def render_stars(shape, xs, ys, fluxes, fwhm):
    """Electrons from stars at (xs, ys) (0-based pixel centres) on an image."""
    image = np.zeros(shape)
    radius = 15
    ny, nx = shape
    for x, y, flux in zip(xs, ys, fluxes, strict=True):
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        if not (-radius <= ix < nx + radius and -radius <= iy < ny + radius):
            continue
        stamp = flux * moffat_stamp(x - ix, y - iy, fwhm, radius=radius)
        y0, x0 = iy - radius, ix - radius
        ys0, xs0 = max(0, -y0), max(0, -x0)
        ye, xe = min(stamp.shape[0], ny - y0), min(stamp.shape[1], nx - x0)
        if ye <= ys0 or xe <= xs0:
            continue
        image[y0 + ys0 : y0 + ye, x0 + xs0 : x0 + xe] += stamp[ys0:ye, xs0:xe]
    return image


def cosmic_rays(rng, shape, exposure, rate=0.35):
    """Electrons from cosmic-ray hits: single pixels and short tracks;
    ``rate`` hits per second on 512 x 512 pixels."""
    image = np.zeros(shape)
    count = rng.poisson(rate * exposure * shape[0] * shape[1] / 512**2)
    hits = []
    for _ in range(count):
        y, x = rng.integers(2, shape[0] - 2), rng.integers(2, shape[1] - 2)
        energy = rng.uniform(600, 6000)
        length = rng.integers(1, 4)
        dy, dx = rng.integers(-1, 2, 2)
        for step in range(length):
            image[y + step * dy, x + step * dx] += energy / length
        hits.append([int(x), int(y)])
    return image, hits


def expose(
    sky,
    rng,
    kind,
    exposure,
    filt=None,
    pointing=(0.0, 0.0),
    transparency=1.0,
    fwhm=3.4,
    flat_level=25000.0,
    rotation=0.0,
    binning=1,
    cosmic_ray_rate=0.35,
):
    """One raw frame as uint16, and what went into it.

    Light and charge are made on the unbinned pixels and summed into binned
    ones before the noise of counting and reading, as a binned CCD does; the
    truth's sky level and FWHM are in the frame's own pixels. ``fwhm`` is in
    unbinned pixels.
    """
    c = sky.camera
    read = c.binned(binning)
    electrons = np.zeros((c.ny, c.nx))
    truth = {}
    if kind == "flat":
        level = flat_level * rng.uniform(0.85, 1.1)
        # an observer exposes a flat to the same level per read pixel
        electrons += level * c.gain * sky.flats[filt] / binning**2
        if sky.colour is not None:  # the lamp's colour, through each pixel's dye
            electrons *= sky.colour["lamp_mosaic"]
        truth["level_adu"] = level
    elif kind == "light":
        xs, ys = _unbinned_positions(c, sky.stars["x"], sky.stars["y"], pointing, rotation)
        sky_e = sky.sky_rate[filt] * exposure
        if sky.colour is not None:
            electrons += sky.colour_light(xs, ys, exposure, transparency, fwhm) * sky.flats[filt]
            truth["sky_adu_channels"] = {
                ch: rate * exposure / c.gain for ch, rate in sky.colour["sky_rate"].items()
            }
        else:
            stars = render_stars(
                (c.ny, c.nx), xs, ys, sky.stars[filt] * exposure * transparency, fwhm
            )
            electrons += (stars + sky_e) * sky.flats[filt]
        truth.update(
            sky_adu=sky_e * binning**2 / c.gain,
            transparency=transparency,
            fwhm=fwhm / binning,
            pointing=list(pointing),
        )
    if kind != "bias":
        electrons += sky.dark_current * exposure
    if sky.trap is not None:  # lost in transfer, whatever was collected
        electrons = np.clip(electrons - sky.trap, 0, None)
    electrons = bin_image(electrons, binning)
    electrons = rng.poisson(np.clip(electrons, 0, None)).astype(float)
    if kind in ("light", "dark") and exposure > 0:
        # cosmic rays hit the silicon, whatever the readout
        hits_image, hits = cosmic_rays(rng, (c.ny, c.nx), exposure, cosmic_ray_rate)
        electrons += bin_image(hits_image, binning)
        truth["cosmic_rays"] = [[x // binning, y // binning] for x, y in hits]
    # the bias and its structure are the readout's: one value per read pixel
    adu = sky.bias[::binning, ::binning].astype(float)
    adu += rng.normal(0, c.read_noise / c.gain, read.raw_shape)
    adu[:, : read.nx] += electrons / c.gain
    return np.clip(np.round(adu), 0, c.saturation).astype(np.uint16), truth


def _header(spec, kind, exposure, filt, start, index, camera, pier_side=None):
    d = DIALECTS[spec.dialect]
    h = fits.Header()
    h[d["key"]] = d[kind]
    for key in d["exptime"]:
        h[key] = exposure
    h["DATE-OBS"] = start.isoformat(
        timespec="milliseconds" if spec.dialect == "nina" else "seconds"
    )
    if filt is not None:
        h["FILTER"] = spec.filter_spellings.get(filt, filt) if kind == "light" else filt
    h["OBJECT"] = {"light": "NGC 2362", "flat": "FLAT", "dark": "DARK", "bias": "BIAS"}[kind]
    h["XBINNING"] = spec.binning
    h["YBINNING"] = spec.binning
    for key, (value, comment) in NOISE_CARDS[spec.dialect].items():
        h[key] = (getattr(camera, value) if isinstance(value, str) else value, comment)
    h["INSTRUME"] = spec.instrument
    set_temp = spec.dark_set_temps.get(exposure, spec.set_temp) if kind == "dark" else None
    set_temp = spec.set_temp if set_temp is None else set_temp
    if set_temp is not None:
        h["SET-TEMP"] = (set_temp, "cooler set point (C)")
    for key, value in spec.cards.items():
        h[key] = value
    if camera.bayer:  # as N.I.N.A. writes a colour camera's pattern
        h["INSTRUME"] = "Simulated colour camera"
        h["BAYERPAT"] = (camera.bayer, "Bayer color pattern")
        h["XBAYROFF"] = (0, "X offset of Bayer array")
        h["YBAYROFF"] = (0, "Y offset of Bayer array")
    h["TELESCOP"] = "ccdreduce simulator"
    h["SITELAT"] = 41.988
    h["SITELONG"] = -70.97
    h["SITEELEV"] = 60.0
    if kind == "light":
        h["OBJCTRA"] = "07 18 48.0"
        h["OBJCTDEC"] = "-24 57 00"
        if pier_side is not None:
            h["PIERSIDE"] = (pier_side, "side of the pier the telescope is on")
    if spec.dialect == "maxim":  # MaxIm writes a Julian date on the UTC scale
        jd = 2440587.5 + start.replace(tzinfo=None).timestamp() / 86400.0
        h["JD"] = (jd, "Julian Date at start of exposure")
    h["SIMFRAME"] = (index, "simulator frame number")
    return h


def write_frame(path, data, header, compress=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:  # lossless Rice tile compression of integers (.fits.fz)
        hdus = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=header)])
    else:
        hdus = fits.HDUList([fits.PrimaryHDU(data, header=header)])
    hdus.writeto(path, overwrite=True)


def _pier_sides(spec):
    """PIERSIDE before and after the night's flip (None: not written)."""
    if spec.flip_at is None:
        return spec.pier_side, spec.pier_side
    first = spec.pier_side or "EAST"
    return first, {"EAST": "WEST", "WEST": "EAST"}[first]


def _first_flipped(spec, n_lights):
    """Index (0-based, time order) of the first light after the flip."""
    if spec.flip_at is None:
        return n_lights
    if not 0.0 <= spec.flip_at <= 1.0:
        raise ValueError(f"flip_at {spec.flip_at} is not a fraction of the night")
    return math.floor(spec.flip_at * n_lights + 0.5)


def simulate_night(sky, spec, raw_dir):
    """Write one night's raw frames; return their truth records."""
    c = sky.camera
    clock = datetime.fromisoformat(spec.start)
    records = []
    plan = [("bias", 0.0, None, spec.n_bias)]
    plan += [("dark", t, None, n) for t, n in spec.darks.items()]
    plan += [("flat", t, f, n) for f, (t, n) in spec.flats.items()]
    plan += [("light", t, f, n) for (f, t), n in spec.lights.items()]
    plan += [("light", t, f, 1, cloud) for f, t, cloud in spec.clouded]
    n_lights = sum(spec.lights.values()) + len(spec.clouded)
    first_flipped = _first_flipped(spec, n_lights)
    sides = _pier_sides(spec)
    index = 0
    light = 0
    for kind, exposure, filt, count, *cloud in plan:
        for _ in range(count):
            index += 1
            rng = _rng(sky.seed, spec.name, index)
            kwargs = {}
            geometry = {"binning": spec.binning}
            if kind == "light":
                dither = rng.uniform(-3.0, 3.0, 2)
                kwargs = {
                    "pointing": (spec.pointing[0] + dither[0], spec.pointing[1] + dither[1]),
                    "transparency": cloud[0] if cloud else float(rng.uniform(*spec.transparency)),
                    "fwhm": float(spec.seeing * rng.uniform(0.9, 1.1)),
                }
                flipped = light >= first_flipped
                light += 1
                rotation = (spec.rotation + (180.0 if flipped else 0.0)) % 360.0
                transform = frame_transform(c, kwargs["pointing"], rotation, spec.binning)
                geometry.update(
                    rotation=rotation,
                    pier_side=sides[flipped],
                    transform=transform.tolist(),
                )
            data, truth = expose(
                sky,
                rng,
                kind,
                exposure,
                filt,
                **kwargs,
                rotation=geometry.get("rotation", 0.0),
                binning=spec.binning,
                cosmic_ray_rate=spec.cosmic_ray_rate,
            )
            if kind == "light":
                truth.update(
                    sky_sigma_adu=sky.sky_sigma(filt, exposure, spec.binning),
                    gain=c.gain,
                    read_noise=c.read_noise,
                )
            header = _header(
                spec, kind, exposure, filt, clock, index, c, pier_side=geometry.get("pier_side")
            )
            folder = {
                "bias": "calib/bias",
                "dark": "calib/darks",
                "flat": f"calib/flats/{filt}",
                "light": f"NGC2362/{filt}",
            }[kind]
            label = f"{kind}_{filt}_{exposure:g}s" if filt else f"{kind}_{exposure:g}s"
            name = f"{spec.camera_label}_" * bool(spec.camera_label) + f"{label}_{index:03d}"
            compress = spec.dialect == "nina" and kind == "light"
            suffix = ".fits.fz" if compress else spec.suffix
            if spec.dialect == "lab" and kind == "dark":
                suffix = ".fits.gz"
            path = Path(raw_dir) / spec.name / spec.camera_label / folder / (name + suffix)
            write_frame(path, data, header, compress=compress)
            truth.update(
                file=path.relative_to(raw_dir).as_posix(),
                night=spec.name,
                kind=kind,
                exposure=exposure,
                filter=filt,
                date_obs=header["DATE-OBS"],
                stem=name,
                **geometry,
            )
            records.append(truth)
            clock += timedelta(seconds=exposure + 20.0)
    return records


def write_truth(truth_dir, truth):
    """truth_dir/truth.json: what a simulation put into its frames."""
    Path(truth_dir).mkdir(parents=True, exist_ok=True)
    (Path(truth_dir) / "truth.json").write_text(json.dumps(truth, indent=1))


def simulate(out_dir, nights=None, camera=None, seed=2025):
    """Write raw nights to out_dir/raw and the truth to out_dir/truth."""
    out_dir = Path(out_dir)
    camera = camera or Camera()
    nights = nights if nights is not None else demo_nights()
    if camera.bayer and any(spec.binning != 1 for spec in nights):
        raise ValueError("a colour camera is not simulated binned (binning mixes its colours)")
    sky = Sky(camera, seed)
    raw_dir = out_dir / "raw"
    frames = []
    for spec in nights:
        frames += simulate_night(sky, spec, raw_dir)
    truth_dir = out_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    c = camera
    fits.writeto(truth_dir / "bias.fits", sky.bias, overwrite=True)
    fits.writeto(truth_dir / "dark_current.fits", sky.dark_current, overwrite=True)
    fits.writeto(truth_dir / "hot_pixels.fits", sky.hot.astype(np.uint8), overwrite=True)
    for name, flat in sky.flats.items():
        fits.writeto(truth_dir / f"flat_{name}.fits", flat, overwrite=True)
    camera_truth = asdict(c)
    if c.bayer is None:  # a mono camera's truth as before colour existed
        del camera_truth["bayer"]
    truth = {
        "camera": camera_truth,
        "trim_section": c.trim_section,
        "overscan_section": c.overscan_section,
        "seed": seed,
        "nights": [
            {"name": s.name, "dialect": s.dialect, "pointing": list(s.pointing)} for s in nights
        ],
        "stars": {k: np.asarray(v).tolist() for k, v in sky.stars.items()},
        # 0-based (x, y) of the hot pixels, unbinned (also hot_pixels.fits)
        "hot_pixels": np.argwhere(sky.hot)[:, ::-1].tolist(),
        "sky_rate": sky.sky_rate,
        "frames": frames,
    }
    if sky.colour is not None:
        colour = sky.colour
        truth["colour"] = {
            "pattern": colour["pattern"],
            "filter": COLOUR_FILTER,
            # e-/s at the sensor per channel, before the channel's response
            "stars": {ch: np.asarray(v).tolist() for ch, v in colour["stars"].items()},
            "response": colour["response"],
            "lamp": colour["lamp"],
            "sky_rate": colour["sky_rate"],
        }
    write_truth(truth_dir, truth)
    return truth


#: A smart telescope's headers (a Seestar-like all-in-one): IMAGETYP 'Light',
#: EXPTIME, and GAIN as the camera's gain *setting*, which is no e-/ADU.
DIALECTS["smart"] = {
    "key": "IMAGETYP",
    "bias": "Bias",
    "dark": "Dark",
    "flat": "Flat",
    "light": "Light",
    "exptime": ("EXPTIME",),
}
NOISE_CARDS["smart"] = {"GAIN": (80, "camera gain setting")}


def smart_camera():
    """The camera of lights_only_night(): a small CMOS sensor without an
    overscan strip, 256 x 192 pixels, unity-like gain, low read noise and an
    offset of 400 ADU, hot pixels as on every camera, and an even response
    (no vignetting), so that its stack, made without a flat, can be held
    against the truth."""
    return Camera(
        ny=192,
        nx=256,
        overscan=0,
        gain=1.0,
        read_noise=2.5,
        bias_level=400.0,
        dark_current=0.1,
        flat_field=False,
    )


def lights_only_night(name="2025-03-20", start="2025-03-21T00:30:00"):
    """A night of lights only, as a smart telescope records it: eight 20 s R
    frames of the field (dithered, transparency 0.85-1.0), no bias, dark or
    flat frames at all. Simulate it on smart_camera()."""
    return NightSpec(
        name,
        "smart",
        start,
        (0.0, 0.0),
        n_bias=0,
        darks={},
        flats={},
        lights={("R", 20.0): 8},
        seeing=3.2,
        transparency=(0.85, 1.0),
    )


MATCHING_NIGHT = "2025-05-01"


def matching_cameras():
    """The two cameras of matching_nights(): a 128x128 cooled CCD and a 112x96
    CMOS with another bias level, gain and dark current (no overscan on
    either: reduce with trim_section null)."""
    return {
        "ccd": Camera(ny=128, nx=128, overscan=0),
        "cmos": Camera(
            ny=96, nx=112, overscan=0, gain=2.0, read_noise=3.0, bias_level=500.0, dark_current=0.02
        ),
    }


def matching_nights():
    """One night, two cameras, the matching cases of issue 15, as
    {camera name: NightSpec} (simulate_matching writes them):

    ccd   'Simulated CCD' at SET-TEMP -20: 3 biases, 300 s darks at -20 C and
          60 s darks at -10 C (a set point 10 C off: not for the -20 C
          lights), R flats, three R lights of 300.1 s (the 300 s dark is
          their exposure, within 1 %) and two of 60 s (no 60 s dark at -20 C)
    cmos  'Simulated CMOS' (GAIN 120, OFFSET 30, SET-TEMP -5): 3 biases,
          30 s darks, V flats (FILTER 'V') and three 30 s lights whose
          headers spell the filter 'Johnson V' (needs filters.aliases)

    The CCD has more frames, so it is the night's main camera.
    """
    start = f"{MATCHING_NIGHT}T02:00:00"
    return {
        "ccd": NightSpec(
            MATCHING_NIGHT,
            "maxim",
            start,
            (0.0, 0.0),
            n_bias=3,
            darks={300.0: 3, 60.0: 3},
            flats={"R": (2.0, 3)},
            lights={("R", 300.1): 3, ("R", 60.0): 2},
            camera_label="ccd",
            set_temp=-20.0,
            dark_set_temps={60.0: -10.0},
        ),
        "cmos": NightSpec(
            MATCHING_NIGHT,
            "maxim",
            f"{MATCHING_NIGHT}T05:00:00",
            (0.0, 0.0),
            n_bias=3,
            darks={30.0: 3},
            flats={"V": (1.0, 3)},
            lights={("V", 30.0): 3},
            instrument="Simulated CMOS",
            camera_label="cmos",
            set_temp=-5.0,
            filter_spellings={"V": "Johnson V"},
            cards={"GAIN": 120, "OFFSET": 30},
        ),
    }


def simulate_matching(out_dir, seed=2025):
    """Write matching_nights() to out_dir/raw and out_dir/truth/truth.json
    (each frame's record with its camera's name and INSTRUME, each camera's
    bias level and gain)."""
    out_dir = Path(out_dir)
    cameras = matching_cameras()
    frames = []
    for name, spec in matching_nights().items():
        sky = Sky(cameras[name], seed=seed + len(frames))
        for record in simulate_night(sky, spec, out_dir / "raw"):
            record.update(camera=name, instrument=spec.instrument)
            frames.append(record)
    truth = {
        "cameras": {name: asdict(c) for name, c in cameras.items()},
        "seed": seed,
        "frames": frames,
    }
    write_truth(out_dir / "truth", truth)
    return truth
