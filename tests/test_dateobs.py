"""The one DATE-OBS parser: every form it accepts, as the inventory reads
it (a datetime) and as times reads it (an astropy Time)."""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccdreduce import dateobs, times

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
#: (as written, the instant in UTC, ISO with microseconds)
FORMS = [
    ("2025-03-01T20:00:30", "2025-03-01T20:00:30.000000"),
    ("2025-03-01T20:00:30.25", "2025-03-01T20:00:30.250000"),
    ("2025-03-01T20:00:30.1234567", "2025-03-01T20:00:30.123456"),  # datetime: to the us
    ("2025-03-01T20:00:30,5", "2025-03-01T20:00:30.500000"),
    ("  2025-03-01 20:00:30.5  ", "2025-03-01T20:00:30.500000"),
    ("2025-03-01T20:00:30Z", "2025-03-01T20:00:30.000000"),
    ("2025-03-01T20:00", "2025-03-01T20:00:00.000000"),
    ("2025-03-01T20", "2025-03-01T20:00:00.000000"),
    ("20250301T200030", "2025-03-01T20:00:30.000000"),
    ("2025-03-01T22:00:30+02:00", "2025-03-01T20:00:30.000000"),
    ("2025-03-01T22:30:30+0230", "2025-03-01T20:00:30.000000"),
    ("2025-03-01T15:00:30-05", "2025-03-01T20:00:30.000000"),
    ("2025-03-02T01:00:30+05:00", "2025-03-01T20:00:30.000000"),  # across midnight
]


@pytest.mark.parametrize("value, instant", FORMS)
def test_each_form_gives_the_same_instant_to_the_inventory_and_to_times(value, instant):
    expected = datetime.fromisoformat(instant).replace(tzinfo=UTC)
    assert dateobs.utc_datetime(value) == expected
    # times keeps every decimal as written (rounded, not cut, to the microsecond here)
    time = times.parse_date_obs(value)
    assert time.scale == "utc"
    assert abs((time.to_datetime(timezone=UTC) - expected).total_seconds()) < 1.5e-6


@pytest.mark.parametrize("value", [v for v, _ in FORMS])
def test_the_inventory_reads_what_it_read_before_with_fromisoformat(value):
    """Every form Python's fromisoformat accepted (the inventory's parser
    before) gives the same instant."""
    before = datetime.fromisoformat(value.strip())
    before = before if before.tzinfo else before.replace(tzinfo=UTC)
    assert dateobs.utc_datetime(value) == before


def test_times_keeps_decimals_past_the_microsecond_and_leap_seconds():
    assert times.parse_date_obs("2025-03-01T20:00:30.1234567").utc.precision == 3
    assert times.parse_date_obs("2025-03-01T20:00:30.1234567").jd2 == (
        times.Time("2025-03-01T20:00:30.1234567", scale="utc").jd2
    )
    leap = times.parse_date_obs("2016-12-31T23:59:60.5")
    assert (times.parse_date_obs("2017-01-01T00:00:00") - leap).sec == pytest.approx(0.5)
    # the inventory: a leap second is the next minute's start
    assert dateobs.utc_datetime("2016-12-31T23:59:60.5") == datetime(
        2017, 1, 1, 0, 0, 0, 500000, UTC
    )


@pytest.mark.parametrize("value", ["2025-03-01", "20250301"])
def test_a_date_alone_is_midnight_to_the_inventory_and_refused_by_times(value):
    assert dateobs.utc_datetime(value) == datetime(2025, 3, 1, tzinfo=UTC)
    assert dateobs.parse(value).time is None
    with pytest.raises(times.TimeProblem, match="no time of day"):
        times.parse_date_obs(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "01/03/2025 20:00",
        "2025-3-1T20:00:00",
        "2025-03-01T20:00:00 UT",
        20250301.5,
    ],
)
def test_what_is_not_a_date_is_none(value):
    assert dateobs.parse(value) is None and dateobs.utc_datetime(value) is None


def test_a_date_not_in_the_calendar_is_none_to_the_inventory_and_an_error_in_times():
    assert dateobs.parse("2025-02-30T20:00:00") is not None  # the form is right
    assert dateobs.utc_datetime("2025-02-30T20:00:00") is None
    with pytest.raises(times.TimeProblem, match="DATE-OBS = '2025-02-30T20:00:00'"):
        times.parse_date_obs("2025-02-30T20:00:00")


def test_the_parser_needs_no_astropy():
    code = "import sys, ccdreduce.dateobs, ccdreduce.inventory; print('astropy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=SCRIPTS
    ).stdout
    assert out.strip() == "False"
