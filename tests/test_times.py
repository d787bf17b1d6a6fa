"""Times on named scales, against independent reference values."""

import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.io import fits
from astropy.time import Time
from conftest import REAL_NIGHT

from ccdreduce import times


def test_utc_to_tai_and_tt_julian_date():
    t = times.parse_date_obs("2016-09-15T14:36:00")
    assert t.tai.isot == "2016-09-15T14:36:36.000"
    assert abs(t.tt.jd - 2457647.1091225) < 1e-7  # 9 ms


def test_local_mean_sidereal_time_at_264_degrees():
    t = Time(times.parse_date_obs("2016-09-15T14:36:00"), location=(264 * u.deg, 0 * u.deg))
    lst = t.sidereal_time("mean")
    assert abs(lst.hour - (7 + 51 / 60 + 56.77 / 3600)) * 3600 < 0.02  # seconds of time


def test_an_exposure_across_the_2016_leap_second():
    start = times.parse_date_obs("2016-12-31T23:59:59.5")
    start, middle, end = times.exposure_span(start, 2.0)
    assert middle.utc.iso == "2016-12-31 23:59:60.500"  # the leap second itself
    assert end.utc.isot == "2017-01-01T00:00:00.500"  # 2 s later, one of them inserted
    assert abs((end.tt - start.tt).sec - 2.0) < 1e-6
    cards = times.time_cards(start, middle, end)
    assert cards["TIMESYS"][0] == "TT"
    # TAI-UTC is 37 s after the leap second, 36 s before; TT = TAI + 32.184 s
    assert cards["DATE-AVG"][0] == middle.tt.isot == "2017-01-01T00:01:08.684"


def test_mid_exposure_stamps_are_moved_to_the_start():
    stamp = times.parse_date_obs("2025-03-01T20:00:30")
    start, middle, end = times.exposure_span(stamp, 60.0, stamp_is="mid")
    assert start.utc.isot == "2025-03-01T20:00:00.000" and abs((middle - stamp).sec) < 1e-6
    assert end.utc.isot == "2025-03-01T20:01:00.000"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2025-03-01T20:00:00Z", "2025-03-01T20:00:00.000"),
        ("2025-03-01 20:00:00.25", "2025-03-01T20:00:00.250"),
    ],
)
def test_trailing_z_and_a_space_for_t_are_read(value, expected):
    assert times.parse_date_obs(value).utc.isot == expected


@pytest.mark.parametrize(
    "value, says",
    [
        (None, "no DATE-OBS"),
        ("2025-03-01", "no time of day"),
        ("01/03/2025 20:00", "not an ISO 8601"),
        ("2025-13-01T20:00:00", "DATE-OBS = '2025-13-01T20:00:00'"),
    ],
)
def test_unusable_dates_are_reported_with_a_fix(value, says):
    with pytest.raises(times.TimeProblem, match=says):
        times.parse_date_obs(value)


def test_bjd_tdb_against_astropy_light_travel_time_computed_here():
    site = EarthLocation.from_geodetic(-70.97 * u.deg, 41.988 * u.deg, 30 * u.m)
    star = SkyCoord("02h30m36.1s", "+42d15m11.9s")
    middle = times.parse_date_obs("2022-10-30T01:20:17")
    cards, notes, _ = times.target_cards(middle, site, star)
    t = Time("2022-10-30T01:20:17", scale="utc", location=site)
    expected = (t.tdb + t.light_travel_time(star, kind="barycentric")).jd
    assert abs(cards["BJD_TDB"][0] - expected) * 86400 < 1e-3  # under a millisecond
    assert abs(cards["BJD_TDB"][0] - t.tdb.jd) * 86400 > 100  # the correction is real (~minutes)
    assert notes == []  # 2022 is inside the bundled tables


def test_header_site_and_target_in_maxim_style():
    header = fits.Header()
    header["SITELAT"], header["SITELONG"] = 41.988, -70.97
    header["OBJCTRA"], header["OBJCTDEC"] = "02 30 36.1", "+42 15 11.9"
    site, target = times.site_of(header), times.target_of(header)
    assert abs(site.lat.deg - 41.988) < 1e-9 and abs(site.lon.deg + 70.97) < 1e-9
    assert abs(target.ra.deg - 37.65042) < 1e-4 and abs(target.dec.deg - 42.25331) < 1e-4
    assert times.site_of(fits.Header()) is None and times.target_of(fits.Header()) is None


@pytest.mark.skipif(not REAL_NIGHT.exists(), reason="../shared/data not present")
def test_the_real_night_gets_bjd_and_a_plausible_airmass():
    path = next(p for p in sorted(REAL_NIGHT.rglob("SN2022yid*.fit")) if p.is_file())
    header = fits.getheader(path)
    start = times.parse_date_obs(header["DATE-OBS"])
    _, middle, _ = times.exposure_span(start, header["EXPTIME"])
    cards, _, _ = times.target_cards(middle, times.site_of(header), times.target_of(header))
    # MaxIm's JD is the UTC start: BJD_TDB of mid-exposure is later by the
    # half exposure, TT-UTC (69.184 s) and the light travel time (< 8.5 min)
    later = (cards["BJD_TDB"][0] - header["JD"]) * 86400
    assert 60 + 69.184 - 500 < later < 60 + 69.184 + 500
    assert 1.0 <= cards["AIRMASS"][0] < 2.0  # an evening target from Massachusetts
    assert np.isfinite(cards["ALTITUDE"][0])


def test_a_frame_without_a_usable_time_says_so_and_one_with_site_and_target_gets_all():
    header = fits.Header()
    cards, notes = times.frame_cards("2022-10-30", header, 120.0)
    assert "no time of day" in cards["TIMENOTE"] and "no time of day" in notes[0]
    # no time keyword may look valid: DATE-OBS and MJD-OBS leave, the value stays in UTC-OBS
    assert cards["DATE-OBS"] is None and cards["MJD-OBS"] is None and "TIMESYS" not in cards
    assert cards["UTC-OBS"][0] == "2022-10-30"
    cards, notes = times.frame_cards("2022-10-30T01:19:17", header, 120.0)
    assert cards["DATE-AVG"][0] == "2022-10-30T01:21:26.184"  # +60 s, +69.184 s TT-UTC
    assert "BJD_TDB" not in cards and "site and target unknown" in notes[0]
    header["OBJCTRA"], header["OBJCTDEC"] = "02 30 36.1", "+42 15 11.9"
    site = {"latitude": 41.988, "longitude": -70.97, "elevation": 30.0}
    cards, notes = times.frame_cards("2022-10-30T01:19:17", header, 120.0, site=site)
    assert {"BJD_TDB", "AIRMASS", "LST", "MJD-AVG", "TIMESYS"} <= set(cards) and notes == []
    assert "JD" not in cards and "TIMENOTE" not in cards  # never a Julian date on UTC
    # DATE-OBS and MJD-OBS on TIMESYS (TT): the start; the camera's UTC stamp in UTC-OBS
    assert cards["DATE-OBS"][0] == cards["DATE-BEG"][0] == "2022-10-30T01:20:26.184"
    assert cards["MJD-OBS"][0] == cards["MJD-BEG"][0]
    assert cards["UTC-OBS"][0] == "2022-10-30T01:19:17"
    # a calibration frame: LST (the site is known), no BJD or airmass of a target
    cards, notes = times.frame_cards("2022-10-30T01:19:17", header, 0.0, site=site, light=False)
    assert "LST" in cards and "BJD_TDB" not in cards and "AIRMASS" not in cards and notes == []


def frame_span(date_obs, exposure, **kw):
    site = {"latitude": 41.988, "longitude": -70.97, "elevation": 30.0}
    header = {"OBJCTRA": "02 30 36.1", "OBJCTDEC": "+42 15 11.9"}
    cards, _ = times.frame_cards(date_obs, header, exposure, site=site, **kw)
    return times.span_of(cards)


def test_a_stack_spans_first_start_to_last_end_with_exposure_weighted_middle():
    # 60 s from 01:00:00 and 120 s from 01:10:00 UTC: middles 01:00:30 and
    # 01:11:00, weighted 1:2 -> 01:07:30 UTC = 01:08:39.184 TT
    spans = [frame_span("2022-10-30T01:00:00", 60.0), frame_span("2022-10-30T01:10:00", 120.0)]
    cards, notes = times.combined_cards(spans, [60.0, 120.0])
    assert cards["DATE-BEG"][0] == "2022-10-30T01:01:09.184"
    assert cards["DATE-END"][0] == "2022-10-30T01:13:09.184"
    assert cards["DATE-AVG"][0] == "2022-10-30T01:08:39.184"
    expected = Time("2022-10-30T01:07:30", scale="utc").tt.mjd
    assert abs(cards["MJD-AVG"][0] - expected) * 86400 < 1e-3
    assert cards["TOTEXP"][0] == 180.0 and cards["TIMESYS"][0] == "TT"
    # BJD: the weighted mean of the two frames' own BJDs (light time changes slowly)
    bjd = (spans[0]["bjd_tdb"] + 2 * spans[1]["bjd_tdb"]) / 3
    assert abs(cards["BJD_TDB"][0] - bjd) * 86400 < 1e-3
    assert 1.0 < cards["AIRMASS"][0] < 2.0 and notes == []


def test_a_stack_with_a_frame_of_unknown_time_has_no_times_and_says_so():
    spans = [frame_span("2022-10-30T01:00:00", 60.0), frame_span("2022-10-30", 60.0)]
    cards, notes = times.combined_cards(spans, [60.0, 60.0])
    assert "DATE-BEG" not in cards and "1 of 2 frames" in cards["TIMENOTE"]
    assert cards["DATE-OBS"] is None and cards["MJD-OBS"] is None  # none of a reference's
    assert cards["TOTEXP"][0] == 120.0


def test_a_master_bias_of_zero_second_frames_has_a_plain_mean_middle():
    spans = [frame_span(f"2022-10-30T00:0{i}:00", 0.0, light=False) for i in range(3)]
    cards, _ = times.combined_cards(spans, [0.0, 0.0, 0.0])
    assert cards["DATE-AVG"][0] == "2022-10-30T00:02:09.184" and "BJD_TDB" not in cards


SITE = {"latitude": 41.988, "longitude": -70.97, "elevation": 30.0}
STAR = {"OBJCTRA": "02 30 36.1", "OBJCTDEC": "+42 15 11.9"}


@pytest.fixture
def offline(monkeypatch):
    """No network: any download attempt fails the test."""
    import urllib.request

    import astropy.utils.data

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(astropy.utils.data, "download_file", no_network)
    times.use_iers("bundled")


def fix_clock(monkeypatch, when):
    """The run's clock set to ``when`` (a Time), for astropy and for us."""
    monkeypatch.setattr(Time, "now", classmethod(lambda cls: when.utc))
    assert times.now().utc.isot == when.utc.isot


def table_mjd(which):
    """The bundled table's first measured day, first predicted day or last day."""
    table = times.earth_orientation()
    mjd = {
        "first": table["MJD"][0].to_value(u.d),
        "predicted": table.meta["predictive_mjd"],
        "last": table["MJD"][-1].to_value(u.d),
    }[which]
    return Time(float(mjd), format="mjd", scale="utc")


def strict_frame_cards(date_obs, **kw):
    """frame_cards with every warning raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return times.frame_cards(date_obs, STAR, 60.0, site=SITE, **kw)


def independent_lst(date_obs, exposure, ut1_utc=None):
    """Mean LST at mid-exposure computed here, UT1-UTC given or from the table."""
    t = Time(date_obs, scale="utc", location=SITE_LOCATION) + exposure / 2 * u.s
    if ut1_utc is not None:
        t.delta_ut1_utc = ut1_utc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return t.sidereal_time("mean").hour


SITE_LOCATION = EarthLocation.from_geodetic(-70.97 * u.deg, 41.988 * u.deg, 30 * u.m)


def lst_hours(cards):
    h, m, s = (float(x) for x in cards["LST"][0].split(":"))
    return h + m / 60 + s / 3600


def test_a_date_inside_the_measured_table_has_full_precision_and_no_note(offline, monkeypatch):
    fix_clock(monkeypatch, Time("2026-11-28T12:00:00", scale="utc"))
    cards, notes = strict_frame_cards("2025-03-02T01:00:00")
    assert {"BJD_TDB", "LST", "AIRMASS"} <= set(cards) and notes == []
    assert abs(lst_hours(cards) - independent_lst("2025-03-02T01:00:00", 60.0)) * 3600 < 0.01


@pytest.mark.parametrize("clock_days_after_predictions", [60, 400, 3650])
def test_a_date_covered_only_by_predictions_is_computed_whatever_the_clock(
    offline, monkeypatch, clock_days_after_predictions
):
    # astropy's default (IERS_Auto) raised "predictive values that are more
    # than 30.0 days old" here once the clock passed predictions + 30 days
    predicted = table_mjd("predicted")
    fix_clock(monkeypatch, predicted + clock_days_after_predictions * u.day)
    date_obs = (predicted + 30 * u.day).isot[:19]
    cards, notes = strict_frame_cards(date_obs)
    assert {"BJD_TDB", "LST", "AIRMASS"} <= set(cards)
    [note] = [n for n in notes if "UT1" in n]
    assert "predicted by the IERS 30 d after its last measurement" in note
    # IERS Bulletin A: 0.00025 * 30**0.75 s = 3.2 ms of UT1 error
    assert "good to ~3.2 ms of time (0.048 arcsec)" in note and "airmass to ~" in note
    assert "BJD_TDB do not depend on UT1" in note and cards["TIMENOTE"][0] == "; ".join(notes)
    assert abs(lst_hours(cards) - independent_lst(date_obs, 60.0)) * 3600 < 0.01


def test_a_date_beyond_the_tables_holds_the_last_ut1_and_says_by_how_much(offline, monkeypatch):
    last = table_mjd("last")
    fix_clock(monkeypatch, last + 3 * 365 * u.day)
    date_obs = (last + 2 * 365 * u.day).isot[:19]
    cards, notes = strict_frame_cards(date_obs)
    assert {"BJD_TDB", "LST", "AIRMASS"} <= set(cards)
    held = float(times.earth_orientation()["UT1_UTC"][-1].to_value(u.s))
    [note] = [n for n in notes if "UT1" in n]
    assert f"after the IERS table (ends {last.isot[:10]}): UT1-UTC held at {held:+.3f} s" in note
    bound = 0.9 + abs(held)  # |UT1-UTC| < 0.9 s by the definition of UTC
    assert f"good to ~{bound:.2g} s of time" in note
    assert abs(lst_hours(cards) - independent_lst(date_obs, 60.0, held)) * 3600 < 0.01
    assert any("leap-second table expires" in n and "1 s" in n for n in notes)
    # the airmass error said is what moving UT1 by the bound does to the airmass
    said = float(note.split("airmass to ~")[1].split(";")[0])
    shifted, _, _ = times.target_cards(
        times.parse_date_obs(date_obs) + 30 * u.s + bound * u.s,
        SITE_LOCATION,
        times.target_of(STAR),
    )
    assert abs(shifted["AIRMASS"][0] - cards["AIRMASS"][0]) <= said * 1.5 + 1e-4


def test_bjd_tdb_does_not_depend_on_ut1_beyond_microseconds(offline):
    star = times.target_of(STAR)
    t = Time("2031-11-01T03:00:30", scale="utc", location=SITE_LOCATION)
    bjds = []
    for ut1_utc in (-0.9, 0.0, 0.9):
        t.delta_ut1_utc = ut1_utc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bjds.append((t.tdb + t.light_travel_time(star, "barycentric")).jd)
    assert np.ptp(bjds) * 86400 < 5e-6  # seconds


def test_a_date_before_the_tables_is_computed_and_said(offline, monkeypatch):
    fix_clock(monkeypatch, Time("2026-11-28T12:00:00", scale="utc"))
    date_obs = (table_mjd("first") - 400 * u.day).isot[:19]
    cards, notes = strict_frame_cards(date_obs)
    assert {"BJD_TDB", "LST"} <= set(cards)
    assert any("before the IERS table" in n and "held at" in n for n in notes)


@pytest.mark.parametrize(
    "date_obs, night, says",
    [
        ("2027-11-29T03:00:00", None, "1.0 d after this run's clock (2027-11-28T03:00:00)"),
        ("1970-01-01T00:00:07", None, "outside 1990-2100: a camera clock that was never set"),
        ("2000-01-01T00:00:00", "2027-11-27", "10192 d before the date of its night folder"),
        ("2080-06-01T00:00:00", None, "d after this run's clock (2027-11-28T03:00:00)"),
    ],
)
def test_a_camera_clock_set_wrong_is_noted_not_a_crash(offline, monkeypatch, date_obs, night, says):
    fix_clock(monkeypatch, Time("2027-11-28T03:00:00", scale="utc"))
    cards, notes = strict_frame_cards(date_obs, night=night)
    assert says in cards["TIMENOTE"][0] and any(says in n for n in notes)
    assert "header_overrides" in cards["TIMENOTE"][0]  # the fix
    assert {"DATE-OBS", "MJD-OBS", "LST", "BJD_TDB"} <= set(cards)  # computed as written


def test_a_night_of_yesterday_by_the_fixed_clock_has_no_clock_note(offline, monkeypatch):
    fix_clock(monkeypatch, Time("2027-11-28T12:00:00", scale="utc"))
    _, notes = strict_frame_cards("2027-11-28T02:00:00", night="2027-11-27")
    assert not any("clock" in n or "night folder" in n for n in notes)


def test_downloading_iers_tables_is_opt_in_and_falls_back_offline(offline):
    note = times.use_iers("download")  # the network is refused by the fixture
    assert "download failed" in note and "bundled IERS tables serve" in note
    assert times.earth_orientation().meta["data_path"].endswith("finals2000A.all")
    assert times.use_iers("bundled") is None
    with pytest.raises(ValueError, match="times.iers = 'ftp'"):
        times.use_iers("ftp")


def test_time_cards_read_back_by_astropy_wcs_without_a_fix(offline):
    from astropy.wcs import WCS

    cards, _ = strict_frame_cards("2025-03-02T01:00:00")
    header = fits.PrimaryHDU(np.zeros((4, 5), np.float32)).header
    for key, value in cards.items():
        header[key] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 'datfix' and any other fix would raise
        wcs = WCS(header)
    assert wcs.wcs.timesys == "TT" and wcs.wcs.mjdobs == wcs.wcs.mjdbeg
    start = Time(header["DATE-OBS"], scale=header["TIMESYS"].lower())
    assert abs((start - Time("2025-03-02T01:00:00", scale="utc")).sec) < 1e-3
    assert header["UTC-OBS"] == "2025-03-02T01:00:00" and "UTC" in header.comments["UTC-OBS"]


def test_a_master_spans_its_frames_without_a_total_exposure_and_names_noted_files():
    frames = [
        {"raw": "n/dark1.fit", "date_obs": "2025-03-02T01:00:00", "exposure": 60.0},
        {"raw": "n/dark2.fit", "date_obs": "2025-03-02T01:02:00", "exposure": 60.0},
        {"raw": "n/dark3.fit", "date_obs": "1970-01-01T00:00:00", "exposure": 60.0},
    ]
    cards, notes, frame_notes = times.master_cards(frames[:2], "start", night="2025-03-01")
    assert "TOTEXP" not in cards and notes == [] and frame_notes == []
    assert times.card_value(cards, "DATE-BEG") == Time("2025-03-02T01:00:00", scale="utc").tt.isot
    assert times.card_value(cards, "DATE-END") == Time("2025-03-02T01:03:00", scale="utc").tt.isot
    _, _, frame_notes = times.master_cards(frames, "start", night="2025-03-01")
    assert len(frame_notes) >= 1 and frame_notes[0].startswith("n/dark3.fit: ")


def test_the_bundled_iers_table_is_parsed_once_per_machine_and_read_back_the_same(
    tmp_path, monkeypatch
):
    from astropy.utils import iers

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    parsed = iers.IERS_A.open(iers.IERS_A_FILE)
    first = times.bundled_table()  # parsed, and kept
    (kept,) = (tmp_path / "ccdreduce").glob("iers_a-*.pickle")
    again = times.bundled_table()  # read back
    when = Time(["2025-03-02T01:00:00", "2026-11-28T00:00:00"], scale="utc")
    for table in (first, again):
        assert np.array_equal(table.ut1_utc(when).value, parsed.ut1_utc(when).value)
        assert np.array_equal(table.pm_xy(when)[0].value, parsed.pm_xy(when)[0].value)
    assert len(again) == len(parsed) and again.meta["data_path"] == parsed.meta["data_path"]
    kept.write_bytes(b"not a pickle")  # spoilt: parsed again and kept anew
    spoilt = times.bundled_table()
    assert np.array_equal(spoilt.ut1_utc(when).value, parsed.ut1_utc(when).value)
    assert kept.read_bytes() != b"not a pickle"


def test_a_night_computed_together_gives_each_frame_its_own_site_target_and_times(
    offline, monkeypatch
):
    fix_clock(monkeypatch, Time("2026-11-28T12:00:00", scale="utc"))
    chile = {"SITELAT": -30.17, "SITELONG": -70.8, "SITEELEV": 2200.0}
    massachusetts = {"SITELAT": 41.988, "SITELONG": -70.97, "SITEELEV": 30.0}
    frames = [  # (date_obs, header, exposure, light)
        ("2025-03-02T01:00:00", massachusetts | STAR, 60.0, True),
        ("2025-03-02T03:00:00", chile | {"RA": 84.0, "DEC": -30.0}, 30.0, True),
        ("2025-03-02", massachusetts | STAR, 60.0, True),  # no time of day
        ("2025-03-02T01:05:00", massachusetts, 0.0, False),  # a bias: LST only
        ("2025-03-02T01:10:00", massachusetts, 60.0, True),  # a light without its target
        ("2025-03-02T02:00:00", massachusetts | STAR, 120.0, True),
    ]
    together = times.frames_cards(frames, night="2025-03-01")
    assert together == [
        times.frame_cards(d, h, e, light=light, night="2025-03-01") for d, h, e, light in frames
    ]
    # each light's airmass against astropy's AltAz at its own site, target and middle
    for index, (ra, dec) in ((0, ("02h30m36.1s", "+42d15m11.9s")), (1, (84.0, -30.0))):
        date_obs, header, exposure, _ = frames[index]
        site = EarthLocation.from_geodetic(
            header["SITELONG"] * u.deg, header["SITELAT"] * u.deg, header["SITEELEV"] * u.m
        )
        middle = Time(date_obs, scale="utc") + exposure / 2 * u.s
        star = SkyCoord(ra, dec, unit=u.deg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = star.transform_to(AltAz(obstime=middle, location=site)).secz
        assert together[index][0]["AIRMASS"][0] == pytest.approx(float(expected), abs=1e-4)
    assert together[0][0]["AIRMASS"][0] != together[5][0]["AIRMASS"][0]
    assert "no time of day" in together[2][0]["TIMENOTE"] and "DATE-BEG" not in together[2][0]
    assert "LST" in together[3][0] and "AIRMASS" not in together[3][0] and together[3][1] == []
    assert together[4][1] == ["no BJD_TDB or airmass: target unknown"]
    assert [cards["DATE-AVG"][0] for cards, _ in (together[0], together[5])] == [
        Time(t, scale="utc").tt.isot for t in ("2025-03-02T01:00:30", "2025-03-02T02:01:00")
    ]


def test_frames_without_a_site_need_no_earth_orientation_table(monkeypatch):
    # a master's frames: times on TT from the stamps alone, no UT1 to look up
    def no_table():
        raise AssertionError("the IERS table was read")

    monkeypatch.setattr(times, "earth_orientation", no_table)
    frames = [("2025-03-02T01:00:00", {}, 60.0, False), ("2025-03-02T01:02:00", {}, 0.0, False)]
    (first, notes), (second, _) = times.frames_cards(frames, night="2025-03-01")
    assert notes == [] and "LST" not in first and "TIMENOTE" not in first
    assert second["DATE-BEG"][0] == Time("2025-03-02T01:02:00", scale="utc").tt.isot
