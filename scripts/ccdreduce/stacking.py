"""Stacks: which calibrated frames go together, which is the reference,
and how bright each frame is against it.

A stack is a group of science frames sharing the configured keys (object
and filter by default), across all nights. Its folder under results/stacks
is made of those values as safe path names.
"""

import json
from pathlib import Path

import numpy as np

from .headers import safe_name

GROUP_KEYS = {
    "object": lambda f: f.object or "unknown",
    "filter": lambda f: f.filter or "none",
    "night": lambda f: f.night,
    "exposure": lambda f: f"{f.exposure_key}s",
}


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


def group_name(frame, group_by):
    """'NGC_2362/R' for object 'NGC 2362' and filter 'R'."""
    return "/".join(safe_name(GROUP_KEYS[key](frame)) for key in group_by)


def stack_groups(plan, group_by):
    """{group name: [light frames]} for every calibrated science frame."""
    groups = {}
    for (_, _), (frame, _) in sorted(plan.lights.items()):
        groups.setdefault(group_name(frame, group_by), []).append(frame)
    return groups


def frame_id(frame):
    """How a frame is named in config and tables: '<night>/<stem>'."""
    return f"{frame.night}/{frame.stem}"


def registered_dir(root, night, group):
    """The folder one register job writes: a night's frames of one stack."""
    return f"{root}/{night}/{group}"


def registered_path(root, group, frame):
    """A registered frame, from its id '<night>/<stem>'."""
    night, stem = frame.split("/", 1)
    return f"{registered_dir(root, night, group)}/{stem}.fits"


# --- the reference frame ---------------------------------------------------


def reference_row(table):
    """The reference frame's row of a stack's frames table."""
    night, stem = table.meta["reference"].split("/", 1)
    match = (table["night"] == night) & (table["stem"] == stem)
    if not match.any():
        raise ValueError(f"the reference {table.meta['reference']} is not in the frames table")
    return table[match][0]


def quality_ranks(rows):
    """Order candidate frames best first: most stars, sharpest, most
    transparent (brightest stars per second), each a rank; the smallest sum
    of ranks wins, ties by name."""
    usable = [r for r in rows if r["n_stars"] > 0 and np.isfinite(r["fwhm"])]

    def ranks(key, reverse):
        ordered = sorted(usable, key=lambda r: r[key], reverse=reverse)
        return {r["id"]: i for i, r in enumerate(ordered)}

    by_stars = ranks("n_stars", True)
    by_fwhm = ranks("fwhm", False)
    by_flux = ranks("flux_rate", True)
    return sorted(
        usable, key=lambda r: (by_stars[r["id"]] + by_fwhm[r["id"]] + by_flux[r["id"]], r["id"])
    )


def choose_reference(rows, pinned=None, remembered=None):
    """(frame id, how it was chosen) from the candidates' quality rows.

    A pinned id (config) wins; then a remembered earlier choice that is
    still a candidate, so that adding nights never moves the reference;
    otherwise the best by quality.
    """
    ids = {r["id"] for r in rows}
    if pinned:
        if pinned not in ids:
            raise ValueError(
                f"stacking.reference pins {pinned!r}, which is not a frame of this stack. "
                f"Fix: use one of: {', '.join(sorted(ids))}"
            )
        return pinned, "pinned in config (stacking.reference)"
    if remembered in ids:
        return remembered, "kept from the first choice (see reference.lock)"
    ranked = quality_ranks(rows)
    if not ranked:
        raise ValueError(
            f"none of the {len(rows)} frames of this stack has stars to register on. Fix: "
            "check the frames (clouded out? wrong type?), list them under exclude, or "
            "run only the calibration (snakemake calibration)"
        )
    return ranked[0]["id"], "best quality: most stars, sharpest, most transparent"


def read_lock(path):
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text()).get("reference")
    except (OSError, ValueError):
        return None


# --- scale factors -----------------------------------------------------------


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


def aperture_fluxes(image, xs, ys, radius, annulus=(3.0, 5.0)):
    """Aperture sums minus the local sky (median in an annulus), exact
    pixel overlap (photutils). NaN where the aperture touches missing data."""
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture

    positions = np.column_stack([xs, ys])
    aperture = CircularAperture(positions, r=radius)
    ring = CircularAnnulus(positions, r_in=annulus[0] * radius / 2, r_out=annulus[1] * radius / 2)
    sky = ApertureStats(image, ring, sigma_clip=None).median
    stats = ApertureStats(image, aperture, sigma_clip=None)
    fluxes = stats.sum - np.nan_to_num(sky) * stats.sum_aper_area.value
    complete = np.isclose(stats.sum_aper_area.value, aperture.area, rtol=1e-3)
    touched = np.array(
        [
            not np.isfinite(m.cutout(image, fill_value=np.nan)[m.data > 0]).all()
            for m in aperture.to_mask(method="center")
        ]
    )
    return np.where(complete & ~touched, fluxes, np.nan)


def scale_factor(ref_flux, flux, sigma=3.0):
    """Clipped median of ref/frame flux ratios, and the error of that median."""
    ratio = ref_flux / flux
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    if ratio.size == 0:
        return float("nan"), float("nan"), 0
    keep = np.ones(ratio.size, bool)
    for _ in range(5):
        centre = np.median(ratio[keep])
        spread = 1.4826 * np.median(np.abs(ratio[keep] - centre))
        new = np.abs(ratio - centre) <= sigma * max(spread, 1e-6 * centre)
        if np.array_equal(new, keep):
            break
        keep = new
    kept = ratio[keep]
    error = 1.2533 * kept.std(ddof=1) / np.sqrt(kept.size) if kept.size > 1 else float("nan")
    return float(np.median(kept)), float(error), int(kept.size)


def judge_frame(ref_flux, flux, exposure, ref_exposure, noise, cfg):
    """Scale factor, transparency, weight and the verdict on one frame.

    ``ref_flux`` and ``flux`` are the photometry stars' fluxes in the
    reference and the frame (already restricted to the stars to use).
    Returns a dict of scale, scale_err, n_scale_stars, transparency, weight,
    used and reason (empty when used).
    """
    scale, error, count = scale_factor(ref_flux, flux)
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
    elif transparency > cfg.get("max_transparency", 1.5):
        verdict["reason"] = (
            f"more light per second than the reference: transparency {transparency:.2f} "
            f"(max {cfg.get('max_transparency', 1.5):g}); a wrong match, or a wrong "
            "exposure time?"
        )
    else:  # inverse variance of the frame once scaled
        verdict.update(used=True, weight=1.0 / (noise * scale) ** 2)
    return verdict
