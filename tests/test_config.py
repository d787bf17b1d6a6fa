"""Configuration checks a schema cannot make: section values as the command
line delivers them, raw and results folders apart, and settings that cannot
work with the frames the plan uses, each refused naming the fix."""

import pytest
from conftest import default_config
from helpers import write_night

from ccdreduce import inventory, layout, policy, stacking
from ccdreduce.config import check_against_plan, check_config, normalise, pixel_settings
from ccdreduce.errors import ConfigProblem


@pytest.mark.parametrize(
    "given, expected",
    [
        (["1:4096", "1:4096"], "[1:4096,1:4096]"),  # --config trim_section=[1:4096,1:4096]
        ([" 1:10 ", "2:20"], "[1:10,2:20]"),
        ("null", None),
        ("None", None),
        ("  ~ ", None),
        ("", None),
        (None, None),
        ("[1:512,1:512]", "[1:512,1:512]"),
    ],
)
def test_sections_from_the_command_line_become_strings_or_none(given, expected):
    config = normalise({"trim_section": given, "overscan": {"section": given}})
    assert config["trim_section"] == expected
    assert config["overscan"]["section"] == expected


def test_normalise_leaves_missing_keys_missing():
    assert normalise({"raw_dir": "raw"}) == {"raw_dir": "raw"}


@pytest.mark.parametrize(
    "raw, results",
    [("data", "data"), ("data", "data/results"), ("data/raw", "data")],
)
def test_raw_and_results_folders_that_overlap_are_refused(tmp_path, raw, results):
    config = default_config(raw_dir=str(tmp_path / raw), results_dir=str(tmp_path / results))
    with pytest.raises(ConfigProblem, match="overlap.*Fix: point results_dir"):
        check_config(config)


def test_separate_folders_and_overscan_without_a_section(tmp_path):
    config = default_config(raw_dir=str(tmp_path / "raw"), results_dir=str(tmp_path / "res"))
    check_config(config)  # apart, side by side: fine
    config["overscan"] = {"subtract": True, "section": None, "model": "median"}
    with pytest.raises(ConfigProblem, match="overscan.section is not set"):
        check_config(config)


def test_pixel_settings_are_plain_values_with_defaults():
    config = default_config(trim_section="[1:100,1:50]")
    assert pixel_settings(config) == {
        "trim_section": "[1:100,1:50]",
        "overscan_section": config["overscan"]["section"],
        "overscan_model": "median",
        "saturation_adu": 65535.0,
        "min_flat": 0.05,
        "pedestal": None,
    }
    bare = {"calibration": {}}
    assert pixel_settings(bare) == {
        "trim_section": None,
        "overscan_section": None,
        "overscan_model": "median",
        "saturation_adu": 65535.0,
        "min_flat": 0.05,
        "pedestal": None,
    }
    assert isinstance(
        pixel_settings({"calibration": {}, "saturation_adu": 4095})["saturation_adu"], float
    )
    assert pixel_settings({"calibration": {"pedestal": 400}})["pedestal"] == 400.0


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A night of 40x48 frames (NAXIS2 x NAXIS1): its plan and stacks."""
    raw = tmp_path_factory.mktemp("config")
    write_night(raw, "2025-03-01", "2025-03-01T20:00:00")
    config = default_config(raw_dir=str(raw))
    plan = policy.make_plan(inventory.scan(raw, config))
    stacks = stacking.stack_groups(plan, config["stacking"]["group_by"])
    return config, plan, stacks


def test_sections_inside_the_frames_and_a_pinned_frame_of_the_stack_pass(planned):
    config, plan, stacks = planned
    (group,) = stacks
    pinned = layout.frame_id(stacks[group][0].night, stacks[group][0].stem)
    config = default_config(
        trim_section="[1:48,1:40]",
        stacking=config["stacking"] | {"reference": {group: pinned}},
    )
    check_against_plan(config, plan, stacks)


@pytest.mark.parametrize("section", ["[1:49,1:40]", "[1:48,1:41]", "[0:48,1:40]"])
def test_a_trim_section_outside_the_frames_names_a_frame_and_the_fix(planned, section):
    _, plan, stacks = planned
    with pytest.raises(ConfigProblem) as error:
        check_against_plan(default_config(trim_section=section), plan, stacks)
    said = str(error.value)
    assert f"trim_section {section} does not fit frame 2025-03-01/" in said
    assert "(48x40 pixels)" in said and "e.g. [1:48,1:40]" in said


def test_an_overscan_section_is_checked_only_when_subtracted(planned):
    _, plan, stacks = planned
    overscan = {"subtract": False, "section": "[50:60,1:40]", "model": "median"}
    config = default_config(trim_section=None, overscan=overscan)
    check_against_plan(config, plan, stacks)
    config["overscan"]["subtract"] = True
    with pytest.raises(ConfigProblem, match=r"overscan.section \[50:60,1:40\] does not fit"):
        check_against_plan(config, plan, stacks)


def test_a_pin_for_no_stack_or_for_a_frame_not_in_it_is_refused(planned):
    config, plan, stacks = planned
    (group,) = stacks

    def pin(reference):
        pinned = default_config(
            trim_section=None, stacking=config["stacking"] | {"reference": reference}
        )
        with pytest.raises(ConfigProblem) as error:
            check_against_plan(pinned, plan, stacks)
        return str(error.value)

    said = pin({"NGC_9999/R": "2025-03-01/light_R_30s_0"})
    assert "no such stack" in said and group in said
    said = pin({group: "2025-03-01/dark_30s_0"})
    assert "not one of its frames" in said and "2025-03-01/light_R_30s_0" in said
