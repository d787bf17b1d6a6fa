"""A deterministic simulator of raw CCD nights, with the truth written beside.

What it models, in the order light and charge meet the camera:
stars (Moffat PSF, known positions and fluxes) and sky, dimmed by a
per-frame transparency and moved by the night's pointing plus a sub-pixel
dither; the flat field (vignetting, dust donuts, pixel response); dark
current with hot pixels; Poisson noise; cosmic rays; then gain, a bias level
with row and column structure, read noise, an overscan strip and uint16
saturation. Each night writes its headers in a different camera dialect.

Same seed, same bytes: every frame draws from its own generator seeded by
(seed, night, frame), so nights can be made one at a time.
"""

import json
import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits

FILTERS = ("V", "R")


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

    @property
    def raw_shape(self):
        return self.ny, self.nx + self.overscan

    @property
    def trim_section(self):
        return f"[1:{self.nx},1:{self.ny}]"

    @property
    def overscan_section(self):
        return f"[{self.nx + 3}:{self.nx + self.overscan},1:{self.ny}]"


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


def cosmic_rays(rng, shape, exposure):
    """Electrons from cosmic-ray hits: single pixels and short tracks."""
    image = np.zeros(shape)
    count = rng.poisson(0.35 * exposure * shape[0] * shape[1] / 512**2)
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
):
    """One raw frame as uint16, and what went into it."""
    c = sky.camera
    electrons = np.zeros((c.ny, c.nx))
    truth = {}
    if kind == "flat":
        level = flat_level * rng.uniform(0.85, 1.1)
        electrons += level * c.gain * sky.flats[filt]
        truth["level_adu"] = level
    elif kind == "light":
        xs = sky.stars["x"] - pointing[0]
        ys = sky.stars["y"] - pointing[1]
        stars = render_stars((c.ny, c.nx), xs, ys, sky.stars[filt] * exposure * transparency, fwhm)
        sky_e = sky.sky_rate[filt] * exposure
        electrons += (stars + sky_e) * sky.flats[filt]
        truth.update(
            sky_adu=sky_e / c.gain, transparency=transparency, fwhm=fwhm, pointing=list(pointing)
        )
    if kind != "bias":
        electrons += sky.dark_current * exposure
    electrons = rng.poisson(np.clip(electrons, 0, None)).astype(float)
    if kind in ("light", "dark") and exposure > 0:
        hits_image, hits = cosmic_rays(rng, (c.ny, c.nx), exposure)
        electrons += hits_image
        truth["cosmic_rays"] = hits
    adu = sky.bias.astype(float) + rng.normal(0, c.read_noise / c.gain, c.raw_shape)
    adu[:, : c.nx] += electrons / c.gain
    return np.clip(np.round(adu), 0, c.saturation).astype(np.uint16), truth


def _header(spec, kind, exposure, filt, start, index, camera):
    d = DIALECTS[spec.dialect]
    h = fits.Header()
    h[d["key"]] = d[kind]
    for key in d["exptime"]:
        h[key] = exposure
    h["DATE-OBS"] = start.isoformat(
        timespec="milliseconds" if spec.dialect == "nina" else "seconds"
    )
    if filt is not None:
        h["FILTER"] = filt
    h["OBJECT"] = {"light": "NGC 2362", "flat": "FLAT", "dark": "DARK", "bias": "BIAS"}[kind]
    h["XBINNING"] = 1
    h["YBINNING"] = 1
    h["EGAIN"] = (camera.gain, "e-/ADU")
    h["INSTRUME"] = "Simulated CCD"
    h["TELESCOP"] = "ccdreduce simulator"
    h["SITELAT"] = 41.988
    h["SITELONG"] = -70.97
    h["SITEELEV"] = 60.0
    if kind == "light":
        h["OBJCTRA"] = "07 18 48.0"
        h["OBJCTDEC"] = "-24 57 00"
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
    index = 0
    for kind, exposure, filt, count, *cloud in plan:
        for _ in range(count):
            index += 1
            rng = _rng(sky.seed, spec.name, index)
            kwargs = {}
            if kind == "light":
                dither = rng.uniform(-3.0, 3.0, 2)
                kwargs = {
                    "pointing": (spec.pointing[0] + dither[0], spec.pointing[1] + dither[1]),
                    "transparency": cloud[0] if cloud else float(rng.uniform(0.75, 1.0)),
                    "fwhm": float(spec.seeing * rng.uniform(0.9, 1.1)),
                }
            data, truth = expose(sky, rng, kind, exposure, filt, **kwargs)
            header = _header(spec, kind, exposure, filt, clock, index, c)
            folder = {
                "bias": "calib/bias",
                "dark": "calib/darks",
                "flat": f"calib/flats/{filt}",
                "light": f"NGC2362/{filt}",
            }[kind]
            label = f"{kind}_{filt}_{exposure:g}s" if filt else f"{kind}_{exposure:g}s"
            name = f"{label}_{index:03d}"
            compress = spec.dialect == "nina" and kind == "light"
            suffix = ".fits.fz" if compress else spec.suffix
            if spec.dialect == "lab" and kind == "dark":
                suffix = ".fits.gz"
            path = Path(raw_dir) / spec.name / folder / (name + suffix)
            write_frame(path, data, header, compress=compress)
            truth.update(
                file=path.relative_to(raw_dir).as_posix(),
                night=spec.name,
                kind=kind,
                exposure=exposure,
                filter=filt,
                date_obs=header["DATE-OBS"],
                stem=name,
            )
            records.append(truth)
            clock += timedelta(seconds=exposure + 20.0)
    return records


def simulate(out_dir, nights=None, camera=None, seed=2025):
    """Write raw nights to out_dir/raw and the truth to out_dir/truth."""
    out_dir = Path(out_dir)
    camera = camera or Camera()
    nights = nights if nights is not None else demo_nights()
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
    truth = {
        "camera": asdict(c),
        "trim_section": c.trim_section,
        "overscan_section": c.overscan_section,
        "seed": seed,
        "nights": [
            {"name": s.name, "dialect": s.dialect, "pointing": list(s.pointing)} for s in nights
        ],
        "stars": {k: np.asarray(v).tolist() for k, v in sky.stars.items()},
        "sky_rate": sky.sky_rate,
        "frames": frames,
    }
    (truth_dir / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth
