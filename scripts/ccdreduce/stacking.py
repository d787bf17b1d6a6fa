"""Stacks: which calibrated frames go together, and which of them is the
reference that the others are registered and scaled to (reference.json,
remembered in reference.lock). How bright each frame is against the
reference is scaling's.

A stack is a group of science frames sharing the configured keys (object
and filter by default), across all nights. Its folder under results/stacks
is made of those values as safe path names.
"""

import functools
import json
from pathlib import Path

import numpy as np

from . import bayer
from .combine import weights_mode
from .errors import ConfigProblem, Problem
from .layout import reference_lock, split_frame_id

#: The path name of each grouping key: object and filter names are
#: one-to-one over the archive (inventory.assign_names), night folder names
#: are checked safe, exposure keys are numbers.
GROUP_KEYS = {
    "object": lambda f: f.object_key,
    "filter": lambda f: f.filter_key,
    "night": lambda f: f.night,
    "exposure": lambda f: f"{f.exposure_key}s",
}


def group_name(frame, group_by):
    """'NGC_2362/R' for object 'NGC 2362' and filter 'R'."""
    return "/".join(GROUP_KEYS[key](frame) for key in group_by)


#: A colour frame's demosaiced channels, each stacked on its own.
CHANNELS = bayer.CHANNELS


def stack_groups(plan, group_by):
    """{group name: [light frames]} for every calibrated science frame. A
    colour frame (Frame.bayer) joins three stacks, one a channel:
    '<group>/R', '<group>/G', '<group>/B'. Raises ConfigProblem when a
    group would hold mono and colour frames (its stack and its colour
    preview would share names)."""
    groups, colour, mono = {}, set(), set()
    for (_, _), (frame, _) in sorted(plan.lights.items()):
        name = group_name(frame, group_by)
        if getattr(frame, "bayer", None):
            colour.add(name)
            for channel in CHANNELS:
                groups.setdefault(f"{name}/{channel}", []).append(frame)
        else:
            mono.add(name)
            groups.setdefault(name, []).append(frame)
    if both := sorted(colour & mono):
        raise ConfigProblem(
            f"stack {both[0]!r} would hold frames of a colour (Bayer) sensor and of a mono one",
            "list one camera's frames under exclude, or give them their own OBJECT or "
            "FILTER with header_overrides",
        )
    return groups


def colour_groups(stacks):
    """The colour groups among ``stacks``: names whose R, G and B stacks exist."""
    return sorted(
        name.removesuffix("/G")
        for name in stacks
        if name.endswith("/G")
        and all(f"{name.removesuffix('/G')}/{c}" in stacks for c in CHANNELS)
        and getattr(stacks[name][0], "bayer", None)
    )


def channel_of(frame, group):
    """The channel ('R', 'G', 'B') a colour frame is stacked in by ``group``;
    None for a mono frame."""
    if not getattr(frame, "bayer", None):
        return None
    channel = group.rsplit("/", 1)[-1]
    if channel not in CHANNELS:
        raise ValueError(f"{group!r} is not a colour channel's stack")
    return channel


def pinned(pins, group, colour=()):
    """The pinned reference of ``group`` (config stacking.reference): its
    own, else its colour group's (of ``colour``, colour_groups): a pin of
    'M42/none' holds for 'M42/none/R', 'M42/none/G' and 'M42/none/B'."""
    if group in pins:
        return pins[group]
    parent, _, channel = group.rpartition("/")
    return pins.get(parent) if channel in CHANNELS and parent in colour else None


# --- the reference frame ---------------------------------------------------


def reference_row(table):
    """The reference frame's row of a stack's frames table."""
    night, stem = split_frame_id(table.meta["reference"])
    match = (table["night"] == night) & (table["stem"] == stem)
    if not match.any():
        raise ValueError(f"the reference {table.meta['reference']} is not in the frames table")
    return table[match][0]


#: At most this many frames, the sharpest first, are tried as the hub of the
#: group that agrees with it: the cost grows as hubs x frames.
MAX_HUBS = 30
#: A reference candidate's centre at most this fraction of the frame's
#: side from the group's median centre (dithers and nights' pointings stay
#: well inside; a frame pointed a third of a frame away would crop the stack).
MAX_OFF_CENTRE = 0.25
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


def _centre(catalogue):
    """A frame's centre pixel (x, y): of its shape, or of its stars when the
    catalogue does not say the shape."""
    stars, meta = catalogue
    if meta.get("shape"):
        ny, nx = meta["shape"]
        return np.array([(nx - 1) / 2, (ny - 1) / 2])
    return np.array([np.mean(stars["x"]), np.mean(stars["y"])])


def consistent_group(catalogs, match, with_scales=False):
    """The largest set of frames that agree with one another.

    ``catalogs`` maps frame id to (stars, meta); ``match(ref, frame)``
    returns a register.Match or raises RegistrationFailed. Each of the
    sharpest MAX_HUBS frames with stars is a hub; every frame is matched
    onto it (at any turn or scale the matcher allows), and the hub that most
    frames agree with wins, ties to the sharper hub; a hub all frames agree
    with ends the search. Returns (hub, {member id: transparency against
    the hub}, {outsider id: reason}), and with ``with_scales`` also {member
    id: (scale, centre)}: hub px per frame px (2 for a 2x2-binned frame on a
    1x1 hub) and where the frame's centre lands on the hub.
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
        scales = {hub: (1.0, _centre(catalogs[hub]))}
        for fid in usable:
            if fid == hub:
                continue
            try:
                found = match(_bright_xy(catalogs[hub][0]), _bright_xy(catalogs[fid][0]))
            except RegistrationFailed as exc:
                outsiders[fid] = str(exc)
                continue
            members[fid] = relative_transparency(catalogs[hub], catalogs[fid], found.pairs)
            centre = np.asarray(found.transform) @ [*_centre(catalogs[fid]), 1.0]
            scales[fid] = (float(found.scale), centre)
        if best is None or len(members) > len(best[1]):
            best = (hub, members, outsiders, scales)
        if len(members) == len(usable):  # no hub can gather more
            break
    if best is None:
        best = (None, {}, {}, {})
    return best if with_scales else best[:3]


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
    # the stack takes the reference's pixels: the finest sampled frames only
    # (a 2x2-binned night never sets the grid of its 1x1 nights)
    finest = min((r.get("scale", 1.0) for r in group), default=1.0)
    fit = [r for r in group if r.get("scale", 1.0) <= finest * 1.01]
    # and near the middle of the group: the stack takes the reference's field
    central = [r for r in fit if r.get("off_centre", 0.0) <= MAX_OFF_CENTRE]
    ranked = quality_order(central or fit, clear)
    if not ranked:
        raise Problem(
            f"none of the {len(rows)} frames of this stack has stars to register on",
            "check the frames (clouded out? wrong type?), list them under exclude, or "
            "run only the calibration (snakemake calibration)",
        )
    return ranked[0]["id"], (
        f"best of the {len(group)} of {len(rows)} frames that agree with one another: "
        "sharpest of the clear frames at the finest sampling"
    )


def read_lock(path):
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text()).get("reference")
    except (OSError, ValueError):
        return None


def read_reference(path):
    """A stack's reference.json, its star list as arrays."""
    reference = json.loads(Path(path).read_text())
    reference["stars"] = {k: np.asarray(v) for k, v in reference["stars"].items()}
    reference["stars"]["saturated"] = reference["stars"]["saturated"].astype(bool)
    return reference


def candidates(catalogs, match):
    """Every frame as a reference candidate: (hub, rows), one row a frame
    with its id, n_stars, fwhm (in the hub's pixels for a member, so that a
    binned frame's narrow stars in pixels do not pass for sharp seeing),
    scale (hub px per frame px), transparency against the hub of the largest
    consistent group, in_group and the note of an outsider."""
    hub, members, outsiders, placed = consistent_group(catalogs, match, with_scales=True)
    scales = {fid: scale for fid, (scale, _) in placed.items()}
    # how far each frame's centre sits from the group's (median) centre, as a
    # fraction of the hub's smaller side: a frame pointed far off the others
    # would crop the stack to its own field
    off = {}
    if placed:
        centres = np.array([centre for _, centre in placed.values()])
        middle = np.median(centres, axis=0)
        side = min(catalogs[hub][1].get("shape") or [np.ptp(centres) or 1.0])
        off = {fid: float(np.hypot(*(c - middle)) / side) for fid, (_, c) in placed.items()}
    rows = [
        {
            "id": fid,
            "n_stars": int(meta["n_stars"]),
            "fwhm": float(meta["fwhm"]) * scales.get(fid, 1.0),
            "scale": scales.get(fid, 1.0),
            "off_centre": off.get(fid, 0.0),
            "transparency": float(members.get(fid, np.nan)),
            "in_group": fid in members,
            "note": outsiders.get(fid, ""),
        }
        for fid, (_, meta) in catalogs.items()
    ]
    return hub, rows


def _log_ranking(hub, rows, clear, log):
    """The group's members by quality, and why the others are out."""
    members = [r for r in rows if r["in_group"]]
    for rank, row in enumerate(quality_order(members, clear), start=1):
        log.info(
            "%2d. %s: FWHM %.2f px, transparency %.3f of %s, %d stars",
            rank,
            row["id"],
            row["fwhm"],
            row["transparency"],
            hub,
            row["n_stars"],
        )
    for row in rows:
        if not row["in_group"]:
            log.warning("%s is not a candidate: %s", row["id"], row["note"] or "no stars")


def _record(chosen, how, catalogue, calibrated, hub, rows):
    """reference.json: the reference, how it was chosen, its calibrated
    frame, summary and stars, and every candidate."""
    stars, meta = catalogue
    return {
        "reference": chosen,
        "how": how,
        "calibrated": calibrated,
        "fwhm": meta["fwhm"],
        "shape": meta["shape"],
        "exposure": meta["exposure"],
        "noise": meta["noise"],
        "stars": {k: np.asarray(v).tolist() for k, v in stars.items()},
        "group_hub": hub,
        "candidates": [  # JSON has no NaN
            r | {"transparency": r["transparency"] if np.isfinite(r["transparency"]) else None}
            for r in rows
        ],
    }


def choose(frames, settings, pinned, output, log):
    """Choose a stack's reference and write it to ``output`` (reference.json).

    ``frames``: dicts with id, catalog and calibrated paths. Every frame's
    stars are matched onto the sharpest frames' (candidates); the reference
    is pinned, else remembered in reference.lock beside ``output``, else the
    best of the largest consistent group (choose_reference). Raises
    ValueError when no frame can serve.
    """
    from . import catalog, register

    catalogs = {frame["id"]: catalog.read(frame["catalog"]) for frame in frames}
    ny, nx = next(iter(catalogs.values()))[1]["shape"]
    match = functools.partial(
        register.match_frame, shape=(ny, nx), **register.match_settings(settings, nx, ny)
    )
    hub, rows = candidates(catalogs, match)
    members = {r["id"] for r in rows if r["in_group"]}
    if hub is not None:
        log.info(
            "%d of %d frames agree with %s (the largest consistent group)",
            len(members),
            len(rows),
            hub,
        )
    lock = Path(reference_lock(output))
    remembered = read_lock(lock)
    if isolated(remembered, catalogs, members, match):
        log.warning("%s (reference.lock) matches no other frame: choosing afresh", remembered)
        remembered = None
    chosen, how = choose_reference(
        rows, pinned=pinned, remembered=remembered, clear=settings["reference_clear"]
    )
    _log_ranking(hub, rows, settings["reference_clear"], log)
    log.info("reference: %s (%s)", chosen, how)
    calibrated = next(f["calibrated"] for f in frames if f["id"] == chosen)
    reference = _record(chosen, how, catalogs[chosen], calibrated, hub, rows)
    Path(output).write_text(json.dumps(reference, indent=1))
    if read_lock(lock) != chosen:  # the lock keeps how the choice was first made
        lock.write_text(json.dumps({"reference": chosen, "how": how}))
    return reference


def registered_paths(frames):
    """{frame id: registered file} of a stack's frames, from the rules' frame
    information (rules/common.smk: frame_info)."""
    return {frame["id"]: frame["registered"] for frame in frames}


# --- the combine of a stack -------------------------------------------------

#: The frames.ecsv column each weights mode (combine.WEIGHTS) combines with
#: (None: unweighted). Config booleans are the modes before issue 14: false
#: none, true noise (combine.weights_mode).
WEIGHT_COLUMNS = {"none": None, "noise": "weight", "seeing": "weight_seeing"}


def frame_weights(table, mode):
    """The used frames' weights for ``mode`` (None when unweighted), from
    the frames table's column WEIGHT_COLUMNS[mode]."""
    column = WEIGHT_COLUMNS[weights_mode(mode)]
    if column is None:
        return None
    return np.asarray(table[column], dtype=float)


def weights_note(weights, mode):
    """HISTORY's line on the weights in effect: the mode and the per-frame
    range, each relative to the largest (1)."""
    mode = weights_mode(mode)
    if weights is None:
        return "weights: none (every frame counts alike)"
    relative = np.asarray(weights, float) / np.max(weights)
    return (
        f"weights: {mode} ({WEIGHT_COLUMNS[mode]}), per frame {relative.min():.3f}-1 "
        f"of the largest, median {np.median(relative):.3f}"
    )


def stack_mask(coverage):
    """The stack's MASK: MASK_NO_DATA where no valid input (coverage 0)."""
    from .fitsfile import MASK_NO_DATA

    return np.where(np.asarray(coverage) == 0, MASK_NO_DATA, 0).astype(np.uint8)


def write_stack(path, image, coverage, sigma, header):
    """A stack as ccdproc reads it: the image, MASK (stack_mask), UNCERT
    (``sigma``, when the combine gave one; NaN where no input) and COVERAGE
    (frames per pixel), so CCDData.read gives unit, mask and uncertainty."""
    from .fitsfile import write_image

    if sigma is not None:
        sigma = np.where(np.asarray(coverage) > 0, sigma, np.nan)
    write_image(
        path,
        image,
        header,
        mask=stack_mask(coverage),
        uncertainty=sigma,
        extensions={"COVERAGE": coverage},
    )
