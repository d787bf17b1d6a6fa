"""Header dialects: MaxIm DL/SBIG, N.I.N.A./ASCOM, IRAF and numeric PICTTYPE."""

import pytest
from conftest import default_config

from ccdreduce.headers import (
    HeaderError,
    camera_values,
    exposure_groups,
    exposure_key,
    exposure_time,
    frame_type,
    safe_name,
    set_temperature,
    unique_names,
)

HEADERS = default_config(raw_dir="x")["headers"]
KEYWORDS, TYPES = HEADERS["keywords"], HEADERS["frame_types"]


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"IMAGETYP": "Bias Frame"}, "bias"),
        ({"IMAGETYP": "Dark Frame"}, "dark"),
        ({"IMAGETYP": "Flat Field"}, "flat"),
        ({"IMAGETYP": "Light Frame"}, "light"),
        ({"IMAGETYP": "BIAS"}, "bias"),
        ({"IMAGETYP": "DARK"}, "dark"),
        ({"IMAGETYP": "FLAT"}, "flat"),
        ({"IMAGETYP": "LIGHT"}, "light"),
        ({"IMAGETYP": "zero"}, "bias"),
        ({"IMAGETYP": "dark"}, "dark"),
        ({"IMAGETYP": "flat"}, "flat"),
        ({"IMAGETYP": "object"}, "light"),
        ({"PICTTYPE": 1}, "light"),
        ({"PICTTYPE": 2}, "bias"),
        ({"PICTTYPE": 3}, "dark"),
        ({"PICTTYPE": 4}, "flat"),
        ({"IMAGETYP": "  light frame  "}, "light"),  # padding and case ignored
        ({"OBSTYPE": "zero"}, "bias"),
    ],
)
def test_each_dialect_is_classified(fields, expected):
    assert frame_type(fields, KEYWORDS, TYPES) == expected


def test_unknown_type_value_says_how_to_accept_it():
    with pytest.raises(HeaderError) as err:
        frame_type({"IMAGETYP": "Focus"}, KEYWORDS, TYPES)
    assert "IMAGETYP = 'Focus'" in err.value.problem
    assert "headers.frame_types" in err.value.fix


def test_missing_type_keyword_lists_what_was_tried():
    with pytest.raises(HeaderError, match="IMAGETYP.*PICTTYPE"):
        frame_type({"OBJECT": "M 42"}, KEYWORDS, TYPES)


def test_exptime_falls_back_to_exposure():
    assert exposure_time({"EXPOSURE": 12.5}, KEYWORDS) == 12.5
    assert exposure_time({"EXPTIME": 3, "EXPOSURE": 12.5}, KEYWORDS) == 3.0
    assert exposure_time({"EXPTIME": "30.0"}, KEYWORDS) == 30.0


def test_zwo_decimal_comma_is_reported_with_a_fix():
    with pytest.raises(HeaderError) as err:
        exposure_time({"EXPTIME": "6,4E-05"}, KEYWORDS)
    assert "'6,4E-05'" in err.value.problem and "decimal comma" in err.value.problem
    assert "header_overrides" in err.value.fix and "6.4E-05" in err.value.fix


@pytest.mark.parametrize("fields", [{}, {"EXPTIME": -1.0}, {"EXPTIME": "abc"}, {"EXPTIME": True}])
def test_missing_or_bad_exposure_is_an_error(fields):
    with pytest.raises(HeaderError):
        exposure_time(fields, KEYWORDS)


def test_exposure_keys_name_files():
    assert exposure_key(30.0) == "30"
    assert exposure_key(1.5) == "1.5"
    assert exposure_key(29.99999999) == "30"
    assert exposure_key(6.4e-05) == "6.4e-05"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("NGC 2362", "NGC_2362"),
        ("../../etc", "etc"),
        ("..", "_"),
        ("R ", "R"),
        ("H-alpha/3nm", "H-alpha_3nm"),
    ],
)
def test_safe_names_never_leave_their_folder(value, expected):
    assert safe_name(value) == expected
    assert "/" not in safe_name(value) and safe_name(value) not in ("", ".", "..")


def test_distinct_values_never_share_a_path_name():
    values = ["a/b", "a b", "../../etc", "etc", "Hα", "Hβ", "NGC 2362", "R", "x" * 300, "x" * 301]
    names = unique_names(values)
    assert len(set(names.values())) == len(values)  # one-to-one
    assert names["etc"] == "etc" and names["NGC 2362"] == "NGC_2362" and names["R"] == "R"
    assert names["../../etc"].startswith("etc-") and names["a/b"].startswith("a_b-")
    assert names["Hα"] != names["Hβ"]
    for name in names.values():
        assert safe_name(name) == name and len(name) <= 64  # safe and bounded
    assert unique_names(reversed(values)) == names  # the same whatever the order


def test_exposures_within_the_tolerance_are_one_group_named_by_the_roundest():
    groups = exposure_groups([300.0, 300.0, 300.1, 300.1, 300.1, 60.0, 0.0], 0.01)
    assert groups == {0.0: 0.0, 60.0: 60.0, 300.0: 300.0, 300.1: 300.0}
    # a group reaches 1 % beyond its shortest, and no further (no drift)
    assert exposure_groups([100.0, 100.9, 101.8], 0.01) == {
        100.0: 100.0,
        100.9: 100.0,
        101.8: 101.8,
    }
    # tolerance 0: only equal values (to 6 digits) are one
    assert exposure_groups([300.0, 300.1, 29.9999999, 30.0], 0.0) == {
        30.0: 30.0,
        300.0: 300.0,
        300.1: 300.1,
    }
    # equally round: the commonest names the group
    assert exposure_groups([45.1, 45.2, 45.2], 0.01) == {45.1: 45.2, 45.2: 45.2}


def test_camera_values_are_normalised_and_absent_keys_are_empty():
    fields = {"INSTRUME": " ZWO ASI2600MM ", "GAIN": 100.0, "READOUTM": "Normal"}
    keys = ("INSTRUME", "GAIN", "OFFSET", "READOUTM")
    assert camera_values(fields, keys) == ("zwo asi2600mm", "100", "", "normal")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"SET-TEMP": -20.0, "CCD-TEMP": -19.7}, -20.0),
        ({"CCD-TEMP": -19.7}, -19.7),
        ({"SET-TEMP": "n/a", "CCD-TEMP": "-5"}, -5.0),
        ({"SET-TEMP": True}, None),
        ({}, None),
    ],
)
def test_the_set_point_is_set_temp_else_ccd_temp(fields, expected):
    assert set_temperature(fields) == expected
