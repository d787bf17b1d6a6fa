"""Finding a master for a frame: the masters there are, and which night's to
use when the frame's own night has none.

A master serves a frame only if it has the frame's geometry (shape, binning
and camera), the frame's camera settings (calibration.camera_keys: a key
one of them lacks does not count), for a dark the set-point temperature
within ``temperature_tolerance``, and is not known to come from another
telescope. The frame's own night is asked first; then the other nights by
distance in days, up to ``max_borrow_days``. Which masters a frame needs is
the policy's business (policy.py); this module answers "where is the
nearest one?" and, when there is none or a near one was passed over, "why
not that one?" (near_misses), in words.
"""

import math
from collections import defaultdict
from typing import NamedTuple


class NightCalendar:
    """Nights in order of distance from a given night, within a limit."""

    def __init__(self, nights, max_days):
        self.dates = {name: night.date for name, night in nights.items()}
        self.max_days = max_days

    def days_between(self, a, b):
        """Days between two nights; None if either has no date."""
        if a == b:
            return 0.0
        if self.dates[a] is None or self.dates[b] is None:
            return None
        return abs((self.dates[a] - self.dates[b]).total_seconds()) / 86400.0

    def nearest(self, night, candidates):
        """[(night, days)] of the candidate nights within the limit: the night
        itself first, then nearest first (earlier on ties). Two folders of one
        date (two telescopes) are 0 days apart, and each must use its own
        masters."""
        found = []
        for other in candidates:
            days = self.days_between(night, other)
            if days is not None and days <= self.max_days:
                found.append((days, other != night, str(self.dates[other] or 0), other))
        found.sort()
        return [(other, days) for days, _, _, other in found]


class Found(NamedTuple):
    """The masters of one kind on the nearest night that has any."""

    refs: list  # sorted; empty when none is within reach
    night: str | None = None
    days: float | None = None

    def origin(self, asking_night):
        """Where the master comes from, in the words of the notes."""
        if self.night == asking_night:
            return "own night"
        return f"borrowed from night {self.night} ({self.days:.1f} d away)"


NOTHING = Found([])


def same_camera(a, b):
    """Camera values (calibration.camera_keys, in order) that agree where both
    headers have the key: a key one lacks splits nothing."""
    return all(x == y or x == "" or y == "" for x, y in zip(a, b, strict=False))


def temperature_words(celsius):
    return "unknown temperature" if celsius is None else f"{celsius:g} C"


def _plural(kind):
    return {"bias": "biases", "light": "lights"}.get(kind, f"{kind}s")


class MasterLookup:
    """The nearest master of a kind for a frame, among ``masters``
    ({MasterRef: Master}, shared with the planner, which may drop some).
    ``temperature_tolerance`` (deg C, None: ignored): how far a dark's set
    point may be from the frame's."""

    def __init__(self, masters, calendar, temperature_tolerance=None):
        self.masters = masters
        self.calendar = calendar
        self.temperature_tolerance = temperature_tolerance
        self._by_kind = None
        self._answers = {}

    def find(self, frame, kind, key=None, night=None):
        """Found: the masters of ``kind`` (and ``key``: exposure or filter)
        that fit ``frame``, on the night nearest ``night`` (the frame's own
        by default) that has any.

        Answers are cached per question: every frame of a night asks the
        same ones, and archives have thousands.
        """
        night = frame.night if night is None else night
        question = (
            night,
            kind,
            frame.geometry(),
            key,
            frame.telescope,
            getattr(frame, "camera", ()),
            getattr(frame, "temperature", None) if kind == "dark" else None,
            getattr(frame, "bayer", None),
        )
        if question not in self._answers:
            self._answers[question] = self._nearest(*question)
        return self._answers[question]

    def forget(self, ref):
        """Drop a master that cannot be made, and every answer given so far."""
        del self.masters[ref]
        self._by_kind, self._answers = None, {}

    def _nearest(self, night, kind, geometry, key, telescope, camera, temperature, bayer):
        have = {
            other: [
                ref
                for ref in refs
                if (key is None or ref.key == key)
                and self._serves(ref, other, night, telescope)
                and self._fits(self.masters[ref], camera, temperature, bayer) is None
            ]
            for other, refs in self._index().get((kind, geometry), {}).items()
        }
        have = {other: refs for other, refs in have.items() if refs}
        for other, days in self.calendar.nearest(night, have):
            return Found(sorted(have[other]), other, days)
        return NOTHING

    def _serves(self, ref, its_night, night, telescope):
        """A master of another telescope is never borrowed; one whose
        telescope is not known (mount not connected) may be."""
        if telescope is None or its_night == night:
            return True
        return self.masters[ref].telescope in (None, telescope)

    def _fits(self, master, camera, temperature, bayer=None):
        """None when the master's camera settings, Bayer pattern and (a
        dark's) set point fit the frame's, else what differs: 'camera',
        'bayer' or 'temperature'. Patterns differ only when both are known: a
        program that writes ROWORDER bottom-up (or other offsets) stores
        another colour at pixel (0, 0), and dividing by such a flat divides
        each pixel by another colour's response; a bias or dark written
        without BAYERPAT is not held against a colour frame."""
        if not same_camera(camera, getattr(master, "camera", ())):
            return "camera"
        theirs = getattr(master, "bayer", None)
        if bayer and theirs and bayer != theirs:
            return "bayer"
        if temperature is None or self.temperature_tolerance is None:
            return None
        theirs = getattr(master, "temperature", None)
        if theirs is not None and abs(theirs - temperature) > self.temperature_tolerance + 1e-9:
            return "temperature"
        return None

    def near_misses(self, frame, kind, key=None, limit=3):
        """Why the masters of ``kind`` nearest to serving ``frame`` do not, in
        words, nearest night first: each differs from a match in one thing
        only (another filter, another camera or binning, a set point beyond
        the tolerance, another telescope, too many days away). The one place
        that explains a non-match: CalibrationMissing and the recipe notes
        quote it. Another filter counts for flats only (darks of other
        exposures are the dark step's own choice)."""
        found = []
        for ref, master in self.masters.items():
            if ref.kind != kind:
                continue
            days = self.calendar.days_between(frame.night, ref.night)
            misses = self._misses(frame, kind, key, ref, master, days)
            if misses is not None and len(misses) == 1:
                found.append((math.inf if days is None else days, ref, misses[0]))
        said = []
        for _, _, words in sorted(found, key=lambda item: (item[0], item[1])):
            if words not in said:
                said.append(words)
        return said[:limit]

    def _misses(self, frame, kind, key, ref, master, days):
        """Each way ``ref`` fails ``frame``, in words; None for a dark of
        another exposure (the dark step's own choice, said there)."""
        frames = len(getattr(master, "frames", ()))
        where = "this night" if ref.night == frame.night else f"night {ref.night}"
        what = f"{_plural(kind)}" if not ref.key else f"{_plural(kind)} {ref.key!r}"
        if kind == "dark":
            what = f"dark {ref.key} s"
        misses = []
        if key is not None and ref.key != key:
            if kind != "flat":
                return None
            misses.append(f"flats exist for {ref.key!r} ({frames} frames, {where})")
        if days is None or days > self.calendar.max_days:
            away = "an undated night" if days is None else f"{days:.1f} d away"
            misses.append(
                f"{what} of {where} not used: {away} (calibration.max_borrow_days "
                f"{self.calendar.max_days:g})"
            )
        if master.geometry != frame.geometry():
            misses.append(f"{what} of {where} are of another camera or shape ({master.describe})")
        else:
            differs = self._fits(
                master,
                getattr(frame, "camera", ()),
                getattr(frame, "temperature", None) if kind == "dark" else None,
                getattr(frame, "bayer", None),
            )
            if differs == "camera":
                misses.append(f"{what} of {where} are of other camera settings ({master.describe})")
            elif differs == "bayer":
                misses.append(
                    f"{what} of {where} have Bayer pattern {master.bayer} at pixel (0, 0), "
                    f"the frame {frame.bayer} (another ROWORDER or XBAYROFF/YBAYROFF: "
                    "correct it with header_overrides)"
                )
            elif differs == "temperature":
                misses.append(
                    f"{what} at {temperature_words(master.temperature)} ({where}) not used "
                    f"for {_plural(frame.kind)} at {temperature_words(frame.temperature)} "
                    f"(tolerance {self.temperature_tolerance:g} C)"
                )
        if frame.telescope and ref.night != frame.night:
            theirs = master.telescope
            if theirs not in (None, frame.telescope):
                misses.append(
                    f"{what} of {where} are of telescope {theirs!r}, not {frame.telescope!r}"
                )
        return misses

    def _index(self):
        """{(kind, geometry): {night: [refs]}} of the masters there are."""
        if self._by_kind is None:
            self._by_kind = defaultdict(lambda: defaultdict(list))
            for ref, master in self.masters.items():
                self._by_kind[(ref.kind, master.geometry)][ref.night].append(ref)
        return self._by_kind
