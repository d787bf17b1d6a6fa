"""When a frame's light was collected, on named time scales.

DATE-OBS as the camera writes it is read as UTC (the exposure start, or its
middle or end: config `times.date_obs_is`). Start, middle and end are
computed with astropy Time, so a leap second inside an exposure is counted.
Products are on TT (TIMESYS = 'TT', which FITS 4.0 section 9 makes the scale
of every time keyword in the header, DATE-OBS included): DATE-OBS and
DATE-BEG are the exposure start on TT, DATE-AVG/END and MJD-OBS/BEG/AVG/END
follow, and the camera's own value is kept in UTC-OBS. Never a Julian date
on UTC. With the site and the target known, also the barycentric Julian date
of mid-exposure on TDB, the airmass and the local mean sidereal time.

Offline on any date, whatever the date of the run: UT1-UTC and polar motion
come from one table chosen once per process (:func:`use_iers`): astropy's
bundled IERS-A/B tables (astropy-iers-data, pinned), measured values where
they reach, IERS predictions after that and the nearest value beyond them,
each degraded case said in the frame's note with its size. Nothing here reads
the wall clock except :func:`now`, for the camera-clock check.
"""

import contextlib
import functools
import hashlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import AltAz, Angle, EarthLocation, SkyCoord
from astropy.time import Time, TimeDelta
from astropy.utils import iers
from astropy.utils.exceptions import AstropyWarning
from erfa import ErfaWarning

from . import atomic, dateobs
from .errors import Problem, say
from .inventory import parse_night_name

iers.conf.auto_download = False  # never reach for the network unless asked (use_iers)
# No check of the tables' age against the wall clock: the tables in use are
# pinned, and a date past them is said in the frame's note (ut1_quality).
# astropy's default raises for any date past the predictions' start once
# they are 30 days old by the clock, so last month's night failed today.
iers.conf.auto_max_age = None
iers.conf.iers_degraded_accuracy = "ignore"  # said in words by ut1_quality, once

TIMESYS = "TT"
#: A frame's times as frames tables hold them (see span_of).
SPAN_COLUMNS = ("date_beg_tt", "date_end_tt", "mjd_avg_tt", "bjd_tdb", "airmass", "time_note")
#: Where UT1-UTC and polar motion may come from (config times.iers).
IERS_SOURCES = ("bundled", "download")
#: IERS Bulletin A's error of a UT1-UTC prediction d days ahead:
#: 0.00025 d**0.75 s (3 ms at a month, 21 ms at a year).
PREDICTION_ERROR_S = 0.00025
#: |UT1-UTC| stays below 0.9 s by the definition of UTC.
UT1_UTC_BOUND_S = 0.9
#: The years whose times are tested here; a DATE-OBS outside them is most
#: likely a camera clock that was never set.
PLAUSIBLE_YEARS = (1990, 2100)
#: Camera and reduction computer clocks disagree by seconds; a frame that
#: ends later than this after the run's own clock cannot have been taken yet.
CLOCK_SLACK_S = 60.0
#: A night is named for its local evening: its UTC dates lie within a day or
#: so of the folder's date.
NIGHT_SLACK_DAYS = 2.0


def now():
    """The run's clock (UTC): the one place that reads it, for tests to fix."""
    return Time.now()


_earth = {}  # the Earth-orientation table in use: see use_iers


def use_iers(source="bundled"):
    """Choose, for this process, where UT1-UTC and polar motion come from.

    ``bundled`` (the default): astropy-iers-data's IERS-A table (IERS-B
    values where measured, then IERS predictions about a year ahead), the
    same on every run and every machine. ``download``: the newest IERS-A
    from the IERS servers, for a user with network who wants better UT1 for
    recent nights; if that fails, the bundled table serves. Returns a note
    in words when the choice could not be honoured, else None.
    """
    if source not in IERS_SOURCES:
        raise ValueError(f"times.iers = {source!r}: use one of {', '.join(IERS_SOURCES)}")
    if source == "bundled" and _earth.get("source") == "bundled":
        # read once per process: a worker runs many jobs
        iers.earth_orientation_table.set(_earth["table"])
        return None
    table, note = None, None
    if source == "download":
        try:
            table = iers.IERS_A.open(iers.IERS_A_URL, cache=True)
        except Exception as exc:  # no network, server down: the bundled tables serve
            note = f"times.iers = download failed ({exc}); the bundled IERS tables serve"
    if table is None:
        table = bundled_table()
    iers.earth_orientation_table.set(table)
    _earth["table"] = table
    _earth["source"] = "bundled" if note or source == "bundled" else source
    return note


def bundled_table():
    """astropy-iers-data's IERS-A table. Parsing its text takes ~0.4 s, in
    every process that calibrates; the parsed table is therefore kept in the
    user's cache folder (XDG_CACHE_HOME, else ~/.cache), under a name made
    from astropy's version and the file's path, size and time, and read
    from there (~5 ms) while those stay the same. Without a usable cache the
    text is parsed, as before. (A pickle: the folder is the user's own.)"""
    # the file named, not None: IERS_A.read prefers a finals2000A.all lying
    # in the working directory
    source = Path(iers.IERS_A_FILE)
    cached = None
    with contextlib.suppress(Exception):  # none yet, or unreadable: parse
        cached = _cache_path(source)
        table = pickle.loads(cached.read_bytes())
        if isinstance(table, iers.IERS_A):
            return table
    table = iers.IERS_A.open(str(source))
    if cached is not None:
        _keep(table, cached)
    return table


def _cache_path(source):
    import astropy

    stat = source.stat()
    key = f"{astropy.__version__} {source} {stat.st_size} {stat.st_mtime_ns}"
    home = os.environ.get("XDG_CACHE_HOME", "")
    folder = Path(home if os.path.isabs(home) else Path.home() / ".cache") / "ccdreduce"
    return folder / f"iers_a-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pickle"


def _keep(table, cached):
    """Write the pickle whole or not at all (a full or read-only home: then
    each process parses)."""
    with contextlib.suppress(Exception), atomic.written_beside(cached) as partial:
        partial.write_bytes(pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL))


def earth_orientation():
    """The Earth-orientation table in use (the bundled one unless chosen)."""
    if "table" not in _earth:
        use_iers("bundled")
    return _earth["table"]


class TimeProblem(Problem):
    """A DATE-OBS that cannot be used; the message says why and the fix."""


def parse_date_obs(value, keyword="DATE-OBS"):
    """A UTC Time from a header date, or TimeProblem.

    Accepted: the forms of :mod:`ccdreduce.dateobs` (ISO 8601
    'YYYY-MM-DDThh:mm:ss[.sss]', with a space for the 'T', a trailing 'Z'
    or an offset from UTC, ...), except a date without a time of day."""
    if value is None or not str(value).strip():
        raise TimeProblem(f"no {keyword}", "add it with header_overrides in config")
    stamp = dateobs.parse(value)
    if stamp is None:
        raise TimeProblem(
            f"{keyword} = {value!r} is not an ISO 8601 date and time (YYYY-MM-DDThh:mm:ss)",
            "correct it with header_overrides",
        )
    if stamp.time is None:
        raise TimeProblem(
            f"{keyword} = {value!r} has a date but no time of day, so the exposure cannot "
            "be placed in time",
            "give the start time with header_overrides",
        )
    try:
        time = Time(stamp.isot, format="isot", scale="utc")
    except ValueError as exc:
        raise TimeProblem(
            f"{keyword} = {value!r}: {exc}", "correct it with header_overrides"
        ) from None
    if stamp.offset_minutes:  # written as local time: UTC is that less the offset
        time = time - stamp.offset_minutes * u.min
    return time


def exposure_span(stamp, exposure_s, stamp_is="start"):
    """(start, middle, end) of an exposure as UTC Times, from the stamp the
    camera wrote and the exposure time; arithmetic on the uniform TAI
    scale underneath, so a leap second inside the exposure counts. Stamps
    and exposure times may be arrays, one per frame."""
    length = TimeDelta(np.asarray(exposure_s, dtype=float), format="sec")
    start = {"start": stamp, "mid": stamp - length / 2, "end": stamp - length}[stamp_is]
    return start, start + length / 2, start + length


def time_cards(start, middle, end):
    """FITS cards for an exposure span, on TT: DATE-OBS is the start, as
    FITS 4.0 reads it (on TIMESYS), and MJD-OBS with it, so astropy.wcs
    finds nothing to fix."""
    return _time_cards_each(*(t.reshape(1) for t in (start, middle, end)))[0]


def _time_cards_each(start, middle, end):
    """:func:`time_cards` of arrays of spans: a dict per frame."""
    begins, middles, ends = start.tt, middle.tt, end.tt
    cards = []
    for begin, begin_mjd, avg, avg_mjd, finish, finish_mjd in zip(
        begins.isot, begins.mjd, middles.isot, middles.mjd, ends.isot, ends.mjd, strict=True
    ):
        begin_mjd = round(float(begin_mjd), 9)
        cards.append(
            {
                "TIMESYS": (TIMESYS, "scale of all time keywords (FITS 4.0 sec. 9)"),
                "DATE-OBS": (str(begin), "exposure start, TT; see UTC-OBS"),
                "MJD-OBS": (begin_mjd, "exposure start, MJD on TT"),
                "DATE-BEG": (str(begin), "exposure start, TT"),
                "DATE-AVG": (str(avg), "mid-exposure, TT"),
                "DATE-END": (str(finish), "exposure end, TT"),
                "MJD-BEG": (begin_mjd, "exposure start, MJD on TT"),
                "MJD-AVG": (round(float(avg_mjd), 9), "mid-exposure, MJD on TT"),
                "MJD-END": (round(float(finish_mjd), 9), "exposure end, MJD on TT"),
            }
        )
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
        return _configured_site(
            configured["longitude"], configured["latitude"], configured.get("elevation", 0.0)
        )
    return _header_site(header.get("SITELAT"), header.get("SITELONG"), header.get("SITEELEV"))


# One EarthLocation or SkyCoord per value written (a night's frames share
# them): made anew for every frame they cost ~1.5 ms of its ~4 ms.
@functools.lru_cache(maxsize=64)
def _configured_site(longitude, latitude, elevation):
    return EarthLocation.from_geodetic(longitude * u.deg, latitude * u.deg, elevation * u.m)


@functools.lru_cache(maxsize=64)
def _header_site(latitude, longitude, elevation):
    lat, lon = _angle(latitude, u.deg), _angle(longitude, u.deg)
    if lat is None or lon is None:
        return None
    return EarthLocation.from_geodetic(lon, lat, float(elevation or 0.0) * u.m)


def target_of(header):
    """ICRS SkyCoord from RA/DEC (degrees, or sexagesimal hours and degrees)
    or OBJCTRA/OBJCTDEC; None when unknown. Frames without them get them
    from config through header_overrides, like any other header value."""
    for ra_key, dec_key in (("RA", "DEC"), ("OBJCTRA", "OBJCTDEC")):
        ra, dec = header.get(ra_key), header.get(dec_key)
        if ra is None or dec is None:
            continue
        return _target(ra, dec, isinstance(ra, (int, float)))
    return None


@functools.lru_cache(maxsize=256)
def _target(ra, dec, ra_in_degrees):
    return SkyCoord(_angle(ra, u.deg if ra_in_degrees else u.hourangle), _angle(dec, u.deg))


@functools.cache
def leap_seconds_expire():
    """When the bundled leap-second table stops being authoritative (UTC)."""
    return Time(iers.LeapSeconds.auto_open().expires, scale="utc")


def _leap_second_notes(times):
    """For each of an array of times (a list): None, or what follows when
    the date is past the bundled leap-second table."""
    expires = leap_seconds_expire()
    late = np.atleast_1d(times.utc > expires)
    return [
        say(
            f"{times[index].utc.isot} is after the bundled leap-second table expires "
            f"({expires.isot[:10]}): TT assumes no leap second since, so a time on TT "
            "may be 1 s off if one was announced",
            "update astropy-iers-data",
        )
        if is_late
        else None
        for index, is_late in enumerate(late)
    ]


@contextlib.contextmanager
def _quiet_astropy():
    """astropy's IERS-range and ERFA's date-range warnings: said once, in
    words, by the notes (ut1_quality, _leap_second_notes, _clock_notes_each), not
    per conversion."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*dubious year", category=ErfaWarning)
        # the ephemeris outside 1900-2100: such a date gets _clock_notes_each's note
        warnings.filterwarnings("ignore", message=".*outside ?the range", category=ErfaWarning)
        warnings.filterwarnings("ignore", category=iers.IERSWarning)
        warnings.filterwarnings("ignore", message=".*polar motion", category=AstropyWarning)
        yield


def _mjd_date(mjd):
    return Time(float(mjd), format="mjd", scale="utc").isot[:10]


@_quiet_astropy()
def ut1_quality(time):
    """How well UT1-UTC is known at ``time``: (error bound in s, what).

    (0, None) where the table has measured values; predictions carry IERS
    Bulletin A's error for their distance ahead; before or after the table,
    UT1-UTC is held at its nearest value and may be off by up to 0.9 s plus
    that value.
    """
    return _ut1_quality_each(time.reshape(1))[0]


def _ut1_quality_each(times):
    """:func:`ut1_quality` of each of an array of times (a list)."""
    table = earth_orientation()
    values, status = table.ut1_utc(times.utc, return_status=True)
    values, mjds = np.atleast_1d(values.to_value(u.s)), np.atleast_1d(times.utc.mjd)
    qualities = []
    for index, (value, state) in enumerate(zip(values, np.atleast_1d(status), strict=True)):
        value, state = float(value), int(state)
        if state in (iers.FROM_IERS_B, iers.FROM_IERS_A):
            qualities.append((0.0, None))
        elif state == iers.FROM_IERS_A_PREDICTION:
            predicted_from = float(table.meta["predictive_mjd"])
            days = max(float(mjds[index]) - predicted_from, 1.0)
            qualities.append(
                (
                    PREDICTION_ERROR_S * days**0.75,
                    f"UT1-UTC predicted by the IERS {days:.0f} d after its last measurement "
                    f"({_mjd_date(predicted_from)})",
                )
            )
        else:
            beyond = state == iers.TIME_BEYOND_IERS_RANGE
            edge = table["MJD"][-1 if beyond else 0].to_value(u.d)
            qualities.append(
                (
                    UT1_UTC_BOUND_S + abs(value),
                    f"{times[index].utc.isot[:10]} is {'after' if beyond else 'before'} the "
                    f"IERS table ({'ends' if beyond else 'starts'} {_mjd_date(edge)}): "
                    f"UT1-UTC held at {value:+.3f} s",
                )
            )
    return qualities


def _seconds(value):
    return f"{value * 1000:.2g} ms" if value < 1 else f"{value:.2g} s"


def ut1_note(what, error, airmass_error=None):
    """A frame's note on degraded UT1: what, and how much it moves LST,
    hour angle and airmass (TT, TDB and BJD_TDB do not depend on UT1)."""
    note = (
        f"{what}: LST and hour angle good to ~{_seconds(error)} of time "
        f"({15.04 * error:.2g} arcsec)"
    )
    if airmass_error is not None:
        note += f", airmass to ~{airmass_error:.1g}"
    return note + "; TT, TDB and BJD_TDB do not depend on UT1"


def _clock_notes_each(start, end, night=None):
    """Notes on DATE-OBS values that cannot be right, for arrays of spans (a
    list of notes per frame): after the run's own clock, outside the
    plausible years, or days away from the night folder's date. The times
    are still computed from them as written."""
    clock = now()
    utc = start.utc
    written, years = utc.isot, utc.ymdhms.year
    aheads = (end - clock).to_value(u.s)
    folder = parse_night_name(night) if night else None
    away = utc.mjd - Time(folder, scale="utc").mjd if folder is not None else None
    first, last = PLAUSIBLE_YEARS
    each = []
    for index, (stamp, year, ahead) in enumerate(zip(written, years, aheads, strict=True)):
        notes = []
        if ahead > CLOCK_SLACK_S:
            notes.append(
                say(
                    f"DATE-OBS {stamp} is {ahead / 86400:.1f} d after this run's clock "
                    f"({clock.utc.isot[:19]}): the camera clock was set wrong, or local "
                    "time was written as UTC?",
                    "correct DATE-OBS with header_overrides",
                )
            )
        if not first <= int(year) < last:
            notes.append(
                say(
                    f"DATE-OBS {stamp} is outside {first}-{last}: a camera clock that was "
                    "never set (1970-01-01, 1980-01-01 and 2000-01-01 are typical)?",
                    "correct DATE-OBS with header_overrides",
                )
            )
        days = None if away is None else away[index]
        if days is not None and abs(days) > NIGHT_SLACK_DAYS:
            notes.append(
                say(
                    f"DATE-OBS {stamp} is {abs(days):.0f} d "
                    f"{'after' if days > 0 else 'before'} the date of its night folder "
                    f"{night}: camera clock wrong?",
                    "correct DATE-OBS with header_overrides, or move the frame to its night",
                )
            )
        each.append(notes)
    return each


LST_COMMENT = "local mean sidereal time at mid-exposure"


def _lst_each(middle, location):
    """Local mean sidereal time at each of an array of mid-exposures, one
    site (text, as the LST card holds it)."""
    with _quiet_astropy():
        lst = Time(middle, location=location).sidereal_time("mean")
    return [str(text) for text in lst.to_string(unit=u.hourangle, sep=":", precision=2, pad=True)]


def target_cards(middle, location, target, ut1_error=0.0):
    """BJD_TDB of mid-exposure, altitude and airmass of the target:
    (cards, notes, airmass error). With ``ut1_error`` (s), the airmass is
    also computed that much earlier and later (the sky turns with UT1), and
    the larger change is returned as its error; else the error is None."""
    return _target_cards_each(middle.reshape(1), location, target, [ut1_error])[0]


def _target_cards_each(middle, location, target, ut1_errors):
    """:func:`target_cards` for an array of times, one site and target."""
    with _quiet_astropy():
        when = Time(middle, location=location)
        bjd = when.tdb + when.light_travel_time(target, "barycentric")
        offsets = np.array([[0.0, -error, error] for error in ut1_errors])
        moments = when[:, np.newaxis] + TimeDelta(offsets, format="sec")
        altaz = target.transform_to(AltAz(obstime=moments, location=location))
    altitudes = altaz.alt.deg[:, 0]
    secz = np.asarray(altaz.secz, dtype=float)
    each = []
    for index, ut1_error in enumerate(ut1_errors):
        cards, notes = {}, []
        cards["BJD_TDB"] = (round(float(bjd.jd[index]), 9), "barycentric JD of mid-exposure, TDB")
        altitude = float(altitudes[index])
        airmass_error = None
        if altitude > 0:
            cards["AIRMASS"] = (round(float(secz[index, 0]), 4), "sec(z) at mid-exposure")
            if ut1_error:
                airmass_error = float(np.max(np.abs(secz[index, 1:] - secz[index, 0])))
        else:
            notes.append(
                f"target below the horizon at mid-exposure (altitude {altitude:.1f} deg): no "
                "airmass. Check the site (SITELONG east-positive), the target and DATE-OBS"
            )
        cards["ALTITUDE"] = (round(altitude, 4), "target altitude at mid-exposure, deg")
        each.append((cards, notes, airmass_error))
    return each


def camera_stamp_card(date_obs, stamp_is="start"):
    """The camera's DATE-OBS, kept as written (its scale is UTC)."""
    where = {"start": "start", "mid": "middle", "end": "end"}[stamp_is]
    return {"UTC-OBS": (str(date_obs).strip(), f"camera's DATE-OBS, UTC, exposure {where}")}


def frame_cards(
    date_obs, header, exposure_s, date_obs_is="start", site=None, light=True, night=None
):
    """Everything a frame's header should say about its times: (cards, notes).

    ``date_obs`` is the stamp the plan read (configured keyword, overrides
    applied); ``header`` gives the site and target (any mapping); ``night``
    the night folder's name, to check the camera clock against. A frame
    without a usable stamp gets TIMENOTE saying why, and no times. LST needs
    the site; BJD_TDB, altitude and airmass are for science frames (``light``)
    with the site and the target known. Every note is also in TIMENOTE.
    """
    return frames_cards([(date_obs, header, exposure_s, light)], date_obs_is, site, night)[0]


@_quiet_astropy()
def frames_cards(frames, date_obs_is="start", site=None, night=None):
    """:func:`frame_cards` of many frames of one night: a list of (cards,
    notes) in their order; ``frames`` are (date_obs, header, exposure_s,
    light) tuples.

    Each quantity is computed for all the frames in one astropy call (the
    sky's for all frames of one site and target): frame by frame, astropy's
    set-up of each call was most of the cost (~12 ms a light, ~4 ms a bias;
    a night log of 41 frames 0.24 s), and the values are the same."""
    results = [None] * len(frames)
    usable, stamps = [], []
    for index, (date_obs, *_) in enumerate(frames):
        try:
            stamps.append(parse_date_obs(date_obs))
            usable.append(index)
        except TimeProblem as exc:
            results[index] = _times_unknown(date_obs, date_obs_is, exc)
    if not usable:
        return results
    exposures = [frames[index][2] for index in usable]
    start, middle, end = exposure_span(Time(stamps), exposures, date_obs_is)
    spans = _time_cards_each(start, middle, end)
    clock = _clock_notes_each(start, end, night)
    leap = _leap_second_notes(end)
    places = [
        (site_of(frames[index][1], site), target_of(frames[index][1]) if frames[index][3] else None)
        for index in usable
    ]
    # UT1 matters only where the site is known (LST, airmass): a master's
    # frames never need the Earth-orientation table
    sited = [position for position, (location, _) in enumerate(places) if location is not None]
    ut1 = dict(zip(sited, _ut1_quality_each(middle[sited]), strict=True)) if sited else {}
    lst, sky = _sky_each(middle, places, ut1)
    for position, index in enumerate(usable):
        date_obs, _, _, light = frames[index]
        cards = camera_stamp_card(date_obs, date_obs_is) | spans[position]
        notes = clock[position] + [note for note in [leap[position]] if note]
        location, target = places[position]
        ut1_error, what = ut1.get(position, (0.0, None))
        airmass_error = None
        if location is not None:
            cards["LST"] = (lst[position], LST_COMMENT)
        if location is not None and target is not None:
            more, more_notes, airmass_error = sky[position]
            cards.update(more)
            notes += more_notes
        elif light:
            missing = [n for n, v in (("site", location), ("target", target)) if v is None]
            notes.append(f"no BJD_TDB or airmass: {' and '.join(missing)} unknown")
        if what:
            notes.append(ut1_note(what, ut1_error, airmass_error))
        if notes:
            cards["TIMENOTE"] = ("; ".join(notes), "what limits these times")
        results[index] = (cards, notes)
    return results


def _sky_each(middle, places, ut1):
    """LST (per site) and target cards (per site and target) of the frames
    at ``places`` ((location, target) each): {position: value} for each."""
    sites, targets = {}, {}
    for position, (location, target) in enumerate(places):
        if location is not None:
            sites.setdefault(id(location), (location, []))[1].append(position)
            if target is not None:
                targets.setdefault((id(location), id(target)), (location, target, []))[2].append(
                    position
                )
    lst, sky = {}, {}
    for location, positions in sites.values():
        lst.update(zip(positions, _lst_each(middle[positions], location), strict=True))
    for location, target, positions in targets.values():
        errors = [ut1[position][0] for position in positions]
        sky.update(
            zip(
                positions,
                _target_cards_each(middle[positions], location, target, errors),
                strict=True,
            )
        )
    return lst, sky


def _times_unknown(date_obs, date_obs_is, problem):
    """The cards of a frame without a usable stamp: TIMENOTE says why."""
    note = f"times unknown: {problem}"
    # an unusable DATE-OBS leaves the header (kept in UTC-OBS): no time
    # keyword may look valid when it is not
    cards = {"DATE-OBS": None, "MJD-OBS": None, "TIMENOTE": note}
    if date_obs is not None and str(date_obs).strip():
        cards |= camera_stamp_card(date_obs, date_obs_is)
    return cards, [note]


def master_cards(frames, stamp_is, night=None):
    """Times of a master: when its frames were taken, first start to last
    end on TT (combined_cards, without TOTEXP: the summed exposure of a
    master means nothing to its user). ``frames`` are dicts with raw,
    date_obs and exposure. Returns (cards, notes, frame notes), a frame's
    note naming its raw file."""
    spans, frame_notes = [], []
    each = frames_cards(
        [(frame["date_obs"], {}, frame["exposure"], False) for frame in frames],
        stamp_is,
        night=night,
    )
    for frame, (cards, notes) in zip(frames, each, strict=True):
        spans.append(span_of(cards))
        frame_notes += [f"{frame['raw']}: {note}" for note in notes]
    cards, notes = combined_cards(spans, [frame["exposure"] for frame in frames])
    cards.pop("TOTEXP")
    return cards, notes, frame_notes


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
        "time_note": str(card_value(cards, "TIMENOTE", "")),
    }


def _weighted_mean(values, weights):
    """Mean about the first value, so Julian dates keep their microseconds."""
    values = np.asarray(values, dtype=float)
    return float(values[0] + np.average(values - values[0], weights=weights))


@_quiet_astropy()
def combined_cards(spans, exposures):
    """Times of a product combined from frames: (cards, notes).

    DATE-OBS and DATE-BEG are the first frame's start, DATE-END the last
    one's end, DATE-AVG/MJD-AVG and BJD_TDB the exposure-weighted mean of the
    frames' mid-exposures (plain mean for zero-second frames, i.e. biases),
    AIRMASS the exposure-weighted mean airmass, TOTEXP the summed exposure,
    all on TT. With any frame's time unknown there are no times, only
    TIMENOTE: a span missing a frame would look exact and be wrong. Frames
    with notes on their times (UT1 predicted, camera clock) are counted in
    TIMENOTE; each frame's own is in its header and the frames table.
    """
    exposures = np.asarray(exposures, dtype=float)
    total = float(exposures.sum())
    cards = {"TOTEXP": (round(total, 6), "total exposure of the frames combined, s")}
    cards |= {"UTC-OBS": None}  # a single frame's stamp, if the header had one
    unknown = sum(1 for s in spans if not s["date_beg_tt"])
    if unknown or not spans:
        note = f"times unknown: {unknown} of {len(spans)} frames have no usable DATE-OBS"
        return cards | {"DATE-OBS": None, "MJD-OBS": None, "TIMENOTE": note}, [note]
    weights = exposures if total > 0 else np.ones(len(spans))
    begins = Time([s["date_beg_tt"] for s in spans], format="isot", scale="tt")
    ends = Time([s["date_end_tt"] for s in spans], format="isot", scale="tt")
    middle = Time(
        _weighted_mean([s["mjd_avg_tt"] for s in spans], weights), format="mjd", scale="tt"
    )
    start, end = begins[np.argmin(begins.mjd)], ends[np.argmax(ends.mjd)]
    cards |= time_cards(start, middle, end)
    cards["DATE-OBS"] = (start.isot, "start of the first frame, TT")
    cards["MJD-OBS"] = (cards["MJD-BEG"][0], "start of the first frame, MJD on TT")
    cards["DATE-AVG"] = (middle.isot, "exposure-weighted mean mid-exposure, TT")
    cards["MJD-AVG"] = (round(float(middle.mjd), 9), "exposure-weighted mean mid-exposure, MJD TT")
    notes = []
    for key, column, comment in (
        ("BJD_TDB", "bjd_tdb", "exposure-weighted mean BJD of middles, TDB"),
        ("AIRMASS", "airmass", "exposure-weighted mean airmass"),
    ):
        values = np.array([s[column] for s in spans], dtype=float)
        if np.isfinite(values).all():
            cards[key] = (round(_weighted_mean(values, weights), 9), comment)
        elif np.isfinite(values).any():
            notes.append(f"no {key}: {int((~np.isfinite(values)).sum())} frames lack it")
    noted = [s.get("time_note") for s in spans if s.get("time_note")]
    if noted:
        notes.append(
            f"{len(noted)} of {len(spans)} frames have notes on their times (each in its "
            f"header and the frames table), e.g. {noted[0]}"
        )
    if notes:
        cards["TIMENOTE"] = ("; ".join(notes), "what limits these times")
    return cards, notes
