"""What every product says about when its light was collected and how it
was made: times on named scales, inputs, masters, shifts, scales, combine
method, library versions and the config hash; a stack's header against its
frames table, and times against the simulator's clock."""

import io
import re
import warnings
from importlib import metadata

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time, TimeDelta

from ccdreduce import provenance, stacking

METHODS = ("average", "median", "minmax", "sigclip")
#: Keywords that hold a Julian date; each must be on a scale the header names.
JULIAN_KEYS = re.compile(r"^(M?JD|HJD|BJD)")


def tt(utc_text, seconds=0.0):
    """ISO UTC text (+ seconds) on TT, computed here independently."""
    return (Time(utc_text, scale="utc") + TimeDelta(seconds, format="sec")).tt


def products(results):
    return sorted(p for p in results.rglob("*.fits") if "benchmarks" not in p.parts)


def test_no_product_has_a_julian_date_on_utc_and_each_names_its_scale(demo_run):
    results = demo_run["results"]
    paths = products(results)
    folders = {p.relative_to(results).parts[0] for p in paths}
    assert folders == {"calib", "calibrated", "registered", "stacks"} and len(paths) >= 80
    hashes = set()
    for path in paths:
        header = fits.getheader(path)
        julian = [k for k in header if JULIAN_KEYS.match(k)]
        assert set(julian) <= {"MJD-OBS", "MJD-BEG", "MJD-AVG", "MJD-END", "BJD_TDB"}, (
            path,
            julian,
        )
        assert header["TIMESYS"] == "TT", path
        hashes.add(header["CFGHASH"])
        versions = header["SOFTVERS"]
        for name in ("astropy", "astropy-iers-data", "numpy", "scipy", "photutils"):
            assert f"{name} {metadata.version(name)}" in versions, (path, name)
    assert len(hashes) == 1 and re.fullmatch(r"[0-9a-f]{16}", hashes.pop())
    for table_path in demo_run["results"].rglob("*.ecsv"):  # tables name the scale too
        for name in Table.read(table_path).colnames:
            if re.search(r"(^|_)([bm]?jd|date_(beg|avg|end))", name):
                assert name.endswith(("_tt", "_tdb")), (table_path, name)


def test_every_product_reads_on_its_timesys_as_its_first_start_without_a_fix(demo_run):
    """FITS 4.0: TIMESYS is the scale of DATE-OBS too; astropy.wcs agrees."""
    from astropy.wcs import WCS

    results = demo_run["results"]
    starts = {}  # raw file -> exposure start, UTC, from the night logs
    for night_log in results.glob("calib/*/night_log.ecsv"):
        starts |= {row["file"]: row["utc_start"] for row in Table.read(night_log)}
    for path in products(results):
        if path.name == "bad_pixels.fits":  # made of masters: no light, no time of its own
            continue
        header = fits.getheader(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # 'datfix' or any other time fix raises
            wcs = WCS(header)
        assert wcs.wcs.mjdobs == header["MJD-OBS"] == header["MJD-BEG"], path
        if "RAWFILE" in header:
            inputs = [header["RAWFILE"]]
        else:
            inputs = [header[f"IMCMB{i:03d}"] for i in range(1, header["NCOMBINE"] + 1)]
        first = min(Time(starts[name], scale="utc") for name in inputs)
        start = Time(header["DATE-OBS"], scale=header["TIMESYS"].lower())
        assert abs((start - first).sec) < 1e-3, path


def test_calibrated_frames_are_timed_from_the_simulators_clock(demo_run, truth):
    for record in truth.frames_of(kind="light"):
        path = demo_run["results"] / "calibrated" / record["night"] / f"{record['stem']}.fits"
        header = fits.getheader(path)
        assert header["UTC-OBS"] == record["date_obs"]  # the camera's, as written
        assert header["DATE-OBS"] == tt(record["date_obs"]).isot  # the start on TIMESYS
        assert header["DATE-BEG"] == tt(record["date_obs"]).isot
        assert header["DATE-AVG"] == tt(record["date_obs"], record["exposure"] / 2).isot
        assert header["DATE-END"] == tt(record["date_obs"], record["exposure"]).isot
        mid = tt(record["date_obs"], record["exposure"] / 2)
        assert abs(header["MJD-AVG"] - mid.mjd) * 86400 < 1e-3
        # NGC 2362 (dec -25) from 42 N near the meridian: about 23 deg high
        assert 2.3 < header["AIRMASS"] < 2.8 and 20 < header["ALTITUDE"] < 24
        # BJD_TDB differs from JD(TDB) by the light travel time, at most 8.4 min
        assert abs(header["BJD_TDB"] - mid.tdb.jd) * 86400 < 500


def test_masters_span_their_inputs(demo_run, truth):
    for name, kind, extra in (
        ("dark_60s.fits", "dark", {"exposure": 60.0}),
        ("bias.fits", "bias", {}),
    ):
        header = fits.getheader(demo_run["results"] / "calib" / "2025-03-01" / name)
        inputs = sorted(
            truth.frames_of(night="2025-03-01", kind=kind, **extra), key=lambda r: r["date_obs"]
        )
        assert header["NCOMBINE"] == len(inputs) and header["COMBMETH"] == "sigclip"
        assert header["DATE-BEG"] == tt(inputs[0]["date_obs"]).isot
        assert header["DATE-END"] == tt(inputs[-1]["date_obs"], inputs[-1]["exposure"]).isot
        assert "BJD_TDB" not in header and "AIRMASS" not in header  # no target to time


def test_masters_record_inputs_and_policy(demo_run):
    header = fits.getheader(demo_run["results"] / "calib" / "2025-03-02" / "flat_R.fits")
    assert header["NCOMBINE"] == 7
    assert header["IMCMB001"].startswith("2025-03-02/calib/flats/R/")
    assert header["BIASFILE"] == "calib/2025-03-01/bias.fits"
    assert "bias: borrowed from night 2025-03-01" in header["CALPOL"]
    assert header["PROCSTEP"] == "master_flat"
    assert header["BUNIT"] == "adu/adu"  # a ratio
    assert "JD" not in header and "UTC-OBS" not in header  # a camera's UTC times
    assert header["TIMESYS"] == "TT" and header["MJD-OBS"] == header["MJD-BEG"]
    for night in ("2025-03-01", "2025-03-02"):  # 03-02's darks on the borrowed bias
        dark = fits.getheader(demo_run["results"] / "calib" / night / "dark_60s.fits")
        assert dark["DARKBIAS"] is False


def test_registered_frames_record_their_shift_and_keep_their_times(demo_run):
    table = Table.read(demo_run["results"] / "stacks" / "NGC_2362" / "R" / "frames.ecsv")
    for row in table[table["used"]]:
        registered = fits.getheader(
            demo_run["results"]
            / "registered"
            / row["night"]
            / "NGC_2362"
            / "R"
            / f"{row['stem']}.fits"
        )
        calibrated = fits.getheader(
            demo_run["results"] / "calibrated" / row["night"] / f"{row['stem']}.fits"
        )
        assert registered["PROCSTEP"] == "register" and registered["REGSTAT"] == "ok"
        assert (registered["DX"], registered["DY"]) == (row["dx"], row["dy"])
        assert registered["RAWFILE"] == calibrated["RAWFILE"] == row["file"]
        assert registered["FLATFILE"] == calibrated["FLATFILE"]  # masters and their night
        for key in ("DATE-BEG", "DATE-AVG", "DATE-END", "BJD_TDB", "AIRMASS"):
            assert registered[key] == calibrated[key]
        assert row["date_beg_tt"] == calibrated["DATE-BEG"]
        assert row["bjd_tdb"] == calibrated["BJD_TDB"]


@pytest.mark.parametrize("filt", ["R", "V"])
def test_a_stacks_header_and_its_frames_table_agree(demo_run, truth, filt):
    folder = demo_run["results"] / "stacks" / "NGC_2362" / filt
    table = Table.read(folder / "frames.ecsv")
    used = table[table["used"]]
    exposure = np.asarray(used["exposure"], float)
    reference = stacking.reference_row(table)
    records = [truth.frames_of(night=r["night"], stem=r["stem"])[0] for r in used]
    first = min(records, key=lambda r: r["date_obs"])
    last = max(records, key=lambda r: tt(r["date_obs"], r["exposure"]).mjd)
    for method in METHODS:
        header = fits.getheader(folder / f"{method}.fits")
        assert header["NCOMBINE"] == len(used) and f"IMCMB{len(used) + 1:03d}" not in header
        for i, row in enumerate(used, start=1):
            assert header[f"IMCMB{i:03d}"] == row["file"]
            assert header[f"IMSCL{i:03d}"] == pytest.approx(row["scale"], rel=1e-12)
        assert header["TOTEXP"] == pytest.approx(exposure.sum())
        assert header["EXPTIME"] == reference["exposure"]  # scaled to the reference
        assert header["DATE-BEG"] == min(used["date_beg_tt"]) == tt(first["date_obs"]).isot
        assert (
            header["DATE-END"]
            == max(used["date_end_tt"])
            == tt(last["date_obs"], last["exposure"]).isot
        )
        mjd = np.average(np.asarray(used["mjd_avg_tt"], float), weights=exposure)
        assert abs(header["MJD-AVG"] - mjd) * 86400 < 1e-3
        middle = Time(header["DATE-AVG"], scale="tt")
        assert abs(middle.mjd - header["MJD-AVG"]) * 86400 < 1e-3  # rounding of each
        bjd = np.average(np.asarray(used["bjd_tdb"], float), weights=exposure)
        assert abs(header["BJD_TDB"] - bjd) * 86400 < 1e-3
        assert header["DATE-OBS"] == tt(first["date_obs"]).isot  # on TIMESYS = TT
        assert header["MJD-OBS"] == header["MJD-BEG"] and "UTC-OBS" not in header
        # what belonged to the reference frame alone is not the stack's
        for key in ("DX", "RAWFILE", "BIASFILE", "FLATFILE", "LST", "ALTITUDE"):
            assert key not in header, (method, key)
        assert header["COMBMETH"] == method
        history = "\n".join(header["HISTORY"])
        assert "bias subtracted" not in history  # the reference frame's own history
        if method == "minmax":
            assert "n_low = 3" in history and "sigma_lower" not in history
        if method == "sigclip":
            assert "sigma_lower = 3" in history and "n_low" not in history


def test_a_night_log_lists_every_frame_with_its_times(demo_run, truth):
    results = demo_run["results"]
    for night in truth.data["nights"]:
        log = Table.read(results / "calib" / night["name"] / "night_log.ecsv")
        records = truth.frames_of(night=night["name"])
        assert sorted(log["file"]) == sorted(r["file"] for r in records)
        assert list(log["utc_start"]) == sorted(log["utc_start"])  # in time order
        for row in log:
            record = next(r for r in records if r["file"] == row["file"])
            assert row["type"] == record["kind"] and row["exposure"] == record["exposure"]
            assert row["utc_start"] == Time(record["date_obs"], scale="utc").isot
            mid = tt(record["date_obs"], record["exposure"] / 2)
            assert row["date_avg_tt"] == mid.isot
            assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d", row["lst"])
            if record["kind"] == "light":
                header = fits.getheader(
                    results / "calibrated" / night["name"] / f"{record['stem']}.fits"
                )
                assert row["bjd_tdb"] == header["BJD_TDB"] and row["airmass"] == header["AIRMASS"]
                assert row["lst"] == header["LST"]
            else:  # calibration frames: the site's time, no target
                assert np.isnan(row["bjd_tdb"]) and np.isnan(row["airmass"])
        text = (results / "logs" / "calib" / night["name"] / "frames.log").read_text()
        light = next(r for r in log if r["type"] == "light")
        assert f"{light['bjd_tdb']:.6f}" in text and light["utc_start"] in text


def test_the_config_hash_changes_with_the_config_and_not_with_key_order():
    a = provenance.config_hash({"x": 1, "y": {"b": 2, "a": 3}})
    assert a == provenance.config_hash({"y": {"a": 3, "b": 2}, "x": 1})
    assert a != provenance.config_hash({"x": 1, "y": {"b": 2, "a": 4}})


def test_stamp_replaces_a_reference_frames_inputs_and_drops_a_cameras_utc_times():
    header = fits.Header()
    header["DATE-OBS"] = "2025-03-02T01:00:00"
    header["TIME-OBS"] = "01:00:00"
    header["JD"] = 2460736.5416667
    header["MJD-OBS"] = 60736.0416667
    header["IMCMB001"], header["IMCMB002"], header["IMSCL002"] = "old1", "old2", 2.0
    provenance.stamp(header, "stack_median", inputs=["a.fits"], combined=True, scales=[1.5])
    assert "JD" not in header and "MJD-OBS" not in header and "TIME-OBS" not in header
    assert header["IMCMB001"] == "a.fits" and header["IMSCL001"] == 1.5
    assert "IMCMB002" not in header and "IMSCL002" not in header
    assert "removed JD, MJD-OBS, TIME-OBS" in str(header["HISTORY"])
    # a product's own times (TIMESYS = TT) stay through later steps; None removes a card
    header["TIMESYS"], header["MJD-OBS"] = "TT", 60736.0424674
    provenance.stamp(header, "register", cards={"UTC-OBS": None, "DX": (1, "shift")})
    assert header["MJD-OBS"] == 60736.0424674 and "UTC-OBS" not in header and header["DX"] == 1


def test_more_than_999_inputs_are_counted_and_the_rest_referred_to_the_table():
    header = fits.Header()
    names = [f"n/f{i}.fits" for i in range(1001)]
    provenance.stamp(header, "stack_average", inputs=names, combined=True, scales=[1.0] * 1001)
    assert header["NCOMBINE"] == 1001 and header["IMCMB999"] == "n/f998.fits"
    assert not any(len(key) > 8 for key in header)  # no HIERARCH cards
    assert "see the frames table" in str(header["HISTORY"])


def test_a_value_that_cannot_be_measured_is_said_not_written_as_nan():
    header = fits.Header()
    provenance.stamp(header, "register", cards={"SKYSUB": (float("nan"), "sky"), "DX": 2})
    assert "SKYSUB" not in header and header["DX"] == 2
    assert "SKYSUB unknown (nan)" in str(header["HISTORY"])
    fits.PrimaryHDU(header=header).writeto(io.BytesIO())  # a valid FITS header


def test_a_stack_header_is_the_references_less_its_own_frame_with_the_stacks_times():
    from ccdreduce.combine import CombineSpec

    reference = fits.Header()
    for key, value in (("DX", 2.0), ("SKYSUB", 101.5), ("RAWFILE", "n1/b.fit"), ("EXPOSURE", 60)):
        reference[key] = value
    reference["TELESCOP"] = "0.5 m"
    reference["DATE-BEG"] = "2025-03-02T01:00:00.000"
    reference.add_history("registered: a history of one frame")
    spans = {
        "a": ("2025-03-02T00:00:00.000", "2025-03-02T00:01:00.000", 60660.0003472),
        "b": ("2025-03-02T01:00:00.000", "2025-03-02T01:00:30.000", 60660.0418403),
        "c": ("2025-03-02T02:00:00.000", "2025-03-02T02:01:00.000", 60660.0837500),
    }
    table = Table(
        rows=[
            ("n1", stem, f"n1/{stem}.fit", exposure, *spans[stem], np.nan, 1.2, "", scale, used)
            for stem, exposure, scale, used in (
                ("a", 60.0, 1.1, True),
                ("b", 30.0, 1.0, True),
                ("c", 60.0, 9.9, False),
            )
        ],
        names=(
            "night",
            "stem",
            "file",
            "exposure",
            "date_beg_tt",
            "date_end_tt",
            "mjd_avg_tt",
            "bjd_tdb",
            "airmass",
            "time_note",
            "scale",
            "used",
        ),
        meta={"reference": "n1/b"},
    )
    spec = CombineSpec.of("sigclip", kind="stack", weights="none")
    header, notes = provenance.stack_header(reference, table, 30.0, spec, {"a": 1}, ["combined 2"])
    assert notes == []
    assert not {"DX", "SKYSUB", "RAWFILE"} & set(header)  # the reference frame's own
    assert not any("a history of one frame" in str(h) for h in header["HISTORY"])
    assert header["TELESCOP"] == "0.5 m" and header["BUNIT"] == "adu"
    # scaled to the reference: its exposure; both exposure keywords agree
    assert header["EXPTIME"] == 30.0 and header["EXPOSURE"] == 30.0 and header["TOTEXP"] == 90.0
    assert header["NCOMBINE"] == 2 and [header["IMCMB001"], header["IMCMB002"]] == [
        "n1/a.fit",
        "n1/b.fit",
    ]
    assert header["IMSCL001"] == 1.1 and "IMSCL003" not in header  # the unused frame left out
    assert header["DATE-BEG"] == "2025-03-02T00:00:00.000"  # first start
    assert header["DATE-END"] == "2025-03-02T01:00:30.000"  # last end of a used frame
    assert header["COMBMETH"] == "sigclip" and header["REFFRAME"] == "n1/b"
    assert header["AIRMASS"] == pytest.approx(1.2)
    history = [str(h) for h in header["HISTORY"]]
    assert "stack_sigclip: sigma_lower = 3" in history and "combined 2" in history
    assert reference["DX"] == 2.0  # the reference frame's own header is untouched
    assert header["WEIGHTS"] == "none" and not header["WEIGHTED"] and "WGTMIN" not in header
    # weighted: the mode configured and the per-frame range in effect
    weighted = CombineSpec.of("average", kind="stack", weights=True)
    header, _ = provenance.stack_header(
        reference, table, 30.0, weighted, {"a": 1}, weights=np.array([2.0, 8.0])
    )
    assert header["WEIGHTS"] == "noise" and header["WEIGHTED"] and header["WGTMIN"] == 0.25
