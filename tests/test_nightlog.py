"""The night log's rows, from plan values: times where known, reasons where not."""

import numpy as np
from astropy.table import Table

from ccdreduce import nightlog

SITE_TARGET = {
    "SITELAT": 41.988,
    "SITELONG": -70.97,
    "OBJCTRA": "07 18 48.0",
    "OBJCTDEC": "-24 57 00",
}


def frame(name, kind, date_obs, exposure=30.0, problem=""):
    return {
        "file": f"n1/{name}.fits",
        "type": kind,
        "filter": "R" if kind in ("light", "flat") else "",
        "object": "NGC 2362" if kind == "light" else "",
        "exposure": exposure,
        "date_obs": date_obs,
        "site_target": SITE_TARGET,
        "problem": problem,
    }


def test_frames_are_logged_in_time_order_and_unknown_times_last_with_their_reason():
    frames = [
        frame("late", "light", "2025-03-02T01:10:00"),
        frame("dateonly", "light", "2025-03-02"),
        frame("broken", "", "", exposure=None, problem="file is empty (0 bytes)"),
        frame("bias", "bias", "2025-03-02T00:40:00", exposure=0.0),
        frame("early", "light", "2025-03-02T01:00:00"),
    ]
    log = nightlog.build(frames, {"date_obs_is": "start", "site": None}, night="2025-03-01")
    assert [f.rsplit("/", 1)[1] for f in log["file"]][:3] == [
        "bias.fits",
        "early.fits",
        "late.fits",
    ]
    early = log[log["file"] == "n1/early.fits"][0]
    assert early["utc_start"] == "2025-03-02T01:00:00.000"
    assert early["date_avg_tt"] == "2025-03-02T01:01:24.184"  # +15 s, +69.184 s
    assert 2.3 < early["airmass"] < 2.8 and early["bjd_tdb"] > 2460736.5
    bias = log[log["file"] == "n1/bias.fits"][0]
    assert bias["lst"] and np.isnan(bias["airmass"]) and np.isnan(bias["bjd_tdb"])
    dateonly = log[log["file"] == "n1/dateonly.fits"][0]
    assert dateonly["utc_start"] == "" and "no time of day" in dateonly["note"]
    broken = log[log["file"] == "n1/broken.fits"][0]
    assert "empty" in broken["note"] and np.isnan(broken["exposure"])
    text = "\n".join(nightlog.lines(log))
    assert "early.fits" in text and f"{early['bjd_tdb']:.6f}" in text


def test_the_log_ecsv_carries_a_unit_and_a_description_for_every_column(tmp_path):
    frames = [frame("early", "light", "2025-03-02T01:00:00"), frame("bias", "bias", "", 0.0)]
    log = nightlog.build(frames, {"date_obs_is": "start", "site": None}, night="2025-03-01")
    log.write(tmp_path / "night_log.ecsv", format="ascii.ecsv")
    back = Table.read(tmp_path / "night_log.ecsv", format="ascii.ecsv")
    assert back.colnames == list(nightlog.COLUMNS) == [c.name for c in nightlog.SCHEMA]
    units = {name: str(back[name].unit) for name in back.colnames if back[name].unit is not None}
    assert units == {"exposure": "s", "mjd_avg_tt": "d", "bjd_tdb": "d", "altitude": "deg"}
    for column in nightlog.SCHEMA:
        assert back[column.name].description == column.description != ""
    early = back[back["file"] == "n1/early.fits"][0]
    assert early["bjd_tdb"] == log[log["file"] == "n1/early.fits"][0]["bjd_tdb"]  # to the bit
    assert 2460736.5 < early["bjd_tdb"] < 2460737.5 and early["altitude"] < 30


def test_a_science_frames_calibration_is_said_in_a_few_words():
    from ccdreduce.policy import MasterRef, Recipe

    dark = MasterRef("n1", "dark", "1.5", 1.5)
    flat = MasterRef("n1", "flat", "R")
    state = nightlog.calibration_state
    assert state(Recipe(bias=MasterRef("n1", "bias"), dark=dark, flat=flat)) == "calibrated"
    pedestal = Recipe(pedestal=True, uncorrected=["dark current", "bias structure", "flat field"])
    assert state(pedestal) == "uncalibrated: no bias, dark, flat (pedestal subtracted)"
    overscan = Recipe(overscan=True, flat=flat, uncorrected=["bias structure"])
    assert state(overscan) == "partially calibrated: no bias, dark (overscan subtracted)"
    remaining = Recipe(
        dark=dark,
        dark_includes_bias=True,
        flat=flat,
        uncorrected=["dark current of the remaining 58.5 s"],
    )
    assert state(remaining) == "partially calibrated: dark current of the remaining 58.5 s"
    log = nightlog.build(
        [frame("early", "light", "2025-03-02T01:00:00") | {"calibration": state(pedestal)}],
        {"date_obs_is": "start", "site": None},
    )
    assert log["calibration"][0] == state(pedestal)
