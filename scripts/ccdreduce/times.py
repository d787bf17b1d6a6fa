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

import re
import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import AltAz, Angle, EarthLocation, SkyCoord
from astropy.time import Time, TimeDelta
from astropy.utils import iers

iers.conf.auto_download = False  # never reach for the network
iers.conf.iers_degraded_accuracy = "warn"  # beyond the tables: say so (iers_note), go on

TIMESYS = "TT"
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


def target_of(header, configured=None):
    """ICRS SkyCoord from config (ra, dec in degrees) or RA/DEC (degrees, or
    sexagesimal hours and degrees) or OBJCTRA/OBJCTDEC; None when unknown."""
    if configured:
        return SkyCoord(configured["ra"] * u.deg, configured["dec"] * u.deg)
    for ra_key, dec_key in (("RA", "DEC"), ("OBJCTRA", "OBJCTDEC")):
        ra, dec = header.get(ra_key), header.get(dec_key)
        if ra is None or dec is None:
            continue
        ra_unit = u.deg if isinstance(ra, (int, float)) else u.hourangle
        return SkyCoord(_angle(ra, ra_unit), _angle(dec, u.deg))
    return None


def iers_note(time):
    """None, or what follows when a date is outside the bundled IERS tables."""
    table = iers.earth_orientation_table.get()
    last = Time(table["MJD"][-1], format="mjd", scale="utc")
    if time.utc > last:
        return (
            f"{time.utc.isot} is after the bundled IERS table ({last.isot}): UT1-UTC "
            "predicted or set to 0 (up to 0.9 s), so sidereal time and airmass are good "
            "to a few arc-seconds, BJD to milliseconds"
        )
    return None


def sky_cards(middle, location, target):
    """BJD_TDB of mid-exposure, airmass and local mean sidereal time."""
    cards, notes = {}, []
    note = iers_note(middle)
    if note:
        notes.append(note)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's IERS-range warning: said in the note
        when = Time(middle, location=location)
        lst = when.sidereal_time("mean")
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
    cards["LST"] = (
        lst.to_string(unit=u.hourangle, sep=":", precision=2),
        "local mean sidereal time",
    )
    return cards, notes


def frame_cards(header, exposure_s, date_obs_is="start", site=None):
    """Everything a frame's header says about its times: (cards, notes).
    A frame without a usable DATE-OBS gets TIMENOTE saying why, no times."""
    try:
        stamp = parse_date_obs(header.get("DATE-OBS"))
    except TimeProblem as exc:
        return {"TIMENOTE": f"times unknown: {exc}"}, [f"times unknown: {exc}"]
    start, middle, end = exposure_span(stamp, exposure_s, date_obs_is)
    cards, notes = time_cards(start, middle, end), []
    location, target = site_of(header, site), target_of(header)
    if location is not None and target is not None:
        more, notes = sky_cards(middle, location, target)
        cards.update(more)
    else:
        missing = [n for n, v in (("site", location), ("target", target)) if v is None]
        notes.append(f"no BJD_TDB, airmass or LST: {' and '.join(missing)} unknown")
    return cards, notes
