"""One form for every message with a fix: '<where>: <problem>. Fix: <fix>'."""

import pickle

import pytest

from ccdreduce import errors
from ccdreduce.errors import (
    CalibrationMissing,
    ConfigProblem,
    ConfigProblems,
    FrameProblem,
    Problem,
    say,
)
from ccdreduce.headers import HeaderError
from ccdreduce.times import TimeProblem


def test_say_joins_place_problem_and_fix():
    assert say("file is empty (0 bytes)", "copy it again") == (
        "file is empty (0 bytes). Fix: copy it again"
    )
    assert say("no method", "add method: median", "stacking.combine.x") == (
        "stacking.combine.x: no method. Fix: add method: median"
    )


def test_a_problem_put_as_a_question_keeps_its_question_mark():
    assert say("local time written as UTC?", "correct DATE-OBS") == (
        "local time written as UTC? Fix: correct DATE-OBS"
    )


def test_a_problem_keeps_its_parts_and_says_them_in_one_line():
    exc = Problem("flat has median 0", "list it under exclude", "n1/flat_0.fits")
    assert (exc.problem, exc.fix, exc.where) == (
        "flat has median 0",
        "list it under exclude",
        "n1/flat_0.fits",
    )
    assert str(exc) == "n1/flat_0.fits: flat has median 0. Fix: list it under exclude"


def test_each_error_names_its_place_in_its_own_words():
    frame = FrameProblem("raw/n1/cut.fits", "cannot read its pixels", "copy it again")
    assert str(frame) == "raw/n1/cut.fits: cannot read its pixels. Fix: copy it again"
    assert frame.path == "raw/n1/cut.fits"
    missing = CalibrationMissing("n1", "n1/light_0.fits", "no flat for filter 'R'", "add flats")
    assert str(missing) == "night n1, frame n1/light_0.fits: no flat for filter 'R'. Fix: add flats"
    assert (missing.night, missing.frame, missing.problem) == (
        "n1",
        "n1/light_0.fits",
        "no flat for filter 'R'",
    )
    assert str(HeaderError("no EXPTIME", "give it")) == "no EXPTIME. Fix: give it"


@pytest.mark.parametrize(
    "error",
    [
        FrameProblem("a.fits", "p", "f"),
        CalibrationMissing("n1", "a.fits", "p", "f"),
        ConfigProblem("p", "f"),
        HeaderError("p", "f"),
        TimeProblem("p", "f"),
    ],
)
def test_every_error_is_a_problem_and_still_a_value_error(error):
    # callers catch them as before (choose_reference.py catches ValueError)
    assert isinstance(error, Problem) and isinstance(error, ValueError)
    assert str(error).endswith("p. Fix: f")


def test_several_config_problems_are_said_together_and_caught_as_one():
    found = [
        ConfigProblem("unknown key 'sigma_lowr'", "did you mean 'sigma_lower'?", "a"),
        ConfigProblem("no method", "add method: median", "b"),
    ]
    with pytest.raises(ConfigProblem) as err:
        raise ConfigProblems(found)
    assert str(err.value) == (
        "a: unknown key 'sigma_lowr'. Fix: did you mean 'sigma_lower'?; "
        "b: no method. Fix: add method: median"
    )
    assert err.value.problems == found


def test_frame_problem_has_no_reason_any_more():
    # a frame's problem without its place is say(problem, fix); 'reason' was unused
    assert not hasattr(FrameProblem("a.fits", "p", "f"), "reason")
    assert "reason" not in dir(errors.FrameProblem)


def test_a_problem_travels_between_processes_with_its_message():
    exc = pickle.loads(pickle.dumps(ConfigProblem("p", "f", "w")))
    assert str(exc) == "w: p. Fix: f"
    missing = pickle.loads(pickle.dumps(CalibrationMissing("n1", "a.fits", "p", "f")))
    assert (missing.night, str(missing)) == ("n1", "night n1, frame a.fits: p. Fix: f")
    several = pickle.loads(pickle.dumps(ConfigProblems([ConfigProblem("p", "f", "w")] * 2)))
    assert str(several) == "w: p. Fix: f; w: p. Fix: f"
