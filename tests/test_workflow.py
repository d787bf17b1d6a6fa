"""The workflow as a user runs it: the plan before the run, the run, what it
leaves in results/, and what it says about bad input."""

import re
import shutil
import subprocess
import warnings
from collections import Counter

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from conftest import checksums, run_snakemake
from helpers import write_binned, write_night, write_raw


def job_counts(dry_run_output):
    table = dry_run_output.split("Job stats:")[1]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_dry_run_lists_every_job_before_anything_runs(demo_run, truth):
    frames = truth.frames
    nights_with_bias = {f["night"] for f in frames if f["kind"] == "bias"}
    darks = {(f["night"], f["exposure"]) for f in frames if f["kind"] == "dark"}
    flats = {(f["night"], f["filter"]) for f in frames if f["kind"] == "flat"}
    lights = [f for f in frames if f["kind"] == "light"]
    stacks = {("NGC_2362", f["filter"]) for f in lights}
    methods = 4
    expected = {
        "master_bias": len(nights_with_bias),
        "master_dark": len(darks),
        "master_flat": len(flats),
        "calibrate": len({f["night"] for f in lights}),  # one job per night
        "frame_table": len(truth.data["nights"]),
        # one register job per night of each stack
        "register": len({(f["night"], f["filter"]) for f in lights}),
        "choose_reference": len(stacks),
        "scale_frames": len(stacks),
        "combine_stack": len(stacks) * methods,
        "stack_stats": len(stacks),
        "all": 1,
    }
    counts = job_counts(demo_run["dry_run"])
    assert counts == expected | {"total": sum(expected.values())}
    for record in lights:  # each raw frame is an input of its night's calibrate job
        assert f"{record['night']}/" in record["file"] and record["file"] in demo_run["dry_run"]
        calibrated = demo_run["results"] / "calibrated" / record["night"] / f"{record['stem']}.fits"
        assert calibrated.exists()


def test_a_finished_run_has_nothing_left_to_do(demo_run):
    result = run_snakemake("-n", *demo_run["config"])
    assert "Nothing to be done" in result.stdout + result.stderr


def test_raw_files_are_byte_identical_after_the_run(demo_run, truth):
    assert checksums(demo_run["raw"]) == demo_run["checksums_before"]
    assert len(demo_run["checksums_before"]) == len(truth.frames) == 102


def test_every_rule_wrote_a_log_and_a_benchmark(demo_run):
    results = demo_run["results"]
    logs = list((results / "logs").rglob("*.log"))
    benchmarks = list((results / "benchmarks").rglob("*.tsv"))
    total = job_counts(demo_run["dry_run"])["total"] - 1  # 'all' runs nothing
    assert len(logs) == total and len(benchmarks) == total
    assert all(p.stat().st_size > 0 for p in logs)


def test_frame_tables_say_which_masters_each_frame_used(demo_run, truth):
    results = demo_run["results"]
    for night in truth.data["nights"]:
        table = Table.read(results / "calib" / night["name"] / "frames.ecsv")
        raw = [f["file"] for f in truth.frames if f["night"] == night["name"]]
        assert sorted(table["file"]) == sorted(raw)
        assert set(table["status"]) == {"used"}
        for column in (
            "file",
            "type",
            "filter",
            "exposure",
            "date_obs",
            "object",
            "shape",
            "bias",
            "dark",
            "dark_scale",
            "flat",
            "policy",
        ):
            assert column in table.colnames
    table = Table.read(results / "calib" / "2025-03-02" / "frames.ecsv")
    light = table[table["file"] == "2025-03-02/NGC2362/V/light_V_30s_025.fits.fz"][0]
    assert light["bias"] == "calib/2025-03-01/bias.fits"
    assert light["dark"] == "calib/2025-03-02/dark_30s.fits" and light["dark_scale"] == 1.0
    assert light["flat"] == "calib/2025-03-02/flat_V.fits"
    assert light["output"] == "calibrated/2025-03-02/light_V_30s_025.fits"
    assert light["object"] == "NGC 2362" and light["shape"] == "528x512"
    table = Table.read(results / "calib" / "2025-03-05" / "frames.ecsv")
    light = table[table["file"] == "2025-03-05/NGC2362/R/light_R_45s_021.fts"][0]
    assert light["flat"] == "calib/2025-03-02/flat_R.fits"
    assert "flat R: borrowed from night 2025-03-02 (3.0 d away)" in light["policy"]
    assert light["dark"] == "calib/2025-03-05/dark_60s.fits" and light["dark_scale"] == 0.75
    counts = Counter(table["type"])
    assert counts == {"bias": 7, "dark": 10, "light": 10}


def test_frame_tables_say_each_calibrated_frames_noise_model(demo_run, truth):
    """EGAIN from the MaxIm and N.I.N.A. headers (N.I.N.A.'s GAIN = 120 is a
    gain setting, not taken); the lab camera writes none, so its gain is
    measured on the flats it borrows; read noise measured by the bias jobs
    (borrowed for the night without)."""
    sources = {"2025-03-01": "header+measured", "2025-03-02": "header+measured"}
    sources["2025-03-05"] = "measured"
    for night, source in sources.items():
        table = Table.read(demo_run["results"] / "calib" / night / "frames.ecsv")
        lights = table[(table["type"] == "light") & (table["status"] == "used")]
        assert len(lights) > 0 and set(lights["noise_source"]) == {source}
        exact = 0 if source.startswith("header") else 0.03
        assert np.allclose(lights["gain"], truth.camera["gain"], rtol=exact, atol=0)
        assert np.allclose(lights["read_noise"], truth.camera["read_noise"], rtol=0.03)


def test_calibrated_frames_carry_float32_pixels_and_their_provenance(demo_run):
    path = demo_run["results"] / "calibrated" / "2025-03-01" / "light_R_30s_037.fits"
    with fits.open(path) as hdul:
        header = hdul[0].header
        assert hdul[0].data.dtype == np.dtype(">f4") and hdul[0].data.shape == (512, 512)
        assert hdul["MASK"].data.dtype == np.uint8
    assert header["RAWFILE"] == "2025-03-01/NGC2362/R/light_R_30s_037.fits"
    assert header["BIASFILE"] == "calib/2025-03-01/bias.fits"
    assert header["FLATFILE"] == "calib/2025-03-01/flat_R.fits"
    assert header["TRIMSEC"] == "[1:512,1:512]"
    assert header["UTC-OBS"] == "2025-03-02T01:03:35"  # 20:03:35 EST on 03-01
    assert header["DATE-OBS"] == "2025-03-02T01:04:44.184"  # the start on TIMESYS = TT
    assert "JD" not in header and header["MJD-OBS"] == header["MJD-BEG"]  # on TT
    assert "BZERO" not in header and header["BUNIT"] == "adu"


def bad_night(raw):
    """A night with every kind of bad file beside enough good ones."""
    folder = write_night(raw, "2025-03-01", "2025-03-01T20:00:00", lights=(("R", 30.0),))
    (folder / "empty.fits").write_bytes(b"")
    (folder / "readme.fits").write_text("exported by the camera, not a FITS file\n" * 100)
    good = (folder / "light_R_30s_0.fits").read_bytes()
    (folder / "cut.fits").write_bytes(good[: len(good) // 2])
    write_raw(folder / "zwo.fits", "Light Frame", "6,4E-05", filt="R")
    write_raw(folder / "noexp.fits", "Light Frame", None, filt="R")
    write_raw(folder / "focus.fits", "Focus", 1.0)
    write_binned(folder / "flat_R_binned.fits", "Flat Field", 2.0)
    (folder / "log.txt").write_text("clouds at 23h")
    return folder


def test_bad_frames_are_excluded_with_their_reason_and_the_rest_goes_on(tmp_path):
    raw, results = tmp_path / "raw", tmp_path / "results"
    bad_night(raw)
    before = checksums(raw)
    run_snakemake(
        "calibration", "--config", f"raw_dir={raw}", f"results_dir={results}", "trim_section="
    )
    assert checksums(raw) == before
    table = Table.read(results / "calib" / "2025-03-01" / "frames.ecsv")
    rows = {row["file"].split("/")[-1]: row for row in table}
    expected = {
        "empty.fits": "file is empty (0 bytes)",
        "readme.fits": "not a readable FITS file",
        "cut.fits": "file is truncated",
        "zwo.fits": "EXPTIME = '6,4E-05' is not a usable exposure time",
        "noexp.fits": "no exposure time",
        "focus.fits": "unknown frame type IMAGETYP = 'Focus'",
        "flat_R_binned.fits": "binning 2x2 differs from the other R flats",
    }
    for name, reason in expected.items():
        assert rows[name]["status"] == "excluded"
        assert reason in rows[name]["reason"] and "Fix:" in rows[name]["reason"]
    assert rows["log.txt"]["status"] == "ignored"
    used = [name for name, row in rows.items() if row["status"] == "used"]
    assert len(used) == 3 + 3 + 3 + 3  # bias, darks, flats, lights
    assert sorted(p.name for p in (results / "calibrated" / "2025-03-01").glob("*.fits")) == [
        "light_R_30s_0.fits",
        "light_R_30s_1.fits",
        "light_R_30s_2.fits",
    ]
    log = (results / "logs" / "calib" / "2025-03-01" / "frames.log").read_text()
    assert "zwo.fits excluded: EXPTIME = '6,4E-05'" in log


def test_nothing_usable_stops_the_run_naming_night_frame_and_what_is_missing(tmp_path):
    raw = tmp_path / "raw"
    write_night(raw, "2025-03-01", "2025-03-01T20:00:00", bias=0, darks=(), flats=("R",))
    result = run_snakemake(
        "-n",
        "--config",
        f"raw_dir={raw}",
        f"results_dir={tmp_path / 'r'}",
        "trim_section=",
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert (
        "night 2025-03-01, frame 2025-03-01/flat_R_0.fits: no bias frames and no usable dark"
        in output
    )
    assert "Fix: add bias or dark frames" in output


@pytest.mark.parametrize(
    "config, message",
    [
        (["results_dir={raw}/results"], "raw_dir .* and results_dir .* overlap"),
        (["trim_section=1:10"], "does not match"),
        (["raw_dir={tmp}/nowhere"], "is not a folder"),
        # a misspelt combine key was ignored, the entry quietly taking its defaults
        (
            ["stacking={{combine: {{sigclip: {{method: sigclip, sigma_lowr: 1}}}}}}"],
            r"stacking\.combine\.sigclip: unknown key 'sigma_lowr'\. Fix: did you mean "
            r"'sigma_lower'\?",
        ),
        (
            ["calibration={{combine: {{bias: {{method: median, sigma_lower: 4}}}}}}"],
            # merged into config.yaml's entry: its sigclip keys no longer apply
            r"calibration\.combine\.bias: sigma_lower, sigma_upper, maxiters, cenfunc, "
            r"stdfunc do nothing with method median .*Fix: remove sigma_lower",
        ),
    ],
)
def test_bad_configuration_is_refused_before_anything_runs(tmp_path, config, message):
    raw = tmp_path / "raw"
    write_night(raw, "2025-03-01", "2025-03-01T20:00:00")
    args = [c.format(raw=raw, tmp=tmp_path) for c in config]
    base = [f"raw_dir={raw}", f"results_dir={tmp_path / 'results'}"]
    result = run_snakemake("-n", "--config", *base, *args, check=False)
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), result.stderr[-2000:]


def test_trim_section_from_the_command_line_and_a_section_too_large(tmp_path):
    raw, results = tmp_path / "raw", tmp_path / "results"
    write_night(raw, "2025-03-01", "2025-03-01T20:00:00", shape=(40, 48))
    run_snakemake(
        "calibration",
        "--config",
        f"raw_dir={raw}",
        f"results_dir={results}",
        "trim_section=[3:42,1:30]",
    )
    data = fits.getdata(results / "calibrated" / "2025-03-01" / "light_R_30s_0.fits")
    assert data.shape == (30, 40)
    result = run_snakemake(
        "calibration",
        "--config",
        f"raw_dir={raw}",
        f"results_dir={tmp_path / 'r2'}",
        "trim_section=[1:4096,1:4096]",
        check=False,
    )
    # refused before any job, naming a frame, its size and the fix
    assert result.returncode != 0 and not (tmp_path / "r2" / "logs").exists()
    said = result.stdout + result.stderr
    assert "trim_section [1:4096,1:4096] does not fit frame 2025-03-01/" in said
    assert "(48x40 pixels)" in said and "Fix: set trim_section" in said


def test_the_rule_graph_names_every_rule_in_graphviz_form(demo_run):
    graph = run_snakemake("--rulegraph", *demo_run["config"]).stdout
    assert graph.lstrip().startswith("digraph")
    rules = set(re.findall(r'label = "(\w+)"', graph))
    assert rules == set(job_counts(demo_run["dry_run"])) - {"total"}
    if shutil.which("dot"):  # graphviz renders it (apt-get install graphviz)
        png = subprocess.run(["dot", "-Tpng"], input=graph.encode(), capture_output=True)
        assert png.returncode == 0 and png.stdout[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_collects_every_stack_night_and_preview(demo_run, truth, tmp_path):
    report = tmp_path / "report.html"
    run_snakemake("--report", report, *demo_run["config"])
    html = report.read_text(errors="replace")
    stacks = {f"NGC_2362/{f['filter']}" for f in truth.frames if f["kind"] == "light"}
    assert stacks == {"NGC_2362/R", "NGC_2362/V"}
    for stack in stacks:
        assert stack in html
        for name in ("average.png", "median.png", "minmax.png", "sigclip.png", "frames.ecsv"):
            assert f"stacks/{stack}/{name}" in html, (stack, name)
    for night in truth.data["nights"]:
        assert f"calib/{night['name']}/frames.ecsv" in html
    assert html.count("Masters") and "flat_R.png" in html and "bias.png" in html


def observable_yesterday():
    """A UTC start on yesterday's date (by the real clock) with NGC 2362 up
    at the simulator's site, and the night's name (the local evening's date,
    EST): a night that the bundled IERS tables may not cover, by design."""
    from datetime import UTC, datetime, timedelta

    from astropy import units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time

    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    site = EarthLocation.from_geodetic(-70.97 * u.deg, 41.988 * u.deg, 60 * u.m)
    target = SkyCoord("07h18m48s", "-24d57m00s")
    hours = Time(f"{yesterday.isoformat()}T00:00:00", scale="utc") + np.arange(22) * u.hour
    hours.delta_ut1_utc = 0.0  # within 0.9 s, plenty to find the target high; no IERS table
    with warnings.catch_warnings():  # polar motion past the bundled tables: irrelevant here
        warnings.simplefilter("ignore")
        altitude = target.transform_to(AltAz(obstime=hours, location=site)).alt.deg
    start = hours[int(np.argmax(altitude))].to_datetime()
    return start.isoformat(timespec="seconds"), (start - timedelta(hours=5)).date().isoformat()


def test_a_night_dated_yesterday_reduces_end_to_end(tmp_path):
    from ccdreduce import times
    from ccdreduce.simulate import NightSpec, simulate

    start, night = observable_yesterday()
    spec = NightSpec(
        night,
        "maxim",
        start,
        (0.0, 0.0),
        n_bias=3,
        darks={30.0: 3},
        flats={"R": (2.0, 3)},
        lights={("R", 30.0): 3},
    )
    truth = simulate(tmp_path, nights=[spec])
    results = tmp_path / "results"
    run_snakemake("--config", f"raw_dir={tmp_path / 'raw'}", f"results_dir={results}")
    lights = [f for f in truth["frames"] if f["kind"] == "light"]
    for record in lights:
        header = fits.getheader(results / "calibrated" / night / f"{record['stem']}.fits")
        started = times.parse_date_obs(record["date_obs"])
        assert header["UTC-OBS"] == record["date_obs"] and header["TIMESYS"] == "TT"
        assert header["DATE-OBS"] == started.tt.isot
        assert {"LST", "BJD_TDB", "AIRMASS"} <= set(header)
        # a note on UT1 exactly when the bundled tables lack a measured value
        error, what = times.ut1_quality(started + 15 * u.s)
        assert (what is not None) == ("UT1-UTC" in header.get("TIMENOTE", "")), header
        assert "clock" not in header.get("TIMENOTE", "")  # yesterday is no clock error
    stack = fits.getheader(results / "stacks" / "NGC_2362" / "R" / "average.fits")
    assert stack["NCOMBINE"] == len(lights)
    assert stack["DATE-OBS"] == times.parse_date_obs(lights[0]["date_obs"]).tt.isot
    log = Table.read(results / "calib" / night / "night_log.ecsv")
    assert len(log) == len(truth["frames"]) and all(log["utc_start"])
