"""The night's frame table: every file with its status, the masters that
calibrated it and the factor on the dark; written as ECSV with a unit and a
description for every column, values untouched."""

import math

import numpy as np
import pytest
from astropy.table import Table
from conftest import default_config
from helpers import write_night

from ccdreduce import frametable, inventory, policy

NIGHT = "2025-03-01"


@pytest.fixture(scope="module")
def table_rows(tmp_path_factory):
    """2 bias, 3 darks of 30 s, 3 R flats of 2 s, lights of 30 s and 60 s
    (no 60 s dark: the 30 s one is scaled), a notes file and an empty FITS."""
    raw = tmp_path_factory.mktemp("frametable")
    write_night(raw, NIGHT, f"{NIGHT}T20:00:00", bias=2, lights=(("R", 30.0), ("R", 60.0)))
    (raw / NIGHT / "notes.txt").write_text("seeing 2 arcsec")
    (raw / NIGHT / "empty.fits").write_bytes(b"")
    plan = policy.make_plan(inventory.scan(raw, default_config(raw_dir=str(raw))))
    return frametable.rows(plan, NIGHT)


def by_file(rows):
    return {row["file"].split("/", 1)[1]: row for row in rows}


def test_every_file_once_with_its_status_and_reason(table_rows):
    rows = by_file(table_rows)
    assert len(table_rows) == len(rows) == 2 + 3 + 3 + 3 + 3 + 2
    statuses = [row["status"] for row in table_rows]
    assert statuses.count("used") == 14
    assert rows["empty.fits"]["status"] == "excluded" and "empty" in rows["empty.fits"]["reason"]
    assert rows["notes.txt"]["status"] == "ignored" and "not a FITS" in rows["notes.txt"]["reason"]
    assert table_rows[-1]["file"].endswith("notes.txt")  # ignored files come last
    assert all(set(row) == set(frametable.COLUMNS) for row in table_rows)


def test_masters_dark_scale_and_outputs_of_each_frame(table_rows):
    rows = by_file(table_rows)
    light = rows["light_R_60s_0.fits"]
    assert light["dark"] == f"calib/{NIGHT}/dark_30s.fits" and light["dark_scale"] == 2.0
    assert (
        light["bias"] == f"calib/{NIGHT}/bias.fits"
        and light["flat"] == f"calib/{NIGHT}/flat_R.fits"
    )
    assert light["output"] == f"calibrated/{NIGHT}/light_R_60s_0.fits"
    assert "scaled by 2 to 60 s" in light["policy"]
    assert rows["light_R_30s_1.fits"]["dark_scale"] == 1.0
    # science frames say their calibration in words; calibration frames do not
    assert light["calibration"] == "calibrated" and rows["flat_R_2.fits"]["calibration"] == ""
    flat = rows["flat_R_2.fits"]
    assert flat["dark_scale"] == pytest.approx(2.0 / 30.0) and flat["flat"] == "none"
    assert flat["output"] == f"calib/{NIGHT}/flat_R.fits"
    bias = rows["bias_1.fits"]
    assert (bias["bias"], bias["dark"], math.isnan(bias["dark_scale"])) == ("none", "none", True)
    assert light["shape"] == "48x40" and light["binning"] == "1x1"  # NAXIS1 x NAXIS2
    assert light["exposure"] == 60.0 and light["object"] == "M 67"
    assert math.isnan(rows["notes.txt"]["exposure"])


def test_the_ecsv_declares_every_column_and_keeps_every_value(table_rows, tmp_path):
    path = tmp_path / "frames.ecsv"
    frametable.write(table_rows, path)
    table = Table.read(path, format="ascii.ecsv")
    assert table.colnames == list(frametable.COLUMNS)
    declared = {column.name: column for column in frametable.SCHEMA}
    assert len(declared) == len(frametable.SCHEMA)
    for name in table.colnames:
        assert table[name].description == declared[name].description != ""
    assert str(table["exposure"].unit) == "s"
    with_unit = [name for name in table.colnames if table[name].unit is not None]
    assert with_unit == ["exposure", "gain", "read_noise"]
    for name in table.colnames:
        expected = [row[name] for row in table_rows]
        if table[name].dtype.kind == "f":
            assert np.array_equal(table[name], np.array(expected, float), equal_nan=True), name
        else:  # ECSV reads "" back as masked
            assert list(np.ma.filled(table[name], "")) == expected, name


def test_a_night_with_no_files_still_declares_its_columns(tmp_path):
    table = frametable.write([], tmp_path / "frames.ecsv")
    back = Table.read(tmp_path / "frames.ecsv", format="ascii.ecsv")
    assert len(table) == len(back) == 0
    assert back.colnames == list(frametable.COLUMNS)
    assert str(back["exposure"].unit) == "s" and back["reason"].description
