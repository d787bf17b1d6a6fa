"""Finding the nearest master: the calendar of nights within reach, the
geometry and telescope a master must share, and answers kept per question."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from ccdreduce.lookup import Found, MasterLookup, NightCalendar, same_camera
from ccdreduce.policy import MasterRef

GEOMETRY = ((40, 48), (1, 1), None)
BINNED = ((20, 24), (2, 2), None)


@dataclass
class Night:
    date: datetime | None


@dataclass
class FakeFrame:
    night: str
    shape: tuple = GEOMETRY
    telescope: str | None = None

    def geometry(self):
        return self.shape


@dataclass
class FakeMaster:
    geometry: tuple = GEOMETRY
    telescope: str | None = None


def nights_on(**days):
    """{name: Night} dated March 2025 plus the given day offsets (None: undated)."""
    start = datetime(2025, 3, 1, 20)
    return {
        name: Night(None if day is None else start + timedelta(days=day))
        for name, day in days.items()
    }


def test_calendar_orders_nights_by_distance_earlier_first_on_ties():
    calendar = NightCalendar(nights_on(a=0, b=1, c=2, d=3.5, far=40), max_days=30)
    assert calendar.nearest("b", ["far", "d", "c", "a", "b"]) == [
        ("b", 0.0),
        ("a", 1.0),
        ("c", 1.0),
        ("d", 2.5),
    ]


def test_calendar_reaches_exactly_max_days_and_no_further():
    calendar = NightCalendar(nights_on(a=0, b=30, c=30.5), max_days=30)
    assert calendar.nearest("a", ["b", "c"]) == [("b", 30.0)]


def test_an_undated_night_is_only_its_own():
    calendar = NightCalendar(nights_on(a=0, undated=None), max_days=30)
    assert calendar.days_between("a", "undated") is None
    assert calendar.nearest("undated", ["a", "undated"]) == [("undated", 0.0)]


def test_two_folders_of_one_date_each_come_first_for_themselves():
    calendar = NightCalendar(nights_on(east=0, west=0), max_days=30)
    assert calendar.nearest("west", ["east", "west"]) == [("west", 0.0), ("east", 0.0)]


def test_found_says_where_a_master_comes_from():
    assert Found([MasterRef("a", "bias")], "a", 0.0).origin("a") == "own night"
    found = Found([MasterRef("a", "bias")], "a", 1.04)
    assert found.origin("b") == "borrowed from night a (1.0 d away)"


def lookup_of(masters, max_days=30, **days):
    return MasterLookup(dict(masters), NightCalendar(nights_on(**days), max_days))


def test_find_borrows_the_nearest_master_of_the_kind_and_key():
    lookup = lookup_of(
        {
            MasterRef("a", "flat", "R"): FakeMaster(),
            MasterRef("c", "flat", "R"): FakeMaster(),
            MasterRef("c", "flat", "V"): FakeMaster(),
            MasterRef("d", "flat", "V"): FakeMaster(),
        },
        a=0,
        b=2,
        c=5,
        d=2.5,
    )
    assert lookup.find(FakeFrame("b"), "flat", "R") == Found([MasterRef("a", "flat", "R")], "a", 2)
    assert lookup.find(FakeFrame("b"), "flat", "V") == (
        [MasterRef("d", "flat", "V")],
        "d",
        0.5,
    )
    assert lookup.find(FakeFrame("b"), "flat", "B").refs == []
    assert lookup.find(FakeFrame("b"), "bias") == Found([])


def test_find_gives_all_masters_of_the_nearest_night_sorted():
    darks = [MasterRef("a", "dark", key, exposure=float(key)) for key in ("300", "60")]
    lookup = lookup_of({ref: FakeMaster() for ref in darks}, a=0, b=1)
    found = lookup.find(FakeFrame("b"), "dark")
    assert [ref.exposure for ref in found.refs] == [300.0, 60.0]
    assert (found.night, found.days) == ("a", 1.0)


def test_find_asks_from_another_night_when_told():
    lookup = lookup_of({MasterRef("a", "bias"): FakeMaster()}, max_days=1.5, a=0, b=1, c=2)
    assert lookup.find(FakeFrame("c"), "bias").refs == []
    assert lookup.find(FakeFrame("c"), "bias", night="b").days == 1.0


def test_a_master_must_share_the_frames_geometry():
    lookup = lookup_of(
        {MasterRef("a", "bias"): FakeMaster(), MasterRef("b", "bias"): FakeMaster(BINNED)},
        a=0,
        b=1,
    )
    assert lookup.find(FakeFrame("b"), "bias").night == "a"
    assert lookup.find(FakeFrame("b", BINNED), "bias").night == "b"
    assert lookup.find(FakeFrame("a", BINNED), "bias").refs == [MasterRef("b", "bias")]


@pytest.mark.parametrize(
    ("its_telescope", "borrowed"), [("East", True), (None, True), ("West", False)]
)
def test_another_nights_master_of_another_telescope_is_never_borrowed(its_telescope, borrowed):
    lookup = lookup_of({MasterRef("a", "bias"): FakeMaster(telescope=its_telescope)}, a=0, b=1)
    found = lookup.find(FakeFrame("b", telescope="East"), "bias")
    assert bool(found.refs) is borrowed
    # on its own night a master serves whatever the frame's telescope
    assert lookup.find(FakeFrame("a", telescope="East"), "bias").night == "a"


def test_a_forgotten_master_is_no_longer_found():
    lookup = lookup_of(
        {MasterRef("a", "flat", "R"): FakeMaster(), MasterRef("c", "flat", "R"): FakeMaster()},
        a=0,
        b=1,
        c=3,
    )
    assert lookup.find(FakeFrame("b"), "flat", "R").night == "a"  # a cached answer
    lookup.forget(MasterRef("a", "flat", "R"))
    assert MasterRef("a", "flat", "R") not in lookup.masters
    assert lookup.find(FakeFrame("b"), "flat", "R") == ([MasterRef("c", "flat", "R")], "c", 2.0)


# --- camera settings and set points (issue 15) ---


@dataclass
class Camera(FakeFrame):
    """A frame (or master) with camera values and a set point."""

    camera: tuple = ()
    temperature: float | None = None
    kind: str = "light"


@dataclass
class CameraMaster(FakeMaster):
    camera: tuple = ()
    temperature: float | None = None
    frames: tuple = (1, 2, 3)
    describe: str = "48x40 pixels"


def test_a_camera_key_one_side_lacks_splits_nothing():
    assert same_camera(("cam", "120"), ("cam", ""))
    assert same_camera(("cam", ""), ("", ""))
    assert not same_camera(("cam", "120"), ("cam", "200"))


def test_a_master_of_other_camera_settings_is_not_found_and_said():
    lookup = lookup_of({MasterRef("a", "bias"): CameraMaster(camera=("cam", "120"))}, a=0)
    assert lookup.find(Camera("a", camera=("cam", "")), "bias").night == "a"
    frame = Camera("a", camera=("cam", "200"))
    assert lookup.find(frame, "bias").refs == []
    assert lookup.near_misses(frame, "bias") == [
        "biases of this night are of other camera settings (48x40 pixels)"
    ]


def test_a_dark_beyond_the_set_point_tolerance_is_passed_over_in_words():
    darks = {MasterRef("a", "dark", "300", 300.0): CameraMaster(temperature=-10.0)}
    lookup = MasterLookup(darks, NightCalendar(nights_on(a=0), 30), temperature_tolerance=2.0)
    cold = Camera("a", temperature=-20.0)
    assert lookup.find(cold, "dark").refs == []
    assert lookup.near_misses(cold, "dark", "300") == [
        "dark 300 s at -10 C (this night) not used for lights at -20 C (tolerance 2 C)"
    ]
    assert lookup.find(Camera("a", temperature=-11.5), "dark").night == "a"
    # biases and flats match any set point; an unknown one matches too
    assert lookup.find(Camera("a"), "dark").night == "a"
    ignored = MasterLookup(darks, NightCalendar(nights_on(a=0), 30), temperature_tolerance=None)
    assert ignored.find(cold, "dark").night == "a"


def test_near_misses_name_other_filters_and_nights_out_of_reach():
    lookup = lookup_of(
        {
            MasterRef("a", "flat", "R"): CameraMaster(frames=tuple(range(12))),
            MasterRef("far", "flat", "r"): CameraMaster(),
            MasterRef("far", "flat", "B"): CameraMaster(),  # two misses: not said
        },
        a=0,
        far=45,
    )
    frame = Camera("a", kind="light")
    assert lookup.find(frame, "flat", "r").refs == []
    assert lookup.near_misses(frame, "flat", "r") == [
        "flats exist for 'R' (12 frames, this night)",
        "flats 'r' of night far not used: 45.0 d away (calibration.max_borrow_days 30)",
    ]
