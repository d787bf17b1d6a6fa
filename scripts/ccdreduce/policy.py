"""The calibration policy: which masters each frame gets, decided before
anything runs, so that ``snakemake -n`` shows the whole plan.

The policy, as the observatory recipe has it:

- each night makes a master bias, one master dark per exposure time and one
  master flat per filter from its own frames;
- a night lacking a calibration type borrows that master from the nearest
  night that has it (same shape and binning), within ``max_borrow_days``;
- no dark of the frame's exposure: the nearest bias-subtracted dark is
  scaled by the ratio of exposure times;
- no bias at all: a dark of the same exposure serves as bias plus dark; if
  none matches, the nearest dark is subtracted as bias and the dark current
  of the difference is left uncorrected, and said so;
- nothing usable: CalibrationMissing, naming night, frame and what is missing.

Every decision is written down in words (``Recipe.notes``), which go into
the frame table, the log and the headers of the products.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from . import layout
from .errors import CalibrationMissing

MASTER_KINDS = ("bias", "dark", "flat")


@dataclass(frozen=True, order=True)
class MasterRef:
    """Names one master: bias, dark of an exposure, flat of a filter."""

    night: str
    kind: str
    key: str = ""

    @property
    def filename(self):
        return layout.master_file(self.kind, self.key)

    @property
    def name(self):
        """Path relative to results_dir, as recorded in headers and tables."""
        return layout.master(None, self.night, self.kind, self.key)

    def path(self, results_dir):
        return layout.master(results_dir, self.night, self.kind, self.key)


@dataclass
class Recipe:
    """How one raw frame is calibrated, and why."""

    bias: MasterRef | None = None
    dark: MasterRef | None = None
    dark_scale: float = 0.0
    dark_includes_bias: bool = False
    flat: MasterRef | None = None
    overscan: bool = False
    notes: list = field(default_factory=list)
    uncorrected: list = field(default_factory=list)

    def masters(self):
        return [m for m in (self.bias, self.dark, self.flat) if m is not None]

    def summary(self):
        """One line for headers and tables."""
        text = "; ".join(self.notes)
        if self.uncorrected:
            text += "; UNCORRECTED: " + ", ".join(self.uncorrected)
        return text

    def as_dict(self):
        """Plain values for Snakemake params (a change reruns the job).

        Masters are named relative to results_dir.
        """
        return {
            "bias": self.bias.name if self.bias else None,
            "dark": self.dark.name if self.dark else None,
            "dark_scale": self.dark_scale,
            "dark_includes_bias": self.dark_includes_bias,
            "flat": self.flat.name if self.flat else None,
            "overscan": self.overscan,
            "notes": list(self.notes),
            "uncorrected": list(self.uncorrected),
        }


@dataclass
class Master:
    """One master to make: its frames and how each is calibrated first."""

    ref: MasterRef
    frames: list
    recipes: dict = field(default_factory=dict)  # relpath -> Recipe

    @property
    def geometry(self):
        return self.frames[0].geometry()

    @property
    def telescope(self):
        """The TELESCOP most of its frames name, or None if none does."""
        named = Counter(f.telescope for f in self.frames if f.telescope)
        return named.most_common(1)[0][0] if named else None

    def needed_masters(self):
        return sorted({m for r in self.recipes.values() for m in r.masters()})


@dataclass
class Plan:
    masters: dict  # MasterRef -> Master
    lights: dict  # (night, stem) -> (Frame, Recipe)
    nights: dict  # night -> Night (from the inventory)

    def masters_of(self, night):
        return self._by_night()[0].get(night, [])

    def lights_of(self, night):
        return self._by_night()[1].get(night, [])

    def _by_night(self):
        """Masters and lights indexed by night once: input functions ask per
        night, and a scan per call costs seconds on a 100-night archive."""
        if getattr(self, "_index", None) is None:
            masters, lights = {}, {}
            for ref, master in sorted(self.masters.items()):
                masters.setdefault(ref.night, []).append(master)
            for (night, _), pair in sorted(self.lights.items()):
                lights.setdefault(night, []).append(pair)
            self._index = (masters, lights)
        return self._index


def _exclude_odd_geometry(frames, what):
    """Keep the frames of the commonest shape and binning; mark the others."""
    counts = Counter(f.geometry() for f in frames)
    if len(counts) < 2:
        return frames
    keep, _ = max(counts.items(), key=lambda item: (item[1], item[0]))
    example = next(f for f in frames if f.geometry() == keep)
    kept = []
    for frame in frames:
        if frame.geometry() == keep:
            kept.append(frame)
        else:
            frame.problem = (
                f"{frame.describe_geometry()} differs from the other {what} "
                f"({example.describe_geometry()}, {counts[keep]} frames), so it "
                "cannot be combined with them. Fix: move it to a night folder "
                "of its own binning, or list it under exclude"
            )
    return kept


class _Calendar:
    """Nights in order of distance from a given night, within a limit."""

    def __init__(self, nights, max_days):
        self.dates = {name: night.date for name, night in nights.items()}
        self.max_days = max_days

    def days(self, a, b):
        if a == b:
            return 0.0
        if self.dates[a] is None or self.dates[b] is None:
            return None
        return abs((self.dates[a] - self.dates[b]).total_seconds()) / 86400.0

    def nearest(self, night, candidates):
        """Candidate nights within the limit: the night itself first, then
        nearest first (earlier on ties). Two folders of one date (two
        telescopes) are 0 days apart, and each must use its own masters."""
        found = []
        for other in candidates:
            days = self.days(night, other)
            if days is not None and days <= self.max_days:
                found.append((days, other != night, str(self.dates[other] or 0), other))
        found.sort()
        return [(found_night[-1], found_night[0]) for found_night in found]


def _where(night, source, days):
    if source == night:
        return "own night"
    return f"borrowed from night {source} ({days:.1f} d away)"


class _Planner:
    def __init__(self, nights, max_days, overscan, on_missing):
        self.nights = nights
        self.calendar = _Calendar(nights, max_days)
        self.max_days = max_days
        self.overscan = overscan
        self.on_missing = on_missing
        self.masters = {}
        self._by_kind = None
        self._answers = {}

    # --- which masters exist -------------------------------------------
    def group_calibrations(self):
        for name, night in self.nights.items():
            usable = [f for f in night.frames if f.usable]
            groups = defaultdict(list)
            for frame in usable:
                if frame.kind == "bias":
                    groups[MasterRef(name, "bias")].append(frame)
                elif frame.kind == "dark":
                    groups[MasterRef(name, "dark", frame.exposure_key)].append(frame)
                elif frame.kind == "flat":
                    groups[MasterRef(name, "flat", frame.filter_key)].append(frame)
            for ref, frames in groups.items():
                what = {
                    "bias": "bias frames",
                    "dark": f"{ref.key} s darks",
                    "flat": f"{ref.key} flats",
                }[ref.kind]
                kept = _exclude_odd_geometry(frames, what + " of this night")
                self.masters[ref] = Master(ref, kept)

    def _find(self, night, kind, geometry, key=None, telescope=None):
        """Nearest (refs, night, days) of a master of this kind and geometry
        (camera included); another night's only if its telescope is not known
        to differ from ``telescope``.

        Answers are cached per (night, kind, geometry, key, telescope): every
        frame of a night asks the same questions, and archives have thousands.
        """
        question = (night, kind, geometry, key, telescope)
        if question not in self._answers:
            have = self._index().get((kind, geometry), {})
            if key is not None:
                have = {n: [r for r in refs if r.key == key] for n, refs in have.items()}
            if telescope is not None:  # a master of another telescope is never borrowed
                have = {
                    n: [r for r in refs if n == night or self._telescope_of(r) in (None, telescope)]
                    for n, refs in have.items()
                }
            have = {n: refs for n, refs in have.items() if refs}
            answer = (None, None, None)
            for other, days in self.calendar.nearest(night, have):
                answer = (sorted(have[other]), other, days)
                break
            self._answers[question] = answer
        return self._answers[question]

    def _telescope_of(self, ref):
        return self.masters[ref].telescope

    def _index(self):
        """{(kind, geometry): {night: [refs]}} of the masters there are."""
        if self._by_kind is None:
            self._by_kind = defaultdict(lambda: defaultdict(list))
            for ref, master in self.masters.items():
                self._by_kind[(ref.kind, master.geometry)][ref.night].append(ref)
        return self._by_kind

    def _forget(self, ref):
        """Drop a master that cannot be made, and every cached answer."""
        del self.masters[ref]
        self._by_kind, self._answers = None, {}

    # --- recipes ---------------------------------------------------------
    def recipe(self, frame, with_dark=True, with_flat=True):
        night, geometry = frame.night, frame.geometry()
        recipe = Recipe(overscan=self.overscan)
        biases, bias_night, days = self._find(night, "bias", geometry, telescope=frame.telescope)
        if biases:
            recipe.bias = biases[0]
            recipe.notes.append(f"bias: {_where(night, bias_night, days)}")
        if with_dark:
            self._choose_dark(frame, recipe)
        if recipe.bias is None and recipe.dark is None:
            if self.overscan:
                recipe.notes.append("no bias or dark: only the overscan level removed")
                recipe.uncorrected.append("bias structure")
            else:
                raise CalibrationMissing(
                    night,
                    frame.relpath,
                    f"no bias frames and no usable dark frames within "
                    f"{self.max_days:g} days ({frame.describe_geometry()})",
                    "add bias or dark frames of this binning to the night, raise "
                    "calibration.max_borrow_days, or enable overscan subtraction",
                )
        if with_flat:
            flats, flat_night, days = self._find(
                night, "flat", geometry, frame.filter_key, telescope=frame.telescope
            )
            if not flats:
                raise CalibrationMissing(
                    night,
                    frame.relpath,
                    f"no flat for filter {frame.filter_key!r} within "
                    f"{self.max_days:g} days ({frame.describe_geometry()})",
                    "add flats in this filter, raise calibration.max_borrow_days, "
                    "or set calibration.on_missing: skip to leave such frames out",
                )
            recipe.flat = flats[0]
            recipe.notes.append(f"flat {frame.filter_key}: {_where(night, flat_night, days)}")
        return recipe

    def _choose_dark(self, frame, recipe):
        night, exposure = frame.night, frame.exposure
        darks, dark_night, days = self._find(
            night, "dark", frame.geometry(), telescope=frame.telescope
        )
        if not darks:
            recipe.uncorrected.append(f"dark current (no darks within {self.max_days:g} d)")
            return
        where = _where(night, dark_night, days)
        dark_bias, _, _ = self._find(
            dark_night, "bias", frame.geometry(), telescope=frame.telescope
        )
        includes_bias = not dark_bias
        exposures = {ref.key: float(ref.key) for ref in darks}
        exact = [ref for ref in darks if ref.key == frame.exposure_key]
        # nearest exposure; on a tie the longer dark, whose noise is lower
        nearest = min(darks, key=lambda r: (abs(exposures[r.key] - exposure), -exposures[r.key]))
        if not includes_bias:
            if recipe.bias is None:
                recipe.uncorrected.append("dark current (darks are bias-subtracted but no bias)")
                return
            ref = exact[0] if exact else nearest
            recipe.dark = ref
            recipe.dark_scale = exposure / exposures[ref.key] if exposures[ref.key] else 0.0
            if exact:
                recipe.notes.append(f"dark {ref.key} s: {where}, exposure matches")
            else:
                recipe.notes.append(
                    f"dark {ref.key} s: {where}, scaled by {recipe.dark_scale:.4g} "
                    f"to {frame.exposure_key} s (no {frame.exposure_key} s dark)"
                )
            return
        # The darks still hold the bias: they can only stand in for bias + dark.
        if exact:
            recipe.dark, recipe.dark_scale, recipe.dark_includes_bias = exact[0], 1.0, True
            why = "no bias frames" if recipe.bias is None else "the dark holds its bias"
            recipe.bias = None  # subtracting a bias as well would remove it twice
            recipe.notes = [n for n in recipe.notes if not n.startswith("bias:")]
            recipe.notes.append(f"{why}: dark {exact[0].key} s ({where}) serves as bias + dark")
            return
        if recipe.bias is not None:
            recipe.uncorrected.append(
                f"dark current (no {frame.exposure_key} s dark; darks of night "
                f"{dark_night} include the bias and cannot be scaled)"
            )
            return
        recipe.dark, recipe.dark_scale, recipe.dark_includes_bias = nearest, 1.0, True
        left = exposure - exposures[nearest.key]
        recipe.notes.append(
            f"no bias frames and no {frame.exposure_key} s dark: dark {nearest.key} s "
            f"({where}) subtracted unscaled as bias + {nearest.key} s of dark current"
        )
        if left > 0:
            recipe.uncorrected.append(f"dark current of the remaining {left:g} s (hot pixels stay)")
        elif left < 0:
            recipe.uncorrected.append(f"{-left:g} s of dark current over-subtracted")

    def _missing(self, exc, frame):
        if self.on_missing == "skip":
            frame.problem = f"{exc.missing}. Fix: {exc.fix}"
            return True
        raise exc

    def plan_masters(self):
        for ref in sorted(self.masters):
            master = self.masters[ref]
            if ref.kind == "bias":
                master.recipes = {
                    f.relpath: Recipe(overscan=self.overscan, notes=["raw bias"])
                    for f in master.frames
                }
            elif ref.kind == "dark":
                for frame in master.frames:
                    recipe = Recipe(overscan=self.overscan)
                    biases, where_night, days = self._find(
                        ref.night, "bias", frame.geometry(), telescope=frame.telescope
                    )
                    if biases:
                        recipe.bias = biases[0]
                        recipe.notes.append(f"bias: {_where(ref.night, where_night, days)}")
                    else:
                        recipe.dark_includes_bias = True
                        recipe.notes.append("no bias within reach: master dark keeps the bias")
                    master.recipes[frame.relpath] = recipe
        for ref in sorted(r for r in self.masters if r.kind == "flat"):
            master = self.masters[ref]
            try:
                master.recipes = {f.relpath: self.recipe(f, with_flat=False) for f in master.frames}
            except CalibrationMissing as exc:
                for frame in master.frames:
                    self._missing(exc, frame)
                self._forget(ref)

    def plan_lights(self):
        lights = {}
        for name, night in self.nights.items():
            science = [f for f in night.frames if f.usable and f.kind == "light"]
            usual = Counter(f.geometry() for f in science).most_common(1)
            for frame in science:
                try:
                    lights[(name, frame.stem)] = (frame, self.recipe(frame))
                except CalibrationMissing as exc:
                    if frame.geometry() != usual[0][0]:
                        # one odd frame (a test exposure, a subframe) must not
                        # stop the night: it is the frame, not the calibration
                        example = next(f for f in science if f.geometry() == usual[0][0])
                        frame.problem = (
                            f"{frame.describe_geometry()} differs from the night's other "
                            f"science frames ({example.describe_geometry()}, "
                            f"{usual[0][1]} frames) and no calibration frames of its "
                            f"shape are within reach ({exc.missing}). Fix: add calibration "
                            "frames of its shape and binning, or list it under exclude"
                        )
                    else:
                        self._missing(exc, frame)
        return lights


def make_plan(nights, max_borrow_days=30.0, overscan=False, on_missing="error"):
    """The whole calibration plan for an inventory ({night: Night})."""
    planner = _Planner(nights, max_borrow_days, overscan, on_missing)
    planner.group_calibrations()
    planner.plan_masters()
    lights = planner.plan_lights()
    return Plan(masters=planner.masters, lights=lights, nights=nights)
