"""The night log (results/calib/<night>/night_log.ecsv): every frame of a
night with when it was taken, on named scales, and where the telescope
pointed; what an observer writes in the logbook, computed.

Built from the plan (the inventory's cached header values), so it needs no
pixels and covers calibration frames too. Science frames get BJD_TDB,
altitude and airmass of their target; every frame with a known site gets the
local mean sidereal time.
"""

from .columns import (
    AIRMASS,
    BJD_TDB,
    DATE_OBS,
    EXPOSURE,
    FILE,
    FILTER,
    MJD_AVG_TT,
    OBJECT,
    TYPE,
    Column,
    describe,
    names,
)

#: Every column: name, unit, description (in the ECSV header).
SCHEMA = (
    FILE,
    TYPE,
    FILTER,
    OBJECT,
    EXPOSURE,
    DATE_OBS,
    Column("utc_start", None, "exposure start on UTC, ISO"),
    Column("date_avg_tt", None, "mid-exposure on TT, ISO"),
    MJD_AVG_TT,
    BJD_TDB,
    AIRMASS,
    Column("altitude", "deg", "altitude of the target at mid-exposure (science frames)"),
    Column("lst", None, "local mean sidereal time at mid-exposure, hh:mm:ss"),
    Column("note", None, "what limits these times (UT1 predicted, camera clock, unknown site)"),
    Column(
        "calibration",
        None,
        "science frames: calibrated, partially calibrated or uncalibrated, and what is missing",
    ),
)
COLUMNS = names(SCHEMA)


def calibration_state(recipe):
    """'calibrated', or the state and what the frame lacks in a few words:
    'uncalibrated: no bias, dark, flat (pedestal subtracted)', 'partially
    calibrated: dark current of the remaining 58.5 s (hot pixels stay)'."""
    if recipe.state == "calibrated":
        return recipe.state
    lacks = [kind for kind in ("bias", "dark", "flat") if getattr(recipe, kind) is None]
    if recipe.dark_includes_bias:
        lacks.remove("bias")
    if not lacks:
        return f"{recipe.state}: {', '.join(recipe.uncorrected)}"
    removed = " (pedestal subtracted)" if recipe.pedestal else ""
    removed = " (overscan subtracted)" if recipe.overscan and "bias" in lacks else removed
    return f"{recipe.state}: no {', '.join(lacks)}{removed}"


def rows(plan, night):
    """What the log needs of each frame of ``night`` (plain values only)."""
    states = {frame.relpath: calibration_state(recipe) for frame, recipe in plan.lights_of(night)}
    return [
        {
            "file": frame.relpath,
            "type": frame.kind or "",
            "filter": frame.filter or "",
            "object": frame.object or "",
            "exposure": frame.exposure,
            "date_obs": frame.date_obs or "",
            "site_target": frame.site_target,
            "problem": frame.problem or "",
            "calibration": states.get(frame.relpath, ""),
        }
        for frame in plan.nights[night].frames
    ]


def entry(frame, timed=None, utc_start=""):
    """One log row (a dict of COLUMNS) for a frame from :func:`rows`, with
    ``timed``, its (cards, notes) from times.frames_cards (None: a frame
    with a problem or no exposure time), and its start on UTC."""
    from . import times

    row = {name: "" for name in COLUMNS} | {
        name: float("nan") for name in ("exposure", "mjd_avg_tt", "bjd_tdb", "airmass", "altitude")
    }
    row.update({k: frame[k] for k in ("file", "type", "filter", "object", "date_obs")})
    row["calibration"] = frame.get("calibration", "")
    if timed is None:
        row["note"] = frame["problem"] or "no exposure time"
        return row
    row["exposure"] = float(frame["exposure"])
    cards, notes = timed
    row["note"] = "; ".join(notes)
    if "DATE-BEG" not in cards:
        return row
    span = times.span_of(cards)
    row.update(
        utc_start=utc_start,
        date_avg_tt=times.card_value(cards, "DATE-AVG"),
        mjd_avg_tt=span["mjd_avg_tt"],
        bjd_tdb=span["bjd_tdb"],
        airmass=span["airmass"],
        altitude=times.card_value(cards, "ALTITUDE", float("nan")),
        lst=times.card_value(cards, "LST", ""),
    )
    return row


def _utc_starts(each):
    """Each frame's exposure start on UTC ('' where unknown) from its
    DATE-BEG on TT, for ``each`` (cards, notes): one conversion a night."""
    from astropy.time import Time  # only in the job: the parse needs rows() alone

    from . import times

    begins = [str(times.card_value(cards, "DATE-BEG", "")) for cards, _ in each]
    known = [begin for begin in begins if begin]
    converted = iter(Time(known, format="isot", scale="tt").utc.isot if known else [])
    return [str(next(converted)) if begin else "" for begin in begins]


def build(frames, settings, night=None):
    """The night log of ``frames`` (from :func:`rows`) of ``night``, in time
    order; ``settings`` is config ``times``. The times of all its frames are
    computed together (times.frames_cards)."""
    from astropy.table import Table

    from . import times

    timed = [f for f in frames if not f["problem"] and f["exposure"] is not None]
    each = times.frames_cards(
        [(f["date_obs"], f["site_target"], f["exposure"], f["type"] == "light") for f in timed],
        settings["date_obs_is"],
        settings["site"],
        night,
    )
    times_of = dict(zip(map(id, timed), zip(each, _utc_starts(each), strict=True), strict=True))
    entries = [entry(frame, *times_of.get(id(frame), ())) for frame in frames]
    entries.sort(key=lambda r: (r["utc_start"] == "", r["utc_start"], r["file"]))
    table = Table(rows=[[r[n] for n in COLUMNS] for r in entries], names=COLUMNS)
    describe(table, SCHEMA)
    table.meta["comments"] = [
        "Night log: every frame in time order. date_obs as the camera wrote it (UTC;",
        "products keep it as UTC-OBS, their DATE-OBS is the start on TT);",
        "utc_start the exposure start on UTC; date_avg_tt and mjd_avg_tt mid-exposure on TT;",
        "bjd_tdb barycentric Julian date of mid-exposure on TDB; airmass and altitude of",
        "the target (science frames) at mid-exposure; lst local mean sidereal time;",
        "note what limits these times (UT1 predicted, camera clock, unknown site);",
        "calibration: how a science frame was calibrated, and what it lacks.",
    ]
    return table


def lines(table):
    """The log as fixed-width text, for the job's log file."""
    shown = table.copy()
    shown.remove_columns(["date_obs", "mjd_avg_tt", "note"])
    shown["file"] = [name.rsplit("/", 1)[-1] for name in shown["file"]]
    shown["bjd_tdb"].info.format = ".6f"
    shown["airmass"].info.format = ".3f"
    shown["altitude"].info.format = ".2f"
    return shown.pformat(max_lines=-1, max_width=-1)
