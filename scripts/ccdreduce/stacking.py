"""Stacks: which calibrated frames go together, which is the reference,
and how bright each frame is against it.

A stack is a group of science frames sharing the configured keys (object
and filter by default), across all nights. Its folder under results/stacks
is made of those values as safe path names.
"""

import json
from pathlib import Path

import numpy as np

from .errors import ConfigProblem, Problem

#: The path name of each grouping key: object and filter names are
#: one-to-one over the archive (inventory.assign_names), night folder names
#: are checked safe, exposure keys are numbers.
GROUP_KEYS = {
    "object": lambda f: f.object_key,
    "filter": lambda f: f.filter_key,
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
    return "/".join(GROUP_KEYS[key](frame) for key in group_by)


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


#: At most this many frames, the sharpest first, are tried as the hub of the
#: group that agrees with it: the cost grows as hubs x frames.
MAX_HUBS = 30
#: Stars per frame (the brightest) matched to find the group.
GROUP_STARS = 100


def _bright_xy(stars):
    """(n, 2) positions of a catalogue's GROUP_STARS brightest stars: enough
    to tell agreement, ten times faster to match than all of them."""
    return np.column_stack([stars["x"], stars["y"]])[:GROUP_STARS]


def relative_transparency(hub, frame, pairs):
    """Star flux per second of ``frame`` against ``hub`` from their matched,
    unsaturated stars (median ratio). hub and frame are (stars, meta)."""
    (h_stars, h_meta), (f_stars, f_meta) = hub, frame
    i, j = pairs[:, 0], pairs[:, 1]
    fine = ~h_stars["saturated"][i] & ~f_stars["saturated"][j]
    fine &= (h_stars["flux"][i] > 0) & (f_stars["flux"][j] > 0)
    if not fine.any():
        return float("nan")
    ratio = np.median(f_stars["flux"][j][fine] / h_stars["flux"][i][fine])
    return float(ratio * h_meta["exposure"] / f_meta["exposure"])


def consistent_group(catalogs, match):
    """The largest set of frames that agree with one another.

    ``catalogs`` maps frame id to (stars, meta); ``match(ref, frame)``
    returns a register.Match or raises RegistrationFailed. Each of the
    sharpest MAX_HUBS frames with stars is a hub; every frame is matched
    onto it, and the hub that most frames agree with (a consistent match,
    no rotation) wins, ties to the sharper hub. Returns (hub, {member id:
    transparency against the hub}, {outsider id: reason}).
    """
    from .register import RegistrationFailed

    usable = [
        fid
        for fid, (stars, meta) in catalogs.items()
        if len(stars["x"]) and np.isfinite(float(meta["fwhm"]))
    ]
    hubs = sorted(usable, key=lambda fid: (float(catalogs[fid][1]["fwhm"]), fid))[:MAX_HUBS]
    best = None
    for hub in hubs:
        members, outsiders = {hub: 1.0}, {}
        for fid in usable:
            if fid == hub:
                continue
            try:
                found = match(_bright_xy(catalogs[hub][0]), _bright_xy(catalogs[fid][0]))
            except RegistrationFailed as exc:
                outsiders[fid] = str(exc)
                continue
            members[fid] = relative_transparency(catalogs[hub], catalogs[fid], found.pairs)
        if best is None or len(members) > len(best[1]):
            best = (hub, members, outsiders)
    if best is None:
        return None, {}, {}
    return best


def isolated(frame_id, catalogs, members, match):
    """True when ``frame_id`` (a remembered reference outside the largest
    group) matches no other frame while a group of several exists: a lock
    written before frames were checked for agreement, kept no longer."""
    from .register import RegistrationFailed

    if frame_id not in catalogs or frame_id in members or len(members) < 2:
        return False
    for other, (stars, _) in catalogs.items():
        if other == frame_id:
            continue
        try:
            match(_bright_xy(catalogs[frame_id][0]), _bright_xy(stars))
        except RegistrationFailed:
            continue
        return False
    return True


def quality_order(rows, clear=0.7):
    """Candidate frames best first: the clear ones (transparency at least
    ``clear`` of the most transparent), then the sharpest (FWHM), then the
    most transparent, then the most stars; ties by name. Seeing and
    transparency decide before the star count, which artefacts inflate."""
    usable = [r for r in rows if r["n_stars"] > 0 and np.isfinite(r["fwhm"])]
    if not usable:
        return []
    clearest = max((r["transparency"] for r in usable if np.isfinite(r["transparency"])), default=0)

    def key(r):
        t = r["transparency"] if np.isfinite(r["transparency"]) else 0.0
        return (t < clear * clearest, r["fwhm"], -t, -r["n_stars"], r["id"])

    return sorted(usable, key=key)


def choose_reference(rows, pinned=None, remembered=None, clear=0.7):
    """(frame id, how it was chosen) from the candidates' rows: id, n_stars,
    fwhm, transparency and in_group (the frame belongs to the largest group
    of frames that agree with one another, see consistent_group).

    A pinned id (config) wins; then a remembered earlier choice that is
    still a candidate, so that adding nights never moves the reference;
    otherwise the best by quality within the group (quality_order).
    """
    ids = {r["id"] for r in rows}
    if pinned:
        if pinned not in ids:
            raise ConfigProblem(
                f"stacking.reference pins {pinned!r}, which is not a frame of this stack",
                f"use one of: {', '.join(sorted(ids))}",
            )
        return pinned, "pinned in config (stacking.reference)"
    if remembered in ids:
        return remembered, "kept from the first choice (see reference.lock)"
    group = [r for r in rows if r.get("in_group", True)]
    ranked = quality_order(group, clear)
    if not ranked:
        raise Problem(
            f"none of the {len(rows)} frames of this stack has stars to register on",
            "check the frames (clouded out? wrong type?), list them under exclude, or "
            "run only the calibration (snakemake calibration)",
        )
    return ranked[0]["id"], (
        f"best of the {len(group)} of {len(rows)} frames that agree with one another: "
        "sharpest of the clear frames"
    )


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
    elif transparency > cfg["max_transparency"]:
        verdict["reason"] = (
            f"more light per second than the reference: transparency {transparency:.2f} "
            f"(max {cfg['max_transparency']:g}); a wrong match, or a wrong "
            "exposure time?"
        )
    else:  # inverse variance of the frame once scaled
        verdict.update(used=True, weight=1.0 / (noise * scale) ** 2)
    return verdict
