"""The calibration policy: which masters each frame gets, decided before
anything runs, so that ``snakemake -n`` shows the whole plan.

The policy, as the observatory recipe has it:

- each night makes a master bias, one master dark per exposure time and one
  master flat per filter from its own frames, per camera (INSTRUME and the
  other calibration.camera_keys) and, for darks, per set-point temperature
  (within calibration.temperature_tolerance); the night's main camera keeps
  the plain names, another gets a sub-folder named for what differs;
- a night lacking a calibration type borrows that master from the nearest
  night that has it (same shape and binning), within ``max_borrow_days``;
- no dark of the frame's exposure (within calibration.exposure_tolerance):
  the nearest bias-subtracted dark is scaled by the ratio of exposure times,
  unless calibration.dark_scaling is never (CMOS amplifier glow does not
  scale): then a dark of the exposure from a borrowable night, or none;
- no bias at all: a dark of the same exposure serves as bias plus dark; if
  none matches, the nearest dark is subtracted as bias and the dark current
  of the difference is left uncorrected, and said so;
- nothing usable: CalibrationMissing, naming night, frame and what is missing;
  with ``on_missing: uncalibrated`` the frame is calibrated with what there
  is instead: no flat (the flat field said uncorrected), and with no bias,
  dark or overscan a pedestal subtracted (``Recipe.pedestal``); its
  ``Recipe.state`` says "partially calibrated" or "uncalibrated".

Every decision is written down in words (``Recipe.notes``), once all of a
frame's steps are decided; they go into the frame table, the log and the
headers of the products. Finding the nearest master of a kind (the
calendar of nights, geometry, camera, temperature and telescope) and saying
why a near one does not serve are lookup.py's.
"""

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace

from . import layout
from .errors import CalibrationMissing, say
from .headers import exposure_seconds, safe_name
from .lookup import MasterLookup, NightCalendar, same_camera, temperature_words

MASTER_KINDS = ("bias", "dark", "flat")


@dataclass(frozen=True, order=True)
class MasterRef:
    """Names one master: bias, dark of an exposure, flat of a filter.

    A ref is the file it names: night, kind, key (the exposure or filter
    as in file names) and camera (the sub-folder of a night's second camera
    or set point; '' for the night's main one). A dark's exposure in seconds
    rides along as a number for the arithmetic, outside comparisons, so that
    a ref rebuilt from a file name (wildcards) finds the planned one.
    """

    night: str
    kind: str
    key: str = ""
    exposure: float | None = field(default=None, compare=False)
    camera: str = ""

    @classmethod
    def of_frame(cls, frame, camera=""):
        """The master a calibration frame goes into."""
        if frame.kind == "dark":
            return cls(
                frame.night,
                "dark",
                frame.exposure_key,
                exposure_seconds(frame.exposure),
                camera=camera,
            )
        if frame.kind == "flat":
            return cls(frame.night, "flat", frame.filter_key, camera=camera)
        return cls(frame.night, "bias", camera=camera)

    @property
    def filename(self):
        return layout.master_file(self.kind, self.key)

    @property
    def frames_described(self):
        """Its frames in words: 'bias frames', '30 s darks', 'R flats'."""
        words = {
            "bias": "bias frames",
            "dark": f"{self.key} s darks",
            "flat": f"{self.key} flats",
        }[self.kind]
        return f"{words} of camera {self.camera}" if self.camera else words

    @property
    def name(self):
        """Path relative to results_dir, as recorded in headers and tables."""
        return layout.master(None, self.night, self.kind, self.key, self.camera)

    def path(self, results_dir):
        return layout.master(results_dir, self.night, self.kind, self.key, self.camera)


@dataclass
class Recipe:
    """How one raw frame is calibrated, and why."""

    bias: MasterRef | None = None
    dark: MasterRef | None = None
    dark_scale: float = 0.0
    dark_includes_bias: bool = False
    flat: MasterRef | None = None
    overscan: bool = False
    # nothing removes the bias (no bias, dark or overscan): a pedestal is
    # subtracted instead (calibration.pedestal, else a low level of the frame)
    pedestal: bool = False
    notes: list = field(default_factory=list)
    uncorrected: list = field(default_factory=list)

    def masters(self):
        return [m for m in (self.bias, self.dark, self.flat) if m is not None]

    @property
    def state(self):
        """The calibration in words: "calibrated" (bias or dark, and flat,
        nothing left uncorrected), "uncalibrated" (no master at all), else
        "partially calibrated" (``uncorrected`` says what is missing)."""
        if not self.masters():
            return "uncalibrated"
        if self.uncorrected or self.flat is None or (self.bias is None and self.dark is None):
            return "partially calibrated"
        return "calibrated"

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
            "pedestal": self.pedestal,
            "notes": list(self.notes),
            "uncorrected": list(self.uncorrected),
            "state": self.state,
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

    @property
    def camera(self):
        """Its frames' camera values, each key's from the first frame that has it."""
        values = [f.camera for f in self.frames if f.camera]
        if not values:
            return ()
        return tuple(next((v[i] for v in values if v[i] != ""), "") for i in range(len(values[0])))

    @property
    def bayer(self):
        """The Bayer pattern most of its frames have at pixel (0, 0), or None."""
        named = Counter(f.bayer for f in self.frames if getattr(f, "bayer", None))
        return named.most_common(1)[0][0] if named else None

    @property
    def temperature(self):
        """The median set point of its frames (deg C), or None."""
        known = [f.temperature for f in self.frames if f.temperature is not None]
        return statistics.median(known) if known else None

    @property
    def describe(self):
        """Its camera in words, for the explanation of a non-match."""
        frame = self.frames[0]
        said = frame.describe_geometry()
        settings = replace(frame, camera=self.camera).describe_camera() if frame.camera else ""
        if settings and settings != "no other camera keys":
            said += f"; {settings}"
        if self.temperature is not None:
            said += f"; {temperature_words(self.temperature)}"
        return said

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
            frame.problem = say(
                f"{frame.describe_geometry()} differs from the other {what} "
                f"({example.describe_geometry()}, {counts[keep]} frames), so it "
                "cannot be combined with them",
                "move it to a night folder of its own binning, or list it under exclude",
            )
    return kept


def _camera_groups(frames):
    """({frame.relpath: group index}, [camera values]): the night's frames by
    camera (calibration.camera_keys), each group's values agreeing with
    every member's (lookup.same_camera); the commonest first. One camera,
    one group. Shape and binning outside the keys are not told apart here:
    an odd frame is left out of its master (_exclude_odd_geometry)."""
    counts = Counter(f.camera for f in frames)
    groups = []
    # fully named cameras seed the groups: a value lacking a key (biases
    # without GAIN) agrees with every GAIN, and seeding with it would put
    # GAIN 120 and GAIN 200 frames into one master
    order = sorted(counts.items(), key=lambda kv: (sum(v == "" for v in kv[0]), -kv[1], kv[0]))
    for camera, _ in order:
        if not any(same_camera(c, camera) for c in groups):
            groups.append(camera)
    seeded = {
        f.relpath: next(i for i, c in enumerate(groups) if same_camera(c, f.camera)) for f in frames
    }
    # then the group with the most frames first: the night's main camera
    sizes = Counter(seeded.values())
    order = sorted(range(len(groups)), key=lambda i: (-sizes[i], i))
    index = {old: new for new, old in enumerate(order)}
    return {path: index[i] for path, i in seeded.items()}, [groups[i] for i in order]


def _camera_tag(keys, camera, main):
    """The sub-folder of a camera other than the night's main one, named for
    what differs: its INSTRUME ('simulated_cmos') when that differs, else
    the keys both name differently ('gain120'), else those only it names."""
    pairs = list(zip(keys, camera, main, strict=False))
    both = [(k, v) for k, v, usual in pairs if v != usual and v != "" and usual != ""]
    differs = both or [(k, v) for k, v, usual in pairs if v != usual and v != ""]
    named = [v for k, v in differs if k == "INSTRUME"] or [f"{k}{v}" for k, v in differs]
    return safe_name("_".join(named).lower() or "camera")


def _temperature_clusters(values, tolerance):
    """Set points in clusters no wider than ``tolerance`` (measured from a
    cluster's lowest, as exposure groups are: -10, -8.5, -7, -5.5 with 2 C
    are two masters, not one chained across 4.5 C)."""
    clusters = []
    for value in sorted(values):
        if clusters and value - clusters[-1][0] <= tolerance:
            clusters[-1].append(value)
        else:
            clusters.append([value])
    return clusters


def _set_point_tags(frames, darks, tolerance):
    """{dark relpath: tag}: darks of a set point other than the camera's usual
    one that night (the cluster holding the median set point of all its
    frames) get 't<C>c', e.g. 't-10c'; the rest ''."""
    known = [f.temperature for f in frames if f.temperature is not None]
    temps = [f.temperature for f in darks if f.temperature is not None]
    if tolerance is None or not known or not temps:
        return {}
    clusters = _temperature_clusters(temps, tolerance)
    usual = statistics.median(known)
    main = min(clusters, key=lambda c: (min(abs(t - usual) for t in c), -len(c)))
    tags = {}
    for frame in darks:
        t = frame.temperature
        if t is not None and t not in main:
            cluster = next(c for c in clusters if t in c)
            tags[frame.relpath] = f"t{round(statistics.median(cluster), 1):g}c"
    return tags


def _night_tags(night, temperature_tolerance):
    """{relpath: camera tag} of a night's usable calibration frames: '' for
    the main camera (the one most of the night's frames share) at its usual
    set point, so a one-camera night keeps its masters' plain names."""
    usable = [f for f in night.frames if f.usable and f.shape is not None]
    if not usable:
        return {}
    member, groups = _camera_groups(usable)
    tags, taken = {}, {""}
    for index, group in enumerate(groups):
        frames = [f for f in usable if member[f.relpath] == index]
        camera = "" if index == 0 else _camera_tag(frames[0].camera_keys, group, groups[0])
        if index and camera in taken:  # two other cameras alike in what names them
            camera = f"{camera}_{index + 1}"
        taken.add(camera)
        darks = [f for f in frames if f.kind == "dark"]
        cold = _set_point_tags(frames, darks, temperature_tolerance)
        for frame in frames:
            parts = [p for p in (camera, cold.get(frame.relpath, "")) if p]
            tags[frame.relpath] = "_".join(parts)
    return tags


def group_calibrations(nights, temperature_tolerance=None):
    """{MasterRef: Master}: each night's usable calibration frames, one
    master per kind, key and camera (and a dark's set point), frames of an
    odd geometry left out. A dark's exposure is the median of its frames'."""
    masters = {}
    for night in nights.values():
        tags = _night_tags(night, temperature_tolerance)
        groups = defaultdict(list)
        for frame in night.frames:
            if frame.usable and frame.kind in MASTER_KINDS:
                groups[MasterRef.of_frame(frame, tags.get(frame.relpath, ""))].append(frame)
        for ref, frames in groups.items():
            kept = _exclude_odd_geometry(frames, f"{ref.frames_described} of this night")
            if ref.kind == "dark":
                ref = replace(ref, exposure=statistics.median(f.exposure for f in kept))
            masters[ref] = Master(ref, kept)
    return masters


@dataclass
class _DarkChoice:
    """The dark step's decision for one frame, before notes are joined."""

    ref: MasterRef | None = None
    scale: float = 0.0
    includes_bias: bool = False  # then no bias may be subtracted as well
    note: str | None = None
    uncorrected: list = field(default_factory=list)


class _Planner:
    """The recipe rules: which masters each frame needs, found by lookup."""

    def __init__(
        self,
        nights,
        max_days,
        overscan,
        on_missing,
        temperature_tolerance=None,
        dark_scaling="allow",
    ):
        self.nights = nights
        self.max_days = max_days
        self.overscan = overscan
        self.on_missing = on_missing
        self.dark_scaling = dark_scaling
        self.masters = group_calibrations(nights, temperature_tolerance)
        self.lookup = MasterLookup(
            self.masters, NightCalendar(nights, max_days), temperature_tolerance
        )

    def why_not(self, frame, kind, key=None):
        """'; '-joined near misses (lookup.near_misses), '' when none."""
        return "; ".join(self.lookup.near_misses(frame, kind, key))

    # --- the steps -------------------------------------------------------
    def bias(self, frame):
        """(bias ref, note) of the nearest bias for ``frame``; (None, None)."""
        found = self.lookup.find(frame, "bias")
        if not found.refs:
            return None, None
        return found.refs[0], f"bias: {found.origin(frame.night)}"

    def dark(self, frame, bias):
        """The dark step for ``frame``, given the bias it would get; a dark of
        its exposure passed over (another set point, camera) is said."""
        choice = self._dark(frame, bias)
        if choice.ref is not None and choice.ref.key == frame.exposure_key:
            return choice
        passed = self.why_not(frame, "dark", frame.exposure_key)
        if passed and choice.note:
            choice.note += f" ({passed})"
        elif passed and choice.uncorrected:
            choice.uncorrected[0] = choice.uncorrected[0].removesuffix(")") + f"; {passed})"
        return choice

    def _dark(self, frame, bias):
        darks = self.lookup.find(frame, "dark")
        if self.dark_scaling == "never" and not _exact_dark(frame, darks.refs):
            # no scaling: a dark of the frame's own exposure from a borrowable night
            same = self.lookup.find(frame, "dark", frame.exposure_key)
            darks = same if same.refs else darks
        if not darks.refs:
            return _DarkChoice(uncorrected=[f"dark current (no darks within {self.max_days:g} d)"])
        # a dark master keeps its bias when no bias was within its night's reach
        if self.lookup.find(frame, "bias", night=darks.night).refs:
            return self._bias_subtracted_dark(frame, bias, darks)
        return self._dark_holding_bias(frame, bias, darks)

    def _bias_subtracted_dark(self, frame, bias, darks):
        if bias is None:
            return _DarkChoice(uncorrected=["dark current (darks are bias-subtracted but no bias)"])
        where = darks.origin(frame.night)
        exact = _exact_dark(frame, darks.refs)
        if exact is None and self.dark_scaling == "never":
            nearest = _nearest_dark(frame, darks.refs)
            return _DarkChoice(
                uncorrected=[
                    f"dark current (no {frame.exposure_key} s dark within "
                    f"{self.max_days:g} d, and calibration.dark_scaling is never: "
                    f"the {nearest.key} s dark is not scaled, as amplifier glow does "
                    "not scale with exposure)"
                ]
            )
        ref = exact or _nearest_dark(frame, darks.refs)
        scale = frame.exposure / ref.exposure if ref.exposure else 0.0
        if exact and self.dark_scaling == "never":
            scale = 1.0
        if exact and exposure_seconds(frame.exposure) != exposure_seconds(ref.exposure):
            note = (
                f"dark {ref.key} s: {where}, exposure matches ({frame.exposure:g} s is "
                f"within calibration.exposure_tolerance; scaled by {scale:.5g})"
            )
        elif exact:
            note = f"dark {ref.key} s: {where}, exposure matches"
        else:
            note = (
                f"dark {ref.key} s: {where}, scaled by {scale:.4g} "
                f"to {frame.exposure_key} s (no {frame.exposure_key} s dark)"
            )
        return _DarkChoice(ref, scale, note=note)

    def _dark_holding_bias(self, frame, bias, darks):
        """The darks still hold the bias: they can only stand in for bias + dark."""
        where = darks.origin(frame.night)
        exact = _exact_dark(frame, darks.refs)
        if exact:
            why = "no bias frames" if bias is None else "the dark holds its bias"
            note = f"{why}: dark {exact.key} s ({where}) serves as bias + dark"
            return _DarkChoice(exact, 1.0, includes_bias=True, note=note)
        if bias is not None:
            return _DarkChoice(
                uncorrected=[
                    f"dark current (no {frame.exposure_key} s dark; darks of night "
                    f"{darks.night} include the bias and cannot be scaled)"
                ]
            )
        nearest = _nearest_dark(frame, darks.refs)
        left = frame.exposure - nearest.exposure
        note = (
            f"no bias frames and no {frame.exposure_key} s dark: dark {nearest.key} s "
            f"({where}) subtracted unscaled as bias + {nearest.key} s of dark current"
        )
        uncorrected = []
        if left > 0:
            uncorrected.append(f"dark current of the remaining {left:g} s (hot pixels stay)")
        elif left < 0:
            uncorrected.append(f"{-left:g} s of dark current over-subtracted")
        return _DarkChoice(nearest, 1.0, includes_bias=True, note=note, uncorrected=uncorrected)

    def flat(self, frame):
        """(flat ref, note) of the nearest flat in the frame's filter, or
        CalibrationMissing."""
        found = self.lookup.find(frame, "flat", frame.filter_key)
        if not found.refs:
            passed = self.lookup.near_misses(frame, "flat", frame.filter_key)
            other_filter = any(p.startswith("flats exist for") for p in passed)
            spelt = frame.filter or "none"
            raise CalibrationMissing(
                frame.night,
                frame.relpath,
                f"no flat for filter {spelt!r} within {self.max_days:g} days of "
                f"{frame.night} ({frame.describe_geometry()})"
                + (f": {'; '.join(passed)}" if passed else ""),
                (
                    f"if {spelt!r} is one of those filters spelt otherwise, add "
                    f"`filters.aliases` to config.yaml (e.g. {{'{spelt}': <name>}}) or "
                    "correct it with `header_overrides`; else "
                    if other_filter
                    else ""
                )
                + (
                    "if those settings do not change the flat, leave the key out of "
                    "calibration.camera_keys; "
                    if any("other camera settings" in p for p in passed)
                    else ""
                )
                + "add flats in this filter, raise calibration.max_borrow_days, "
                "or set calibration.on_missing: uncalibrated to stack such frames "
                "without a flat, or skip to leave them out",
            )
        note = f"flat {frame.filter_key}: {found.origin(frame.night)}"
        if frame.filter_spelling is not None:
            note += f" (filter {frame.filter_spelling!r} read as {frame.filter!r}: filters.aliases)"
        return found.refs[0], note

    # --- recipes ---------------------------------------------------------
    def recipe(self, frame, with_flat=True, strict=False):
        """The steps decided first, then the notes written from them.

        With on_missing: uncalibrated (and not ``strict``) what is missing
        is left out and said, instead of CalibrationMissing."""
        lenient = self.on_missing == "uncalibrated" and not strict
        bias, bias_note = self.bias(frame)
        dark = self.dark(frame, bias)
        if dark.includes_bias:
            bias = bias_note = None  # subtracting a bias as well would remove it twice
        neither = bias is None and dark.ref is None
        pedestal = neither and not self.overscan
        if pedestal and not lenient:
            raise CalibrationMissing(
                frame.night,
                frame.relpath,
                f"no bias frames and no usable dark frames within "
                f"{self.max_days:g} days ({frame.describe_geometry()})"
                + "".join(f": {why}" for why in [self.why_not(frame, "bias")] if why),
                "add bias or dark frames of this binning to the night, raise "
                "calibration.max_borrow_days, enable overscan subtraction, or set "
                "calibration.on_missing: uncalibrated to stack such frames with only a "
                "pedestal subtracted",
            )
        flat, flat_note, no_flat = None, None, []
        if with_flat:
            try:
                flat, flat_note = self.flat(frame)
            except CalibrationMissing as exc:
                if not lenient:
                    raise
                no_flat = [f"flat field ({exc.problem})"]
        if pedestal:
            neither_note = "no bias, dark or overscan: a pedestal subtracted instead"
        else:
            neither_note = "no bias or dark: only the overscan level removed"
        notes = [bias_note, dark.note, neither_note if neither else None, flat_note]
        return Recipe(
            bias=bias,
            dark=dark.ref,
            dark_scale=dark.scale,
            dark_includes_bias=dark.includes_bias,
            flat=flat,
            overscan=self.overscan,
            pedestal=pedestal,
            notes=[note for note in notes if note],
            uncorrected=dark.uncorrected + (["bias structure"] if neither else []) + no_flat,
        )

    def dark_frame_recipe(self, frame):
        """A raw dark is only bias-subtracted; with no bias in reach its
        master keeps the bias, and frames later use it as bias + dark."""
        bias, note = self.bias(frame)
        if bias is None:
            return Recipe(
                overscan=self.overscan,
                dark_includes_bias=True,
                notes=["no bias within reach: master dark keeps the bias"],
            )
        return Recipe(bias=bias, overscan=self.overscan, notes=[note])

    def _odd(self, frame, usual_geometry):
        """A light unlike the night's usual ones (a test exposure, a subframe)
        whose camera has no calibration frames of its shape that night: not a
        second camera of the night, which has its own."""
        if frame.geometry() == usual_geometry:
            return False
        return not any(
            m.geometry == frame.geometry() and same_camera(m.camera, frame.camera)
            for m in self.masters.values()
            if m.ref.night == frame.night
        )

    def _missing(self, exc, frame):
        if self.on_missing == "skip":
            frame.problem = say(exc.problem, exc.fix)
            return True
        if self.on_missing == "uncalibrated":
            # only a flat gets here (a light is calibrated with what there is):
            # a flat with its bias in would divide the lights wrongly
            frame.problem = say(
                f"{exc.problem}: a flat cannot be used with its bias in, so the "
                "lights are stacked without it",
                "add bias or dark frames of this binning, or enable overscan subtraction",
            )
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
                master.recipes = {f.relpath: self.dark_frame_recipe(f) for f in master.frames}
        for ref in sorted(r for r in self.masters if r.kind == "flat"):
            master = self.masters[ref]
            try:
                master.recipes = {
                    f.relpath: self.recipe(f, with_flat=False, strict=True) for f in master.frames
                }
            except CalibrationMissing as exc:
                for frame in master.frames:
                    self._missing(exc, frame)
                self.lookup.forget(ref)

    def plan_lights(self):
        lights = {}
        for name, night in self.nights.items():
            science = [f for f in night.frames if f.usable and f.kind == "light"]
            shapes = Counter(f.geometry() for f in science)
            usual = shapes.most_common(1)
            for frame in science:
                # an odd frame is not calibrated with less: it is left out;
                # but under on_missing: uncalibrated, several lights of one
                # shape are a camera (a smart telescope beside a CCD), not a
                # test exposure, and are calibrated with what there is
                odd = self._odd(frame, usual[0][0]) and not (
                    self.on_missing == "uncalibrated" and shapes[frame.geometry()] > 1
                )
                try:
                    lights[(name, frame.stem)] = (frame, self.recipe(frame, strict=odd))
                except CalibrationMissing as exc:
                    if odd:
                        # one odd frame (a test exposure, a subframe) must not
                        # stop the night: it is the frame, not the calibration
                        example = next(f for f in science if f.geometry() == usual[0][0])
                        frame.problem = say(
                            f"{frame.describe_geometry()} differs from the night's other "
                            f"science frames ({example.describe_geometry()}, "
                            f"{usual[0][1]} frames) and no calibration frames of its "
                            f"shape are within reach ({exc.problem})",
                            "add calibration frames of its shape and binning, or list it "
                            "under exclude",
                        )
                    else:
                        self._missing(exc, frame)
        return lights


def make_plan(
    nights,
    max_borrow_days=30.0,
    overscan=False,
    on_missing="error",
    temperature_tolerance=2.0,
    dark_scaling="allow",
):
    """The whole calibration plan for an inventory ({night: Night});
    ``temperature_tolerance`` in deg C (None: set points ignored),
    ``dark_scaling`` allow or never; ``on_missing``: "error"
    (CalibrationMissing), "skip" (the frame left out, the reason in its
    ``problem``) or "uncalibrated" (calibrated with what there is, said in
    its recipe)."""
    if on_missing not in ("error", "skip", "uncalibrated"):
        raise ValueError(f"on_missing {on_missing!r}: error, skip or uncalibrated")
    planner = _Planner(
        nights, max_borrow_days, overscan, on_missing, temperature_tolerance, dark_scaling
    )
    planner.plan_masters()
    lights = planner.plan_lights()
    return Plan(masters=planner.masters, lights=lights, nights=nights)


def _exact_dark(frame, darks):
    """The dark of the frame's own exposure, or None."""
    return next((ref for ref in darks if ref.key == frame.exposure_key), None)


def _nearest_dark(frame, darks):
    """The dark nearest in exposure; on a tie the longer, whose noise is lower."""
    return min(darks, key=lambda ref: (abs(ref.exposure - frame.exposure), -ref.exposure))
