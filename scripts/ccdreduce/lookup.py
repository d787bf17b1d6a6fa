"""Finding a master for a frame: the masters there are, and which night's to
use when the frame's own night has none.

A master serves a frame only if it has the frame's geometry (shape, binning
and camera) and is not known to come from another telescope. The frame's
own night is asked first; then the other nights by distance in days, up to
``max_borrow_days``. Which masters a frame needs is the policy's business
(policy.py); this module only answers "where is the nearest one?".
"""

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


class MasterLookup:
    """The nearest master of a kind for a frame, among ``masters``
    ({MasterRef: Master}, shared with the planner, which may drop some)."""

    def __init__(self, masters, calendar):
        self.masters = masters
        self.calendar = calendar
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
        question = (night, kind, frame.geometry(), key, frame.telescope)
        if question not in self._answers:
            self._answers[question] = self._nearest(*question)
        return self._answers[question]

    def forget(self, ref):
        """Drop a master that cannot be made, and every answer given so far."""
        del self.masters[ref]
        self._by_kind, self._answers = None, {}

    def _nearest(self, night, kind, geometry, key, telescope):
        have = {
            other: [
                ref
                for ref in refs
                if (key is None or ref.key == key) and self._serves(ref, other, night, telescope)
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

    def _index(self):
        """{(kind, geometry): {night: [refs]}} of the masters there are."""
        if self._by_kind is None:
            self._by_kind = defaultdict(lambda: defaultdict(list))
            for ref, master in self.masters.items():
                self._by_kind[(ref.kind, master.geometry)][ref.night].append(ref)
        return self._by_kind
