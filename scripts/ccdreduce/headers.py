"""Header dialects: what kind of frame a file is, and its exposure, filter,
object and start time, read from configurable keywords.

Camera software disagrees on all of these. MaxIm DL/SBIG writes
``IMAGETYP = 'Light Frame'``, N.I.N.A./ASCOM ``'LIGHT'``, IRAF ``'object'``,
university lab cameras a numeric ``PICTTYPE``; EXPTIME is sometimes only
EXPOSURE. The keyword lists and accepted values come from the configuration
(``headers`` in config.yaml); this module only applies them.
"""

import hashlib
import math
import re

from .errors import Problem

FRAME_TYPES = ("bias", "dark", "flat", "light")

#: Keywords that matter besides the configurable ones: the image shape and
#: the binning, which must agree inside a master group.
SHAPE_KEYWORDS = ("NAXIS1", "NAXIS2", "XBINNING", "YBINNING", "CCDSUM")
#: Where the telescope was and where it pointed: enough for the night log's
#: airmass and BJD_TDB without opening the raw files again.
SITE_TARGET_KEYWORDS = ("SITELAT", "SITELONG", "SITEELEV", "RA", "DEC", "OBJCTRA", "OBJCTDEC")
#: The cooler's set point, else the sensor's measured temperature (deg C):
#: dark current doubles every ~6 C, so darks match lights by it.
TEMPERATURE_KEYWORDS = ("SET-TEMP", "CCD-TEMP")


def wanted_keywords(keywords, camera_keys=()):
    """All header keywords the inventory must read, in a stable order."""
    names = []
    for group in keywords.values():
        names.extend(k.upper() for k in group)
    names.extend(SHAPE_KEYWORDS)
    names.extend(SITE_TARGET_KEYWORDS)
    names.extend(("INSTRUME", "TELESCOP"))  # which camera, which telescope
    names.extend(TEMPERATURE_KEYWORDS)
    names.extend(k.upper() for k in camera_keys)
    return sorted(set(names))


def camera_values(fields, camera_keys):
    """The camera's identity: each of ``camera_keys`` as a normalised string
    ('' where the header lacks it), in key order. 'Normal' and 'normal',
    2.0 and 2 are alike."""
    values = []
    for key in camera_keys:
        value = fields.get(key.upper())
        values.append("" if value is None or str(value).strip() == "" else _normalise(value))
    return tuple(values)


def set_temperature(fields):
    """The sensor's set point in deg C (SET-TEMP, else CCD-TEMP), or None."""
    for key in TEMPERATURE_KEYWORDS:
        value = fields.get(key)
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(str(value).strip())
        except ValueError:
            continue
        if math.isfinite(number):
            return number
    return None


def _first(fields, names):
    """(keyword, value) of the first of ``names`` present in ``fields``."""
    for name in names:
        value = fields.get(name.upper())
        if value is not None and str(value).strip() != "":
            return name.upper(), value
    return None, None


def _normalise(value):
    """Compare type values without case or padding; 2.0 and '2' are alike."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):  # '2.0' written as text is the number 2
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and math.isfinite(number):
            value = number
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return re.sub(r"\s+", " ", str(value)).strip().lower()


class HeaderError(Problem):
    """A header lacks or garbles a value; ``fix`` says what to do."""


def frame_type(fields, keywords, frame_types):
    """'bias', 'dark', 'flat' or 'light' from the first type keyword present."""
    names = keywords["frame_type"]
    key, value = _first(fields, names)
    if key is None:
        raise HeaderError(
            f"no frame type keyword (looked for {', '.join(names)})",
            "add the camera's keyword to headers.keywords.frame_type in "
            "config.yaml, or give the file's type with header_overrides",
        )
    wanted = _normalise(value)
    for kind in FRAME_TYPES:
        if wanted in {_normalise(v) for v in frame_types.get(kind, [])}:
            return kind
    raise HeaderError(
        f"unknown frame type {key} = {value!r}",
        f"add {str(value).strip()!r} to headers.frame_types.<bias|dark|flat|"
        "light> in config.yaml if it is a calibration or science frame, or "
        "list the file under exclude",
    )


def exposure_time(fields, keywords):
    """Exposure time in seconds, from EXPTIME or its fall-backs."""
    names = keywords["exposure_time"]
    key, value = _first(fields, names)
    if key is None:
        raise HeaderError(
            f"no exposure time (looked for {', '.join(names)})",
            "give it with header_overrides in config.yaml, e.g. {'<night>/<file>': {EXPTIME: 30}}",
        )
    if isinstance(value, bool):
        number = math.nan
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            number = math.nan
    if not math.isfinite(number) or number < 0:
        hint = ""
        if isinstance(value, str) and "," in value:
            hint = " (a decimal comma, as some ZWO drivers write)"
        raise HeaderError(
            f"{key} = {value!r} is not a usable exposure time in seconds{hint}",
            f"give the right value with header_overrides in config.yaml, e.g. "
            f"{{'<night>/<file>': {{{key}: "
            f"{str(value).replace(',', '.').strip()}}}}}; raw files are "
            "never edited",
        )
    return number


def text_value(fields, names, default=None):
    """A string value (filter, object, DATE-OBS) stripped of padding."""
    key, value = _first(fields, names)
    if key is None:
        return default
    return str(value).strip()


def binning(fields):
    """(x, y) binning from XBINNING/YBINNING or CCDSUM; (1, 1) if unknown."""
    if fields.get("XBINNING") is not None or fields.get("YBINNING") is not None:
        return int(fields.get("XBINNING") or 1), int(fields.get("YBINNING") or 1)
    ccdsum = fields.get("CCDSUM")
    if ccdsum:
        parts = str(ccdsum).split()
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return int(parts[0]), int(parts[1])
    return 1, 1


def exposure_seconds(seconds):
    """The exposure as frames are grouped by it: six significant digits, so
    that 29.9999999 and 30 are one group (and one master dark)."""
    return float(f"{seconds:.6g}")


def exposure_key(seconds):
    """The exposure as used in file names: 30 -> '30', 1.5 -> '1.5'."""
    return f"{exposure_seconds(seconds):g}"


def _roundness(seconds):
    """Significant digits of an exposure: 300 has 1, 300.1 has 4."""
    return len(exposure_key(seconds).replace(".", "").replace("-", "").strip("0"))


def exposure_groups(exposures, tolerance):
    """{exposure: group exposure}: exposures within ``tolerance`` (a fraction)
    of a group's shortest are one group, named by its roundest value (fewest
    significant digits; then the commonest, then the shortest): 300 and
    300.1 s are one group, 300 s. ``exposures`` lists every frame's (counts
    matter); a tolerance of 0 groups only equal values (to 6 digits)."""
    counts = {}
    for seconds in exposures:
        key = exposure_seconds(seconds)
        counts[key] = counts.get(key, 0) + 1
    groups, current = [], []
    for seconds in sorted(counts):
        if current and seconds > current[0] * (1 + tolerance):
            groups.append(current)
            current = []
        current.append(seconds)
    if current:
        groups.append(current)
    named = {}
    for group in groups:
        name = min(group, key=lambda s: (_roundness(s), -counts[s], s))
        named.update({s: name for s in group})
    return named


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(value):
    """A header value made safe as one path component: 'NGC 2362' -> 'NGC_2362'.

    Only letters, digits, '.', '_' and '-' survive, with no leading or
    trailing dots (so no '..' and no hidden files); an empty result is '_'.
    No header value can place a file outside its folder.
    """
    name = _UNSAFE.sub("_", str(value).strip()).strip("._")
    return name or "_"


#: Longest path name made from a header value (file systems allow 255 bytes;
#: stacks nest object/filter/method.fits).
MAX_NAME = 64


def _digest(value, size=6):
    return hashlib.sha1(str(value).encode("utf-8", "surrogateescape")).hexdigest()[:size]


def unique_names(values):
    """{value: path name} for distinct header values, one-to-one.

    Each value gets :func:`safe_name` when no other value shares it and it
    fits in MAX_NAME characters; values that would share a name ('a/b' and
    'a b', '../../etc' and 'etc', 'Hα' and 'Hβ') or are too long get a short
    digest of the value as suffix, except the one value (if any) that is
    its own safe name, which keeps it. Distinct values never merge.
    """
    values = sorted({str(v) for v in values})
    groups = {}
    for value in values:
        groups.setdefault(safe_name(value)[:MAX_NAME], []).append(value)
    for size in (6, 12, 40):  # a longer digest in the unlikely case of a clash
        names = {}
        for name, group in groups.items():
            for value in group:
                plain = len(group) == 1 and len(safe_name(value)) <= MAX_NAME
                if plain or value == name:
                    names[value] = name
                else:
                    names[value] = f"{name[: MAX_NAME - size - 1]}-{_digest(value, size)}"
        if len(set(names.values())) == len(names):
            return names
    raise ValueError(f"cannot name {len(values)} header values uniquely")
