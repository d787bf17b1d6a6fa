"""When a frame's light was collected, on named time scales.

DATE-OBS is read as UTC (the exposure start, or its middle for cameras that
stamp mid-exposure: config `times.date_obs_is`). Start, middle and end are
computed with astropy Time, so a leap second inside an exposure is counted.
Products carry DATE-BEG/AVG/END and MJD-BEG/AVG/END on TT (TIMESYS = 'TT'),
never a Julian date on UTC; with the site and the target known, also the
barycentric Julian date of mid-exposure on TDB, the airmass and the local
mean sidereal time.

Offline by design: IERS tables are never downloaded (compute nodes have no
network); astropy's bundled tables (astropy-iers-data, pinned) serve, and a
date outside them is reported with the precision that follows.
"""

import contextlib
import functools
import re
import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import AltAz, Angle, EarthLocation, SkyCoord
from astropy.time import Time, TimeDelta
from astropy.utils import iers
from erfa import ErfaWarning

iers.conf.auto_download = False  # never reach for the network
iers.conf.iers_degraded_accuracy = "warn"  # beyond the tables: say so (iers_note), go on

TIMESYS = "TT"
#: A frame's times as frames tables hold them (see span_of).
SPAN_COLUMNS = ("date_beg_tt", "date_end_tt", "mjd_avg_tt", "bjd_tdb", "airmass")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?")


class TimeProblem(ValueError):
    """A DATE-OBS that cannot be used; the message says why and the fix."""


def parse_date_obs(value, keyword="DATE-OBS"):
    """A UTC Time from a header date, or TimeProblem.

    Accepted: ISO 8601 'YYYY-MM-DDThh:mm:ss[.sss]', also with a space for
    the 'T' or a trailing 'Z' (both written by some camera software)."""
    if value is None or not str(value).strip():
        raise TimeProblem(f"no {keyword}. Fix: add it with header_overrides in config")
    text = str(value).strip()
    if text.endswith("Z"):  # UTC designator: the scale is UTC anyway
        text = text[:-1]
    if re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?", text):
        text = text.replace(" ", "T", 1)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise TimeProblem(
            f"{keyword} = {value!r} has a date but no time of day, so the exposure cannot "
            "be placed in time. Fix: give the start time with header_overrides"
        )
    if not _ISO.fullmatch(text):
        raise TimeProblem(
            f"{keyword} = {value!r} is not an ISO 8601 date and time "
            "(YYYY-MM-DDThh:mm:ss). Fix: correct it with header_overrides"
        )
    try:
        return Time(text, format="isot", scale="utc")
    except ValueError as exc:
        raise TimeProblem(f"{keyword} = {value!r}: {exc}") from None


def exposure_span(stamp, exposure_s, stamp_is="start"):
    """(start, middle, end) of an exposure as UTC Times, from the stamp the
    camera wrote and the exposure time; arithmetic on the uniform TAI
    scale underneath, so a leap second inside the exposure counts."""
    length = TimeDelta(float(exposure_s), format="sec")
    start = {"start": stamp, "mid": stamp - length / 2, "end": stamp - length}[stamp_is]
    return start, start + length / 2, start + length


def time_cards(start, middle, end):
    """FITS cards for an exposure span, on TT."""
    cards = {
        "TIMESYS": (TIMESYS, "time scale of DATE-BEG/AVG/END and MJD-*"),
        "DATE-BEG": (start.tt.isot, "exposure start, TT"),
        "DATE-AVG": (middle.tt.isot, "mid-exposure, TT"),
        "DATE-END": (end.tt.isot, "exposure end, TT"),
        "MJD-BEG": (round(float(start.tt.mjd), 9), "exposure start, MJD on TT"),
        "MJD-AVG": (round(float(middle.tt.mjd), 9), "mid-exposure, MJD on TT"),
        "MJD-END": (round(float(end.tt.mjd), 9), "exposure end, MJD on TT"),
    }
    return cards


def _angle(value, unit):
    """Degrees from a number or a sexagesimal string ('+42 15 11.9')."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float, np.floating)):
        return Angle(float(value), u.deg)
    return Angle(str(value).strip(), unit)


def site_of(header, configured=None):
    """EarthLocation from config (lat, lon east-positive, elevation m) or the
    header's SITELAT/SITELONG/SITEELEV; None when unknown."""
    if configured:
        return EarthLocation.from_geodetic(
            configured["longitude"] * u.deg,
            configured["latitude"] * u.deg,
            configured.get("elevation", 0.0) * u.m,
        )
    lat, lon = _angle(header.get("SITELAT"), u.deg), _angle(header.get("SITELONG"), u.deg)
    if lat is None or lon is None:
        return None
    elevation = float(header.get("SITEELEV", 0.0) or 0.0)
    return EarthLocation.from_geodetic(lon, lat, elevation * u.m)


def target_of(header):
    """ICRS SkyCoord from RA/DEC (degrees, or sexagesimal hours and degrees)
    or OBJCTRA/OBJCTDEC; None when unknown. Frames without them get them
    from config through header_overrides, like any other header value."""
    for ra_key, dec_key in (("RA", "DEC"), ("OBJCTRA", "OBJCTDEC")):
        ra, dec = header.get(ra_key), header.get(dec_key)
        if ra is None or dec is None:
            continue
        ra_unit = u.deg if isinstance(ra, (int, float)) else u.hourangle
        return SkyCoord(_angle(ra, ra_unit), _angle(dec, u.deg))
    return None


@functools.cache
def leap_seconds_expire():
    """When the bundled leap-second table stops being authoritative (UTC)."""
    return Time(iers.LeapSeconds.auto_open().expires, scale="utc")


def leap_second_note(time):
    """None, or what follows when a date is past the leap-second table."""
    expires = leap_seconds_expire()
    if time.utc > expires:
        return (
            f"{time.utc.isot} is after the bundled leap-second table expires "
            f"({expires.isot[:10]}): TT assumes no leap second since, so a time on TT "
            "may be 1 s off if one was announced. Fix: update astropy-iers-data"
        )
    return None


@contextlib.contextmanager
def _quiet_dubious_years():
    """ERFA warns 'dubious year' for dates past its leap-second knowledge;
    leap_second_note says it once, in words, instead of per conversion."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*dubious year", category=ErfaWarning)
        yield


@functools.cache
def iers_table_ends():
    """The last date of the bundled Earth-orientation table (UTC)."""
    return Time(iers.earth_orientation_table.get()["MJD"][-1], format="mjd", scale="utc")


def iers_note(time):
    """None, or what follows when a date is outside the bundled IERS tables."""
    last = iers_table_ends()
    if time.utc > last:
        return (
            f"{time.utc.isot} is after the bundled IERS table ({last.isot}): UT1-UTC "
            "predicted or set to 0 (up to 0.9 s), so sidereal time and airmass are good "
            "to a few arc-seconds, BJD to milliseconds"
        )
    return None


def lst_card(middle, location):
    """Local mean sidereal time at mid-exposure (needs only the site)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's IERS-range warning: said in iers_note
        lst = Time(middle, location=location).sidereal_time("mean")
    text = str(lst.to_string(unit=u.hourangle, sep=":", precision=2, pad=True))
    return {"LST": (text, "local mean sidereal time at mid-exposure")}


def target_cards(middle, location, target):
    """BJD_TDB of mid-exposure, altitude and airmass of the target: (cards, notes)."""
    cards, notes = {}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's IERS-range warning: said in iers_note
        when = Time(middle, location=location)
        bjd = when.tdb + when.light_travel_time(target, "barycentric")
        altaz = target.transform_to(AltAz(obstime=when, location=location))
    cards["BJD_TDB"] = (round(float(bjd.jd), 9), "barycentric JD of mid-exposure, TDB")
    altitude = float(altaz.alt.deg)
    if altitude > 0:
        cards["AIRMASS"] = (round(float(altaz.secz), 4), "sec(z) at mid-exposure")
    else:
        notes.append(
            f"target below the horizon at mid-exposure (altitude {altitude:.1f} deg): no "
            "airmass. Check the site (SITELONG east-positive), the target and DATE-OBS"
        )
    cards["ALTITUDE"] = (round(altitude, 4), "target altitude at mid-exposure, deg")
    return cards, notes


@_quiet_dubious_years()
def frame_cards(date_obs, header, exposure_s, date_obs_is="start", site=None, light=True):
    """Everything a frame's header should say about its times: (cards, notes).

    ``date_obs`` is the stamp the plan read (configured keyword, overrides
    applied); ``header`` gives the site and target (any mapping). A frame
    without a usable stamp gets TIMENOTE saying why, and no times. LST needs
    the site; BJD_TDB, altitude and airmass are for science frames (``light``)
    with the site and the target known.
    """
    try:
        stamp = parse_date_obs(date_obs)
    except TimeProblem as exc:
        return {"TIMENOTE": f"times unknown: {exc}"}, [f"times unknown: {exc}"]
    start, middle, end = exposure_span(stamp, exposure_s, date_obs_is)
    cards = time_cards(start, middle, end)
    notes = [note for note in [leap_second_note(end)] if note]
    location = site_of(header, site)
    target = target_of(header) if light else None
    if location is not None or target is not None:
        note = iers_note(middle)
        notes += [note] if note else []
    if location is not None:
        cards.update(lst_card(middle, location))
    if location is not None and target is not None:
        more, more_notes = target_cards(middle, location, target)
        cards.update(more)
        notes += more_notes
    elif light:
        missing = [n for n, v in (("site", location), ("target", target)) if v is None]
        notes.append(f"no BJD_TDB or airmass: {' and '.join(missing)} unknown")
    return cards, notes


def card_value(cards, key, default=None):
    """The value of ``key`` in a header or a {key: (value, comment)} dict."""
    value = cards.get(key, default)
    return value[0] if isinstance(value, tuple) else value


def span_of(cards):
    """A frame's times as plain values from its cards or header ('' or NaN
    where unknown): what frames tables hold and :func:`combined_cards` takes."""
    nan = float("nan")
    return {
        "date_beg_tt": str(card_value(cards, "DATE-BEG", "")),
        "date_end_tt": str(card_value(cards, "DATE-END", "")),
        "mjd_avg_tt": float(card_value(cards, "MJD-AVG", nan)),
        "bjd_tdb": float(card_value(cards, "BJD_TDB", nan)),
        "airmass": float(card_value(cards, "AIRMASS", nan)),
    }


def _weighted_mean(values, weights):
    """Mean about the first value, so Julian dates keep their microseconds."""
    values = np.asarray(values, dtype=float)
    return float(values[0] + np.average(values - values[0], weights=weights))


@_quiet_dubious_years()
def combined_cards(spans, exposures):
    """Times of a product combined from frames: (cards, notes).

    DATE-BEG is the first frame's start (DATE-OBS: the same on UTC, as
    cameras write it), DATE-END the last one's end,
    DATE-AVG/MJD-AVG and BJD_TDB the exposure-weighted mean of the frames'
    mid-exposures (plain mean for zero-second frames, i.e. biases), AIRMASS
    the exposure-weighted mean airmass, TOTEXP the summed exposure. With any
    frame's time unknown there are no stack times, only TIMENOTE: a span
    missing a frame would look exact and be wrong.
    """
    exposures = np.asarray(exposures, dtype=float)
    total = float(exposures.sum())
    cards = {"TOTEXP": (round(total, 6), "total exposure of the frames combined, s")}
    unknown = sum(1 for s in spans if not s["date_beg_tt"])
    if unknown or not spans:
        note = f"times unknown: {unknown} of {len(spans)} frames have no usable DATE-OBS"
        return cards | {"TIMENOTE": note}, [note]
    weights = exposures if total > 0 else np.ones(len(spans))
    begins = Time([s["date_beg_tt"] for s in spans], format="isot", scale="tt")
    ends = Time([s["date_end_tt"] for s in spans], format="isot", scale="tt")
    middle = Time(
        _weighted_mean([s["mjd_avg_tt"] for s in spans], weights), format="mjd", scale="tt"
    )
    start, end = begins[np.argmin(begins.mjd)], ends[np.argmax(ends.mjd)]
    cards["DATE-OBS"] = (start.utc.isot, "UTC start of the first frame combined")
    cards |= time_cards(start, middle, end)
    cards["DATE-AVG"] = (middle.isot, "exposure-weighted mean mid-exposure, TT")
    cards["MJD-AVG"] = (round(float(middle.mjd), 9), "exposure-weighted mean mid-exposure, MJD TT")
    notes = []
    for key, column, comment in (
        ("BJD_TDB", "bjd_tdb", "exposure-weighted mean BJD of mid-exposures, TDB"),
        ("AIRMASS", "airmass", "exposure-weighted mean airmass"),
    ):
        values = np.array([s[column] for s in spans], dtype=float)
        if np.isfinite(values).all():
            cards[key] = (round(_weighted_mean(values, weights), 9), comment)
        elif np.isfinite(values).any():
            notes.append(f"no {key}: {int((~np.isfinite(values)).sum())} frames lack it")
    return cards, notes
