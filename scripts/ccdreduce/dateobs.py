"""DATE-OBS as camera software writes it: the one parser.

Standard library only: the inventory reads DATE-OBS on every Snakemake
parse and must not import astropy for it. times.parse_date_obs turns a
parsed stamp into an astropy Time; the inventory into a datetime.

Accepted, ISO 8601 calendar dates (FITS 4.0 writes the first form):

- ``YYYY-MM-DDThh:mm:ss[.fff]``, any number of decimals, '.' or ',';
- a space for the 'T' (MaxIm DL and others);
- the time of day to the minute or the hour: ``YYYY-MM-DDThh:mm``,
  ``YYYY-MM-DDThh`` (the rest is zero);
- the basic format without separators: ``YYYYMMDDThhmmss``;
- 60 seconds, a leap second (``2016-12-31T23:59:60.5``);
- a trailing ``Z`` (UTC), or an offset from UTC, ``+hh:mm``, ``+hhmm`` or
  ``+hh`` (the stamp is local time, UTC + offset);
- a date alone, ``YYYY-MM-DD`` or ``YYYYMMDD``: a date without a time of
  day. The inventory takes it as midnight UTC (a night's date needs no
  more); times refuses it, as an exposure cannot be placed in time.

Anything else is not a date (None from :func:`parse`). The calendar (month
13, 30 February) is checked by whoever turns the stamp into a time.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_STAMP = re.compile(
    r"(?P<year>[0-9]{4})(?P<dash>-?)(?P<month>[0-9]{2})(?P=dash)(?P<day>[0-9]{2})"
    r"(?:[T ](?P<hour>[0-9]{2})"
    r"(?:(?P<colon>:?)(?P<minute>[0-9]{2})"
    r"(?:(?P=colon)(?P<second>[0-9]{2})(?P<fraction>[.,][0-9]+)?)?)?)?"
    r"(?P<zone>Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)


@dataclass(frozen=True)
class Stamp:
    """A DATE-OBS taken apart: the date, the time of day as written (None
    for a date alone) and the offset of that time from UTC."""

    date: str  # YYYY-MM-DD
    time: str | None  # hh:mm:ss[.fff], decimals as written
    offset_minutes: int = 0  # local time minus UTC

    @property
    def isot(self):
        """'YYYY-MM-DDThh:mm:ss[.fff]' as written (before the offset), or
        the date alone."""
        return self.date if self.time is None else f"{self.date}T{self.time}"

    def utc_datetime(self):
        """An aware UTC datetime (a date alone: midnight), to the
        microsecond; ValueError for a date not in the calendar."""
        year, month, day = map(int, self.date.split("-"))
        hour, minute, second, micro = 0, 0, 0, 0
        if self.time is not None:
            hms, _, fraction = self.time.partition(".")
            hour, minute, second = map(int, hms.split(":"))
            micro = int(fraction[:6].ljust(6, "0"))
        # a leap second is the next minute's start to a datetime
        leap = timedelta(seconds=1) if second == 60 else timedelta(0)
        stamp = datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=UTC)
        return stamp + leap - timedelta(minutes=self.offset_minutes)


def parse(value):
    """The Stamp of a DATE-OBS value, or None when it is empty or not one of
    the accepted forms (see the module's docstring)."""
    if value is None:
        return None
    match = _STAMP.fullmatch(str(value).strip())
    if match is None:
        return None
    part = match.groupdict()
    date = f"{part['year']}-{part['month']}-{part['day']}"
    if part["hour"] is None:
        return Stamp(date, None)
    time = f"{part['hour']}:{part['minute'] or '00'}:{part['second'] or '00'}"
    if part["fraction"]:
        time += "." + part["fraction"][1:]
    return Stamp(date, time, _offset_minutes(part["zone"]))


def _offset_minutes(zone):
    if not zone or zone == "Z":
        return 0
    digits = zone[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:] or 0)
    return minutes if zone[0] == "+" else -minutes


def utc_datetime(value):
    """DATE-OBS as an aware UTC datetime, or None when it is not a usable
    date (a date alone is midnight UTC)."""
    stamp = parse(value)
    if stamp is None:
        return None
    try:
        return stamp.utc_datetime()
    except ValueError:
        return None
