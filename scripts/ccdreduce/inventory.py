"""The inventory: every night folder, every FITS file in it, and what each
file is (type, exposure, filter, object, start time, shape).

Reading thousands of headers on every Snakemake parse would be slow, and a
cluster job re-parses the workflow, so the few header values we need are
cached per night in a JSON file keyed by path, size and modification time.
An unchanged archive then costs one ``stat`` per file.
"""

import filecmp
import fnmatch
import hashlib
import json
import os
import statistics
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import atomic, bayer, dateobs, fitsfile
from .errors import ConfigProblem, say
from .headers import (
    SITE_TARGET_KEYWORDS,
    HeaderError,
    binning,
    camera_values,
    exposure_groups,
    exposure_key,
    exposure_seconds,
    exposure_time,
    frame_type,
    safe_name,
    set_temperature,
    text_value,
    unique_names,
    wanted_keywords,
)

FITS_SUFFIXES = (
    ".fits",
    ".fit",
    ".fts",
    ".fits.gz",
    ".fit.gz",
    ".fts.gz",
    ".fits.fz",
    ".fit.fz",
    ".fts.fz",
)
#: 4: each file's content sample (duplicates); 5: problems by errors.say;
#: 6: camera keys, set-point temperature and the Bayer keys (issue 15)
CACHE_VERSION = 6
#: calibration.camera_keys when a config does not give them (the schema's default)
CAMERA_KEYS = ("INSTRUME", "XBINNING", "YBINNING", "GAIN", "OFFSET", "READOUTM")
#: Bytes read from the start, middle and end of a file to recognise a copy:
#: the header and thousands of noisy pixels tell two exposures apart, and a
#: first parse of 10,000 frames reads 0.5 GB rather than every byte.
SAMPLE_BYTES = 16384
#: What a colour (Bayer) sensor's header says of its pattern (bayer.pattern).
BAYER_KEYWORDS = ("BAYERPAT", "COLORTYP", "XBAYROFF", "YBAYROFF", "ROWORDER")
_EMPTY_FIX = "copy the file again from the camera computer, or move it out of the night folder"


def fits_stem(name):
    """'a.fits.fz' -> 'a'; None when the name is not a FITS name."""
    lower = name.lower()
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


@dataclass
class Frame:
    """One raw FITS file and what its header says."""

    night: str
    relpath: str  # relative to raw_dir, with '/' separators
    path: str
    stem: str
    kind: str | None = None
    exposure: float | None = None
    filter: str | None = None
    object: str | None = None
    date_obs: str | None = None
    shape: tuple | None = None  # numpy order (ny, nx)
    binning: tuple = (1, 1)
    overrides: dict = field(default_factory=dict)
    site_target: dict = field(default_factory=dict)  # SITELAT... OBJCTDEC as found
    sample: str | None = None  # content digest, to find copies (content_sample)
    instrument: str | None = None  # INSTRUME: masters never cross cameras
    filter_name: str | None = None  # path names of filter and object (assign_names)
    object_name: str | None = None
    telescope: str | None = None  # TELESCOP: borrowed flats never cross telescopes
    # calibration.camera_keys as normalised strings, in key order ('' where
    # the header lacks one): masters serve frames of the same camera
    camera: tuple = ()
    camera_keys: tuple = ()  # the keys those values are of, for the words
    temperature: float | None = None  # set point: SET-TEMP, else CCD-TEMP (deg C)
    # the exposure group (calibration.exposure_tolerance, assign_exposure_groups):
    # 300.1 s lights are in the 300 s group; ``exposure`` stays the true one
    exposure_group: float | None = None
    # the filter as the header spells it, when filters.aliases renamed it
    filter_spelling: str | None = None
    # a colour sensor's 2x2 pattern at the raw frame's pixel (row 0, col 0)
    # after XBAYROFF/YBAYROFF/ROWORDER, e.g. "GRBG"; None for mono (bayer.pattern)
    bayer: str | None = None
    problem: str | None = None

    @property
    def usable(self):
        return self.problem is None

    @property
    def exposure_key(self):
        """The exposure group in file names: '300' for a 300.1 s frame when
        300 and 300.1 s are one group."""
        return exposure_key(self.exposure if self.exposure_group is None else self.exposure_group)

    @property
    def filter_key(self):
        """The filter as a path name, one-to-one over the archive (assign_names)."""
        return self.filter_name or safe_name(self.filter or "none")

    @property
    def object_key(self):
        return self.object_name or safe_name(self.object or "unknown")

    def geometry(self):
        """What must agree between a frame and the masters applied to it:
        shape, binning and the camera (INSTRUME) that took it."""
        return self.shape, self.binning, self.instrument

    def describe_geometry(self):
        ny, nx = self.shape
        camera = f", camera {self.instrument!r}" if self.instrument else ""
        return f"{nx}x{ny} pixels, binning {self.binning[0]}x{self.binning[1]}{camera}"

    def describe_camera(self):
        """The camera settings in words: "GAIN '120', OFFSET '30'" (keys the
        header has, but INSTRUME and binning: describe_geometry says them)."""
        said = [
            f"{key} {value!r}"
            for key, value in zip(self.camera_keys, self.camera, strict=False)
            if value != "" and key not in ("INSTRUME", "XBINNING", "YBINNING")
        ]
        return ", ".join(said) or "no other camera keys"


@dataclass
class Night:
    name: str
    directory: str
    frames: list
    ignored: list  # (relpath, reason) of files that are not FITS

    @property
    def date(self):
        """When the night was observed: median DATE-OBS, else the folder name."""
        stamps = [dateobs.utc_datetime(f.date_obs) for f in self.frames if f.usable]
        stamps = sorted(s.timestamp() for s in stamps if s is not None)
        if stamps:
            return datetime.fromtimestamp(statistics.median_low(stamps), UTC)
        return parse_night_name(self.name)


def parse_night_name(name):
    """'2025-03-01', '20250301' or '2025_03_01' (with any suffix) as a date."""
    digits = "".join(ch for ch in name[:10] if ch.isdigit())
    if len(digits) >= 8:
        try:
            return datetime.strptime(digits[:8], "%Y%m%d").replace(tzinfo=UTC)
        except ValueError:
            return None
    return None


def read_header_fields(path, wanted):
    """The wanted header values of the first 2-D image HDU of ``path``.

    Returns a dict of keyword -> value, or ``{"_problem": reason}`` when the
    file cannot be used (empty, not FITS, truncated, no image).
    """
    path = str(path)
    size = os.path.getsize(path)
    if size == 0:
        return {"_problem": say("file is empty (0 bytes)", _EMPTY_FIX)}
    # astropy's warnings ("may have been truncated"...) are said better below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fields = fitsfile.image_fields(path, size, wanted, fix=_EMPTY_FIX)
    if not fields.get("_problem"):
        fields["_sample"] = content_sample(path, size)
    return fields


def content_sample(path, size=None):
    """A digest of the file's size and bytes sampled at its start, middle
    and end: equal for byte-identical copies, and (confirmed by a full
    comparison, see mark_duplicates) a cheap way to find them."""
    size = os.path.getsize(path) if size is None else size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        for offset in sorted(
            {0, max(size // 2 - SAMPLE_BYTES // 2, 0), max(size - SAMPLE_BYTES, 0)}
        ):
            handle.seek(offset)
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()[:32]


class HeaderCache:
    """Per-night JSON cache of header fields, keyed by (size, mtime_ns)."""

    def __init__(self, cache_file, wanted):
        self.cache_file = Path(cache_file) if cache_file else None
        self.wanted = list(wanted)
        self.entries = {}
        self.changed = False
        if self.cache_file and self.cache_file.exists():
            try:
                data = json.loads(self.cache_file.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("version") == CACHE_VERSION and data.get("keywords") == self.wanted:
                self.entries = data.get("files", {})

    def fields(self, relpath, path):
        stat = os.stat(path)
        key = [stat.st_size, stat.st_mtime_ns]
        entry = self.entries.get(relpath)
        if entry is None or entry["key"] != key:
            entry = {"key": key, "fields": read_header_fields(path, self.wanted)}
            self.entries[relpath] = entry
            self.changed = True
        return entry["fields"]

    def save(self, keep):
        """Write the cache if it changed; drop entries of files now gone."""
        stale = set(self.entries) - set(keep)
        for relpath in stale:
            del self.entries[relpath]
        if not self.cache_file or not (self.changed or stale):
            return
        # atomic: parallel parses never see half a file
        with atomic.written_beside(self.cache_file) as tmp:
            tmp.write_text(
                json.dumps(
                    {"version": CACHE_VERSION, "keywords": self.wanted, "files": self.entries},
                    sort_keys=True,
                )
            )


def _matches(relpath, patterns):
    return [p for p in patterns if fnmatch.fnmatchcase(relpath, p)]


def describe(
    fields,
    relpath,
    path,
    night,
    headers_cfg,
    overrides_cfg,
    exclude,
    camera_keys=CAMERA_KEYS,
    aliases=None,
):
    """A Frame from cached header fields, the overrides, the filter aliases
    (filters.aliases: spelling -> name) and the exclusions."""
    frame = Frame(night=night, relpath=relpath, path=str(path), stem=fits_stem(Path(path).name))
    if fields.get("_problem"):
        frame.problem = fields["_problem"]
        return frame
    fields = dict(fields)
    for pattern in _matches(relpath, list(overrides_cfg)):
        for key, value in overrides_cfg[pattern].items():
            fields[key.upper()] = value
            frame.overrides[key.upper()] = value
    frame.shape = tuple(fields["_shape"])
    frame.sample = fields.get("_sample")
    frame.instrument = text_value(fields, ["INSTRUME"])
    frame.telescope = text_value(fields, ["TELESCOP"])
    frame.site_target = {k: fields[k] for k in SITE_TARGET_KEYWORDS if k in fields}
    try:
        frame.bayer = bayer.pattern(fields, frame.shape)
    except ValueError as exc:
        frame.problem = say(
            str(exc), "correct BAYERPAT with header_overrides (e.g. {BAYERPAT: RGGB})"
        )
        return frame
    keywords = headers_cfg["keywords"]
    frame.object = text_value(fields, keywords["object"])
    frame.date_obs = text_value(fields, keywords["date_obs"])
    frame.filter = text_value(fields, keywords["filter"])
    if frame.filter is not None and frame.filter in (aliases or {}):
        frame.filter_spelling = frame.filter
        frame.filter = str(aliases[frame.filter])
    frame.camera_keys = tuple(k.upper() for k in camera_keys)
    frame.camera = camera_values(fields, frame.camera_keys)
    frame.temperature = set_temperature(fields)
    try:
        frame.binning = binning(fields)
    except ValueError:
        frame.problem = say(
            "binning keywords are not whole numbers", "correct them with header_overrides"
        )
        return frame
    hits = _matches(relpath, exclude)
    if hits:
        frame.problem = f"excluded by the configuration (exclude: {hits[0]!r})"
        return frame
    try:
        frame.kind = frame_type(fields, keywords, headers_cfg["frame_types"])
        try:
            frame.exposure = exposure_time(fields, keywords)
        except HeaderError:
            if frame.kind != "bias":
                raise
            frame.exposure = 0.0  # a bias has no exposure; some cameras omit it
        if frame.kind == "light" and frame.exposure == 0:
            # no rate, no scale, no transparency: it cannot join a stack
            key = next(k for k in keywords["exposure_time"] if k in fields)
            raise HeaderError(
                f"science frame with {key} = 0 s: a frame that collected no light "
                "cannot be scaled or stacked",
                f"give its true exposure with header_overrides in config.yaml, e.g. "
                f"{{'{relpath}': {{{key}: 30}}}}, or list it under exclude",
            )
    except HeaderError as exc:
        frame.problem = say(exc.problem, exc.fix)
    return frame


def scan_night(raw_dir, night, config, cache_dir=None):
    """Inventory one night folder (every FITS file below it)."""
    raw_dir = Path(raw_dir)
    directory = raw_dir / night
    headers_cfg = config["headers"]
    camera_keys = camera_keys_of(config)
    cache = HeaderCache(
        Path(cache_dir) / f"{night}.json" if cache_dir else None,
        sorted(set(wanted_keywords(headers_cfg["keywords"], camera_keys)) | set(BAYER_KEYWORDS)),
    )
    frames, ignored, seen = [], [], {}
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            relpath = path.relative_to(raw_dir).as_posix()
            if name.startswith("."):
                continue
            if fits_stem(name) is None:
                ignored.append((relpath, "not a FITS file name (.fits, .fit, .fts, .gz, .fz)"))
                continue
            fields = cache.fields(relpath, path)
            frame = describe(
                fields,
                relpath,
                path,
                night,
                headers_cfg,
                config.get("header_overrides") or {},
                config.get("exclude") or [],
                camera_keys,
                filter_aliases(config),
            )
            if frame.stem in seen:
                frame.problem = say(
                    f"has the same name stem as {seen[frame.stem]}, so both would "
                    f"calibrate to {frame.stem}.fits",
                    "list one of them under exclude in config.yaml",
                )
            else:
                seen[frame.stem] = relpath
            frames.append(frame)
    cache.save(keep=[f.relpath for f in frames])
    return Night(name=night, directory=str(directory), frames=frames, ignored=ignored)


def night_names(raw_dir):
    """The night folders of ``raw_dir``, sorted; names must be path-safe."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ConfigProblem(
            f"raw_dir {str(raw_dir)!r} is not a folder",
            "set raw_dir in config.yaml (or --config raw_dir=PATH) to the folder that "
            "holds one sub-folder per night",
        )
    names = sorted(p.name for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for name in names:
        if safe_name(name) != name:
            raise ConfigProblem(
                f"night folder {str(raw_dir / name)!r} has characters that are not "
                "safe in file paths",
                "rename the folder using only letters, digits, '.', '_' and '-' (e.g. "
                f"{safe_name(name)!r}); the files inside stay untouched",
            )
    if not names:
        raise ConfigProblem(
            f"raw_dir {str(raw_dir)!r} has no night folders",
            "put each night's FITS files in a sub-folder named for the night, e.g. "
            f"{str(raw_dir / '2025-03-01')!r}",
        )
    return names


def scan(raw_dir, config, cache_dir=None):
    """Inventory every night of ``raw_dir``: {night name: Night}."""
    nights = {
        night: scan_night(raw_dir, night, config, cache_dir) for night in night_names(raw_dir)
    }
    mark_duplicates(nights)
    assign_exposure_groups(nights, exposure_tolerance(config))
    assign_names(nights)
    return nights


def camera_keys_of(config):
    """calibration.camera_keys, upper case (the schema's default if absent)."""
    keys = (config.get("calibration") or {}).get("camera_keys", CAMERA_KEYS)
    return tuple(str(k).upper() for k in keys)


def filter_aliases(config):
    """filters.aliases: {spelling in headers: filter name}."""
    return {str(k): str(v) for k, v in ((config.get("filters") or {}).get("aliases") or {}).items()}


def exposure_tolerance(config):
    return float((config.get("calibration") or {}).get("exposure_tolerance", 0.01))


def assign_exposure_groups(nights, tolerance):
    """Each usable frame's exposure group over the whole archive
    (headers.exposure_groups): frames within ``tolerance`` (a fraction) are
    one group, so 300.1 s lights find the 300 s darks as their own exposure.
    Archive-wide, so that a night's grouping never depends on which night
    asks."""
    frames = [
        f for night in nights.values() for f in night.frames if f.usable and f.exposure is not None
    ]
    groups = exposure_groups([f.exposure for f in frames], tolerance)
    for frame in frames:
        frame.exposure_group = groups[exposure_seconds(frame.exposure)]


_NAMED = (("FILTER", "filter", "none"), ("OBJECT", "object", "unknown"))


def assign_names(nights):
    """Path names for every frame's filter and object, one-to-one over the
    archive (headers.unique_names): distinct values never share a master,
    a stack or a folder."""
    frames = [f for night in nights.values() for f in night.frames]
    for _, attribute, default in _NAMED:
        names = unique_names({getattr(f, attribute) or default for f in frames})
        for frame in frames:
            setattr(frame, f"{attribute}_name", names[getattr(frame, attribute) or default])


def renamed(nights):
    """In words, for the log: the values whose path name is not their plain
    safe name, because that would merge them with another value or be too long."""
    said = set()
    for night in nights.values():
        for frame in night.frames:
            for what, attribute, default in _NAMED:
                value = getattr(frame, attribute) or default
                name = getattr(frame, f"{attribute}_name")
                if name and name != safe_name(value):
                    said.add(
                        f"{what} {value!r} is named {name!r}: {safe_name(value)!r} would "
                        "merge it with another value, or be too long"
                    )
    return sorted(said)


def mark_duplicates(nights):
    """A byte-identical copy of a frame (another name, another night) is
    counted once: the first by night and path is used, each copy excluded
    naming it. Candidates share a content sample; a full comparison decides."""
    first = {}
    for night in nights.values():
        for frame in night.frames:
            if not frame.usable or not frame.sample:
                continue
            original = first.setdefault(frame.sample, frame)
            if original is not frame and filecmp.cmp(original.path, frame.path, shallow=False):
                frame.problem = say(
                    f"byte-identical copy of {original.relpath}, which is used: a frame "
                    "counts once",
                    "delete the copy, or list one of them under exclude",
                )
