"""Scale factors: how bright each registered frame of a stack is against its
reference, from aperture photometry of the reference's bright, isolated,
unsaturated stars; and the stack's frame table (stacks/<group>/frames.ecsv),
one row a candidate frame with its shift, scale, seeing and verdict.
"""

import numpy as np

from . import catalog, times
from .columns import AIRMASS, BJD_TDB, EXPOSURE, FILE, MJD_AVG_TT, Column, describe, names
from .fitsfile import MASK_NO_DATA
from .layout import frame_id
from .register import transform_from
from .robust import MAD_TO_SIGMA_4DP, mad_std

#: The stack's frame table: every column's name, unit and description.
SCHEMA = (
    Column("night", None, "night folder of the frame"),
    FILE,
    Column("stem", None, "file name without extension: the frame is '<night>/<stem>'"),
    EXPOSURE,
    Column("date_beg_tt", None, "start of the exposure, ISO, TT"),
    Column("date_end_tt", None, "end of the exposure, ISO, TT"),
    MJD_AVG_TT,
    BJD_TDB,
    AIRMASS,
    Column("time_note", None, "what limits the times (UT1 predicted, camera clock)"),
    Column("dx", "pix", "applied shift along x of a translation: (x, y) lands at (x + dx, y + dy)"),
    Column("dy", "pix", "applied shift along y of a translation (NaN when turned or scaled)"),
    Column("dx_measured", "pix", "measured shift along x (turned or scaled: the frame centre's)"),
    Column("dy_measured", "pix", "measured shift along y, before rounding to whole pixels"),
    Column("n_match", None, "stars matched to the reference"),
    Column("match_fraction", None, "share of the reference's bright stars matched"),
    Column("rotation_deg", "deg", "measured rotation against the reference"),
    Column("scale_ratio", None, "measured scale: reference px per frame px (2: binned 2x2)"),
    Column("transform", None, "2x3 applied, px: frame (x, y, 1) lands at transform @ (x, y, 1)"),
    Column("pier_side", None, "PIERSIDE of the raw header (EAST, WEST), if any"),
    Column("scale", None, "factor that brings the sky-subtracted frame to the reference"),
    Column("scale_err", None, "standard error of scale"),
    Column("n_scale_stars", None, "photometry stars the scale rests on"),
    Column("transparency", None, "star flux per second against the reference"),
    Column("fwhm", "pix", "median FWHM of the frame's stars, in the stack's pixels"),
    Column("sky", "adu", "sky level subtracted at registration"),
    Column(
        "noise", "adu", "sky noise of the frame on the stack's grid (robust standard deviation)"
    ),
    Column("weight", "1 / adu2", "inverse variance of the scaled frame; 0 when not used"),
    Column(
        "weight_seeing",
        "1 / adu2",
        "weight x (reference FWHM / fwhm)^2: noise and seeing; 0 when not used",
    ),
    Column("roundness", None, "median axis ratio of the frame's stars (1 round)"),
    Column("n_stars", None, "stars detected in the calibrated frame"),
    Column("used", None, "True: the frame enters the stack"),
    Column("reason", None, "why the frame is left out (or a registration note)"),
)
COLUMNS = names(SCHEMA)
assert COLUMNS[4:10] == times.SPAN_COLUMNS

#: The table's own explanation, written above its columns.
COMMENTS = (
    "One row per candidate frame. A star at (x, y) in the calibrated frame lands at",
    "(x + dx, y + dy) in the stack; match_fraction is the share of the reference's",
    "bright stars matched, rotation (deg) the measured turn, not applied: a frame",
    "rotated beyond stacking.registration.max_corner_shift is left out.",
    "scale multiplies the sky-subtracted frame to match",
    "the reference; transparency is star flux per second against the reference.",
    "weight is the inverse variance of the scaled frame; weight_seeing that times",
    "(reference FWHM / fwhm)^2, so a frame as sharp as the reference keeps its weight.",
    "Frames left out by stacking.select say which threshold in reason.",
    "date_beg_tt, date_end_tt (ISO) and mjd_avg_tt (mid-exposure) are on TT; bjd_tdb the",
    "barycentric Julian date of mid-exposure on TDB; time_note what limits them.",
)

#: What the registered frame's header says of it, by column: (key, type, default).
REGISTRATION_CARDS = {
    "dx": ("DX", float, np.nan),
    "dy": ("DY", float, np.nan),
    "dx_measured": ("DXMEAS", float, np.nan),
    "dy_measured": ("DYMEAS", float, np.nan),
    "n_match": ("NMATCH", int, 0),
    "match_fraction": ("REGFRAC", float, np.nan),
    "rotation_deg": ("REGROT", float, np.nan),
    "scale_ratio": ("REGSCAL", float, np.nan),
    "pier_side": ("PIERSIDE", str, ""),
    "sky": ("SKYSUB", float, np.nan),  # unknown on an all-NaN frame
    "reason": ("REGNOTE", str, ""),
}


def select_photometry_stars(stars, shape, fwhm, saturation, max_stars, isolation_fwhm=4.0):
    """Reference stars fit to measure scale factors: bright but below
    ``saturation``, not flagged saturated, isolated, away from the edges.
    Returns indices into the reference star list, brightest first."""
    x, y, peak = stars["x"], stars["y"], stars["peak"]
    ny, nx = shape
    margin = 4 * fwhm
    chosen = []
    for i in np.argsort(-stars["flux"]):
        if stars["saturated"][i] or peak[i] >= saturation:
            continue
        if not (margin < x[i] < nx - margin and margin < y[i] < ny - margin):
            continue
        distance = np.hypot(x - x[i], y - y[i])
        distance[i] = np.inf
        if np.any(distance < isolation_fwhm * fwhm):
            continue
        chosen.append(i)
        if len(chosen) == max_stars:
            break
    return np.array(chosen, dtype=int)


def aperture_photometry(image, xs, ys, radius, gain=None, annulus=(3.0, 5.0)):
    """(fluxes, errors): aperture sums minus the local sky (median in an
    annulus), exact pixel overlap (photutils), NaN where the aperture
    touches missing data; and each flux's 1-sigma error from the noise
    model (``flux_error``), with the sky noise measured in the annulus."""
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture

    positions = np.column_stack([xs, ys])
    aperture = CircularAperture(positions, r=radius)
    ring = CircularAnnulus(positions, r_in=annulus[0] * radius / 2, r_out=annulus[1] * radius / 2)
    ring_stats = ApertureStats(image, ring, sigma_clip=None)
    sky = ring_stats.median
    stats = ApertureStats(image, aperture, sigma_clip=None)
    area = stats.sum_aper_area.value
    fluxes = stats.sum - np.nan_to_num(sky) * area
    complete = np.isclose(area, aperture.area, rtol=1e-3)
    touched = np.array(
        [
            not np.isfinite(m.cutout(image, fill_value=np.nan)[m.data > 0]).all()
            for m in aperture.to_mask(method="center")
        ]
    )
    good = complete & ~touched
    sky_noise = np.asarray(ring_stats.mad_std, dtype=float)
    errors = flux_error(fluxes, area, sky_noise, ring_stats.sum_aper_area.value, gain)
    return np.where(good, fluxes, np.nan), np.where(good, errors, np.nan)


def with_defects_filled(data, mask):
    """A registered frame's pixels with its masked pixels (NaN there: hot,
    bad, saturated, cosmic ray) filled from their neighbours' median, for
    photometry: a hot pixel in 0.3 % of the frame would otherwise spoil
    nearly half of all apertures of 8 px radius. Pixels with no data stay
    NaN, so an aperture over the frame's edge is still refused."""
    if mask is None:
        return data
    defects = (np.asarray(mask) & ~np.uint8(MASK_NO_DATA)) > 0
    return catalog.fill_defects(np.asarray(data), defects, size=3) if defects.any() else data


def flux_error(flux, area, sky_noise, sky_area, gain=None):
    """1-sigma error of an aperture flux (ADU): the star's Poisson noise
    (flux / gain, gain in e-/ADU; left out when the gain is unknown), the
    sky noise of every aperture pixel, and the error of the sky level taken
    from the annulus' median (pi/2 times the variance of a mean)."""
    variance = area * sky_noise**2 + area**2 * (np.pi / 2) * sky_noise**2 / sky_area
    if gain:
        variance = variance + np.maximum(flux, 0.0) / gain
    return np.sqrt(variance)


def aperture_fluxes(image, xs, ys, radius, annulus=(3.0, 5.0)):
    """Aperture sums minus the local sky (median in an annulus), exact
    pixel overlap (photutils). NaN where the aperture touches missing data."""
    return aperture_photometry(image, xs, ys, radius, annulus=annulus)[0]


def frame_gain(header):
    """The registered frame's gain (e-/ADU, its GAIN card) or None: a card
    outside noise.PLAUSIBLE_GAIN (the one range the noise model uses) is a
    camera setting (N.I.N.A.'s 120), and the scale errors are then Poisson-free."""
    from .noise import PLAUSIBLE_GAIN

    try:
        gain = float(header.get("GAIN"))
    except (TypeError, ValueError):
        return None
    return gain if PLAUSIBLE_GAIN[0] <= gain <= PLAUSIBLE_GAIN[1] else None


def _median_ratio(ratio, sigma):
    """Today's estimator: clipped median of the ratios and its error."""
    keep = np.ones(ratio.size, bool)
    for _ in range(5):
        centre = np.median(ratio[keep])
        spread = mad_std(ratio[keep], centre, factor=MAD_TO_SIGMA_4DP)
        new = np.abs(ratio - centre) <= sigma * max(spread, 1e-6 * centre)
        if np.array_equal(new, keep):
            break
        keep = new
    kept = ratio[keep]
    error = 1.2533 * kept.std(ddof=1) / np.sqrt(kept.size) if kept.size > 1 else float("nan")
    return float(np.median(kept)), float(error), int(kept.size)


def _weighted_ratio(ratio, ratio_err, sigma):
    """Mean of the ratios weighted by 1 / error^2, clipped at ``sigma``
    about a robust start (the median) and then about the weighted mean, each
    ratio judged by its own error widened by the scatter the errors do not
    explain (a blend, a variable star). The error: 1 / sqrt(sum of
    weights), times sqrt(reduced chi^2) when the ratios scatter more than
    their errors say."""
    centre = np.median(ratio)
    spread = mad_std(ratio, centre, factor=MAD_TO_SIGMA_4DP)
    keep = np.abs(ratio - centre) <= sigma * max(spread, 1e-6 * centre)
    for _ in range(10):
        weight = 1.0 / ratio_err[keep] ** 2
        mean = float(np.sum(weight * ratio[keep]) / weight.sum())
        chi2 = np.sum(weight * (ratio[keep] - mean) ** 2) / max(keep.sum() - 1, 1)
        widen = np.sqrt(max(chi2, 1.0))
        new = np.abs(ratio - mean) <= sigma * widen * ratio_err
        new |= keep & (np.abs(ratio - mean) <= sigma * max(spread, 1e-6 * centre))
        if np.array_equal(new, keep) or new.sum() < 2:
            break
        keep = new
    weight = 1.0 / ratio_err[keep] ** 2
    mean = float(np.sum(weight * ratio[keep]) / weight.sum())
    count = int(keep.sum())
    chi2 = np.sum(weight * (ratio[keep] - mean) ** 2) / max(count - 1, 1)
    error = float(np.sqrt(max(chi2, 1.0) / weight.sum())) if count > 1 else float("nan")
    return mean, error, count


#: Relative error every star's flux ratio has beyond its photon and sky
#: noise (flat field under the star, neighbours' wings, the annulus' median
#: sky): on the demo's stacks the ratios scatter 3-5x their noise without
#: it (reduced chi^2 10-30, bright stars most). 0.4 % makes the claimed
#: scale errors match the errors against truth (rms ratio 1.0-1.1) and keeps
#: the faintest stars from being drowned: 0.002-0.004 give the same accuracy.
STAR_ERROR_FLOOR = 0.004


def scale_factor(ref_flux, flux, sigma=3.0, ref_err=None, err=None):
    """The factor ref/frame from the stars' flux ratios, its error and the
    stars it rests on. With the fluxes' errors (``ref_err``, ``err``) a
    clipped mean weighted by each ratio's signal to noise (bright stars
    count most, as their ratios are the most exact; every ratio's error
    floored at STAR_ERROR_FLOOR); without, today's clipped median."""
    ratio = ref_flux / flux
    usable = np.isfinite(ratio) & (ratio > 0)
    if ref_err is not None and err is not None:
        relative = np.hypot(ref_err / ref_flux, err / flux)
        ratio_err = np.abs(ratio) * np.hypot(relative, STAR_ERROR_FLOOR)
        usable &= np.isfinite(ratio_err) & (ratio_err > 0)
    if not usable.any():
        return float("nan"), float("nan"), 0
    if ref_err is None or err is None:
        return _median_ratio(ratio[usable], sigma)
    return _weighted_ratio(ratio[usable], ratio_err[usable], sigma)


def judge_frame(ref_flux, flux, exposure, ref_exposure, noise, cfg, ref_err=None, err=None):
    """Scale factor, transparency, weight and the verdict on one frame.

    ``ref_flux`` and ``flux`` are the photometry stars' fluxes in the
    reference and the frame (already restricted to the stars to use),
    ``ref_err`` and ``err`` their errors (scale_factor weights by them).
    Returns a dict of scale, scale_err, n_scale_stars, transparency, weight,
    used and reason (empty when used).
    """
    scale, error, count = scale_factor(ref_flux, flux, ref_err=ref_err, err=err)
    transparency = ref_exposure / (exposure * scale) if scale > 0 else float("nan")
    verdict = {
        "scale": scale,
        "scale_err": error,
        "n_scale_stars": count,
        "transparency": transparency,
        "weight": 0.0,
        "used": False,
        "reason": "",
    }
    if count < cfg["min_stars"]:
        verdict["reason"] = f"only {count} stars to scale on ({cfg['min_stars']} needed)"
    elif not transparency >= cfg["min_transparency"]:
        verdict["reason"] = (
            f"heavy cloud: transparency {transparency:.2f} of the reference "
            f"(min {cfg['min_transparency']:g})"
        )
    elif transparency > cfg["max_transparency"]:
        verdict["reason"] = (
            f"more light per second than the reference: transparency {transparency:.2f} "
            f"(max {cfg['max_transparency']:g}); a wrong match, or a wrong "
            "exposure time?"
        )
    else:  # inverse variance of the frame once scaled
        verdict.update(used=True, weight=1.0 / (noise * scale) ** 2)
    return verdict


# --- the stack's frame table ---------------------------------------------------


def photometry_stars(reference, cfg):
    """(x, y, aperture radius on the reference) of the reference's stars that
    scale factors are measured on (select_photometry_stars)."""
    stars, fwhm = reference["stars"], float(reference["fwhm"])
    chosen = select_photometry_stars(
        stars, tuple(reference["shape"]), fwhm, cfg["max_peak_adu"], cfg["max_stars"]
    )
    return stars["x"][chosen], stars["y"][chosen], cfg["aperture_fwhm"] * fwhm


def frame_row(info, meta, header):
    """A frame's row before scaling: what its catalogue (``meta``) and its
    registered header say of it."""
    row = {
        "night": info["night"],
        "stem": info["stem"],
        "file": info["file"],
        "exposure": float(meta["exposure"]),
        "transform": transform_from(header),
    }
    for column, (key, kind, default) in REGISTRATION_CARDS.items():
        row[column] = kind(header.get(key, default))
    # on the stack's grid: a frame of coarser pixels (scale 2) shows its stars
    # twice as wide there, and its values, flux kept, divided by scale squared
    # (the applied scale: exactly 1 for a translation)
    applied = np.sqrt(abs(np.linalg.det(row["transform"][:, :2])))
    scale = float(applied) if np.isfinite(applied) else 1.0
    row["fwhm"] = float(meta["fwhm"]) * scale
    row["noise"] = float(meta["noise"]) / scale**2
    row["roundness"] = float(meta.get("elongation", np.nan))  # older catalogues: unknown
    row["n_stars"] = int(meta.get("n_stars", 0))
    return row | times.span_of(header)


def measure_frames(frames, reference, cfg, log, select=None):
    """Rows of the stack's frame table: each frame of ``frames`` (dicts with
    id, night, stem, file, catalog and registered paths) measured against
    the reference, judged (judge_frame) and selected by the thresholds of
    ``select`` (config stacking.select, select_frames). Returns (rows,
    (x, y, radius))."""
    from .fitsfile import mapped_product

    xs, ys, radius = photometry_stars(reference, cfg)
    log.info(
        "%d photometry stars; apertures %.1f x each frame's FWHM (%.2f px on the reference)",
        len(xs),
        cfg["aperture_fwhm"],
        radius,
    )
    rows, fluxes = [], {}
    for info in frames:
        _, meta = catalog.read(info["catalog"])
        meta = catalog.channel_meta(meta, info.get("channel"))  # a colour channel's noise
        with mapped_product(info["registered"]) as (data, header, mask):
            row = frame_row(info, meta, header)
            if header["REGSTAT"] == "ok" and len(xs):
                # each frame's aperture in units of its own FWHM: the same share of
                # every star's light whatever the seeing, so ratios are unbiased
                fluxes[info["id"]] = aperture_photometry(
                    with_defects_filled(data, mask),
                    xs,
                    ys,
                    cfg["aperture_fwhm"] * row["fwhm"],
                    gain=frame_gain(header),
                )
        rows.append(row)
    ids = [info["id"] for info in frames]
    _judge_all(rows, ids, fluxes, reference, cfg, log, n_stars=len(xs))
    for note in select_frames(rows, ids, reference["reference"], select or {}):
        log.info(note)
    return rows, (xs, ys, radius)


def seeing_weight(weight, fwhm, reference_fwhm):
    """The noise weight times (reference FWHM / frame FWHM)^2: a star's peak
    signal to noise goes as 1 / FWHM^2 at a given flux and noise, so a frame
    twice as blurred counts a quarter; normalised so that a frame as sharp as
    the reference keeps its noise weight. 0 when the FWHM is unknown."""
    if not (np.isfinite(fwhm) and fwhm > 0 and np.isfinite(reference_fwhm)):
        return 0.0
    return float(weight) * (reference_fwhm / fwhm) ** 2


def _judge_all(rows, ids, fluxes, reference, cfg, log, n_stars):
    """Scale, transparency, weight and verdict of every row, on the stars
    every measured frame has (or, with fewer than min_stars of those, on
    each frame's own)."""
    ref_flux, ref_err = fluxes.get(reference["reference"], (None, None))
    in_all = (
        np.all([np.isfinite(f) for f, _ in fluxes.values()], axis=0)
        if fluxes
        else np.zeros(0, bool)
    )
    use_stars = in_all if in_all.sum() >= cfg["min_stars"] else None
    if use_stars is None and n_stars:
        log.warning(
            "only %d photometry stars are inside every frame; each frame uses the stars it has",
            int(in_all.sum()),
        )
    for row, frame in zip(rows, ids, strict=True):
        flux, err = fluxes.get(frame, (None, None))
        if flux is None:  # not registered, or no stars to measure
            row.update(
                scale=np.nan,
                scale_err=np.nan,
                n_scale_stars=0,
                transparency=np.nan,
                weight=0.0,
                weight_seeing=0.0,
                used=False,
            )
            row["reason"] = row["reason"] or "no photometry stars in the reference"
            continue
        mask = use_stars if use_stars is not None else np.isfinite(flux) & np.isfinite(ref_flux)
        row.update(
            judge_frame(
                ref_flux[mask],
                flux[mask],
                row["exposure"],
                float(reference["exposure"]),
                row["noise"],
                cfg,
                ref_err=ref_err[mask],
                err=err[mask],
            )
        )
        row["weight_seeing"] = seeing_weight(row["weight"], row["fwhm"], float(reference["fwhm"]))


# --- frame selection (stacking.select) --------------------------------------

#: Each selection threshold: the frame table's column it judges, the bad side
#: (+1: too high is bad, -1: too low), its words and unit for the reason.
SELECTION = {
    "fwhm": ("fwhm", +1, "FWHM", " px"),
    "roundness": ("roundness", +1, "roundness (axis ratio)", ""),
    "stars": ("n_stars", -1, "star count", ""),
    "sky": ("sky", +1, "sky", " ADU"),
}


def parse_threshold(value):
    """A selection threshold: None (off), ('absolute', number) or
    ('sigma', k) for a string "k sigma". ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r}: null, a number or 'k sigma'")
    if isinstance(value, int | float):
        return ("absolute", float(value))
    words = str(value).split()
    if len(words) == 2 and words[1] == "sigma":
        try:
            return ("sigma", float(words[0]))
        except ValueError:
            pass
    raise ValueError(f"{value!r}: null, a number or 'k sigma' (e.g. '3 sigma')")


def threshold_limit(values, threshold, side):
    """(limit, how): the value beyond which a frame is left out, and the
    words saying where it came from. 'k sigma': k robust (MAD) sigma from
    the median of ``values`` (the stack's registered frames), on the bad
    ``side``."""
    kind, number = threshold
    if kind == "absolute":
        return number, f"{'max' if side > 0 else 'min'} {number:g}"
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size < 3:
        return None, f"{number:g} sigma: fewer than 3 frames measured"
    centre = float(np.median(finite))
    spread = mad_std(finite, centre, factor=MAD_TO_SIGMA_4DP)
    limit = centre + side * number * spread
    return limit, f"{number:g} sigma from the median {centre:.4g} (sigma {spread:.3g})"


def select_frames(rows, ids, reference_id, select):
    """Leave out (in place: used False, weights 0, reason) every used frame
    beyond a threshold of ``select`` ({fwhm, roundness, stars, sky}: each
    None, a number, or "k sigma"; SELECTION says the bad side), as Siril's
    -filter-fwhm etc. The reference is never left out by it (the stack's
    grid and flux scale are its): a note says when it would have been.
    Robust sigmas come from the frames used so far (registered, not
    clouded). Returns notes."""
    notes = []
    measured = [row for row in rows if row["used"]]
    for key, setting in (select or {}).items():
        threshold = parse_threshold(setting)
        if threshold is None:
            continue
        column, side, words, unit = SELECTION[key]
        limit, how = threshold_limit([row[column] for row in measured], threshold, side)
        if limit is None:
            notes.append(f"select {key}: {how}; not applied")
            continue
        for row, frame in zip(rows, ids, strict=True):
            value = float(row[column])
            if not np.isfinite(value) or (value - limit) * side <= 0:
                continue
            reason = (
                f"selection: {words} {value:.4g}{unit} beyond {limit:.4g}{unit} "
                f"(stacking.select.{key}: {how})"
            )
            if frame == reference_id:
                notes.append(f"{frame}: the reference kept despite {reason}")
            elif row["used"]:
                row.update(used=False, weight=0.0, weight_seeing=0.0, reason=reason)
                notes.append(f"{frame}: left out, {reason}")
    return notes


def log_line(row):
    """One frame's verdict for the job's log."""
    return (
        f"{frame_id(row['night'], row['stem'])}: {'used' if row['used'] else 'EXCLUDED'} "
        f"dx {row['dx_measured']:+.2f} dy {row['dy_measured']:+.2f} "
        f"scale {row['scale']:.4f} +- {row['scale_err']:.4f} "
        f"transparency {row['transparency']:.3f} FWHM {row['fwhm']:.2f} {row['reason']}"
    )


def frames_table(rows, reference, photometry):
    """The stack's frame table (astropy Table): COLUMNS with units and
    descriptions, the reference and the photometry stars in its meta."""
    from astropy.table import Table

    xs, ys, radius = photometry
    table = Table({name: [row[name] for row in rows] for name in COLUMNS})
    describe(table, SCHEMA)
    table.meta.update(
        {
            "reference": reference["reference"],
            "reference_how": reference["how"],
            "aperture_radius": radius,
            "photometry_stars_x": [float(v) for v in xs],
            "photometry_stars_y": [float(v) for v in ys],
            "comments": list(COMMENTS),
        }
    )
    return table


# --- the lab's comparison of a stack's methods ----------------------------------

#: Stars of the comparison table: the lab's eight.
COMPARISON_STARS = 8
#: The comparison table's columns; star<i>_sum and star<i>_ratio by their suffix.
COMPARISON_SCHEMA = {
    column.name: column
    for column in (
        Column("image", None, "the reference frame or a stack's method"),
        Column("median", "adu", "median pixel value"),
        Column("sky_std", "adu", "standard deviation of the sky away from stars"),
        Column("sky_noise_mad", "adu", "robust (MAD) noise of the sky"),
        Column("sum", "adu", "aperture sum of the photometry star, sky subtracted"),
        Column("ratio", None, "the star's aperture sum over the reference frame's"),
        Column("median_ratio", None, "median of the stars' ratios"),
    )
}


def comparison_radius(frames):
    """The aperture of the comparison: the stack is as broad as its broadest
    frames, while the reference is chosen the sharpest, so an aperture sized
    to the reference alone would miss a few % of the stack's light; it is
    sized to the broadest frame used."""
    from .stacking import reference_row

    used_fwhm = np.asarray(frames["fwhm"][frames["used"]], dtype=float)
    ref_fwhm = float(reference_row(frames)["fwhm"])
    return float(frames.meta["aperture_radius"]) * max(1.0, float(np.max(used_fwhm)) / ref_fwhm)


def source_free_sky(image, xs, ys, radius):
    """(standard deviation, stars.Background) of the sky away from stars:
    pixels farther than 4 aperture radii from every photometry star and
    within 5 robust sigma of the sky level."""
    from .stars import background

    level = background(image)
    keep = np.isfinite(image) & (np.abs(image - level.level) < 5 * level.noise)
    ny, nx = image.shape
    reach = 4 * radius
    for x, y in zip(xs, ys, strict=True):
        # only the box around the star: a whole-image distance map per star
        # took 30 s for a 4k stack's statistics
        y0, y1 = max(int(np.floor(y - reach)), 0), min(int(np.ceil(y + reach)) + 1, ny)
        x0, x1 = max(int(np.floor(x - reach)), 0), min(int(np.ceil(x + reach)) + 1, nx)
        if y0 < y1 and x0 < x1:
            yy, xx = np.ogrid[y0:y1, x0:x1]
            keep[y0:y1, x0:x1] &= (xx - x) ** 2 + (yy - y) ** 2 >= reach**2
    return float(np.std(image[keep])), level


def method_comparison(frames, images):
    """The lab's comparison table of a stack's methods (astropy Table).

    ``frames`` is the stack's frames table, ``images`` (name, pixels) pairs,
    the reference frame first. Each row: the median pixel value, the sky's
    standard deviation away from stars and its robust noise, the aperture
    sums of up to COMPARISON_STARS photometry stars and each sum's ratio to
    the reference's.
    """
    from astropy.table import Table

    all_x, all_y = frames.meta["photometry_stars_x"], frames.meta["photometry_stars_y"]
    xs = np.asarray(all_x)[:COMPARISON_STARS]
    ys = np.asarray(all_y)[:COMPARISON_STARS]
    radius = comparison_radius(frames)
    rows, reference_sums = [], None
    for name, image in images:
        image = np.asarray(image, dtype=np.float64)
        sums = aperture_fluxes(image, xs, ys, radius)
        if reference_sums is None:
            reference_sums = sums
        std, level = source_free_sky(image, all_x, all_y, radius)
        row = {
            "image": name,
            "median": float(np.nanmedian(image)),
            "sky_std": std,
            "sky_noise_mad": level.noise,
        }
        for i, (value, ref) in enumerate(zip(sums, reference_sums, strict=True), start=1):
            row[f"star{i}_sum"] = float(value)
            row[f"star{i}_ratio"] = float(value / ref)
        row["median_ratio"] = float(np.nanmedian(sums / reference_sums))
        rows.append(row)
    table = Table(rows=rows)
    for name in table.colnames:  # star columns: one pair a star, described alike
        column = COMPARISON_SCHEMA.get(name) or COMPARISON_SCHEMA[name.split("_", 1)[1]]
        table[name].unit, table[name].description = column.unit, column.description
    table.meta["comments"] = [
        "The lab's comparison: median pixel value, sky standard deviation away from stars,",
        "aperture sums of up to 8 photometry stars and their ratio to the reference frame.",
    ]
    table.meta["aperture_radius"] = radius
    return table
