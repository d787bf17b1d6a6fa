"""Combining a stack of frames pixel by pixel: average, median, min-max
rejection and sigma clipping, NaN-aware, optionally weighted, in row bands.

Two paths give the same numbers:

- the exact path sorts each pixel's values once (NaN sorts last). In sorted
  order every rejection scheme here keeps one contiguous window of values:
  min-max drops the ends, and sigma clipping about the median only ever
  cuts a low tail and a high tail. Each method is then two indices per pixel.
  It reproduces astropy.stats.sigma_clip / ccdproc.combine.
- the fast path serves the pixels that need no more: no NaN, and (sigma
  clipping) nothing outside the first bounds, which is already the converged
  answer. Medians there come from np.partition. Only the rest, usually a few
  per cent (cosmic rays, edges), goes through the exact path.

Bands are combined in a thread pool (numpy releases the GIL), and files are
read band by band, each input once, so that memory stays under a cap.

What to do is a CombineSpec: the method and every parameter, its defaults
declared once per kind (DEFAULTS: masters, stacks), built from a config entry
whose keys are checked. Min-max's counts come from one function,
minmax_counts, on both paths, for every pixel and in HISTORY.
"""

import dataclasses
import difflib
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import ConfigProblem, ConfigProblems
from .fitsfile import open_bands
from .robust import MAD_TO_SIGMA  # exact, as astropy.stats.mad_std

METHODS = ("average", "median", "minmax", "sigclip")
#: The parameters each method uses; a config entry may give no others.
METHOD_PARAMETERS = {
    "average": ("weights",),
    "median": (),
    "minmax": ("n_low", "n_high", "weights"),
    "sigclip": ("sigma_lower", "sigma_upper", "maxiters", "cenfunc", "stdfunc", "weights"),
}

#: The one place the defaults of each kind of combine are declared: a key a
#: config entry leaves out takes these. Masters follow the observatory's
#: recipe (5/5 sigma about the median, MAD width, one pass; minmax 1/1);
#: stacks reject harder, with more frames (3/3 sigma, std width, up to 10
#: passes; minmax 3/3).
DEFAULTS = {
    "master": {
        "method": "sigclip",
        "sigma_lower": 5,
        "sigma_upper": 5,
        "maxiters": 1,
        "cenfunc": "median",
        "stdfunc": "mad_std",
        "n_low": 1,
        "n_high": 1,
        "weights": False,
    },
    "stack": {
        "method": None,  # a stack entry names its method
        "sigma_lower": 3,
        "sigma_upper": 3,
        "maxiters": 10,
        "cenfunc": "median",
        "stdfunc": "std",
        "n_low": 3,
        "n_high": 3,
        "weights": False,
    },
}
#: Keys a config entry of each kind may hold (masters are never weighted).
ENTRY_KEYS = {
    "master": tuple(k for k in DEFAULTS["master"] if k != "weights"),
    "stack": tuple(DEFAULTS["stack"]),
}

log = logging.getLogger(__name__)


def minmax_counts(n, n_low, n_high):
    """(low, high): how many of ``n`` values min-max rejection drops at each end.

    The rule, the same everywhere (every pixel, the fast and the exact path,
    HISTORY): the configured ``n_low`` and ``n_high``, unless together they
    would leave no value (``n_low + n_high >= n``); then both are reduced by
    one at a time, never below 0, until at least one value is kept (IRAF's
    nkeep of one). A symmetric request stays symmetric, so the result stays
    median-like: 3/3 of 6 values drops 2/2 (the mean of the middle two, the
    median), 3/3 of 4 drops 1/1, 3/3 of 2 drops nothing (the mean of both).
    """
    n, low, high = int(n), int(n_low), int(n_high)
    if n <= 0:
        return 0, 0
    while low + high >= n:
        low, high = max(low - 1, 0), max(high - 1, 0)
    return low, high


def minmax_note(n, n_low, n_high, varying=False):
    """One line for HISTORY and the log: what min-max rejected of ``n`` frames.

    ``varying``: coverage differs from pixel to pixel (a stack's edges), so
    the counts are those where all ``n`` frames overlap.
    """
    low, high = minmax_counts(n, n_low, n_high)
    where = " where all overlap" if varying else ""
    note = f"minmax: {n} frames: rejected {low} low {high} high{where}"
    if (low, high) != (n_low, n_high):
        note += f" (configured {n_low}/{n_high}, reduced symmetrically to keep >= 1)"
    if varying:
        note += "; a pixel fewer frames cover: the same rule on its own count"
    return note


@dataclasses.dataclass(frozen=True)
class CombineSpec:
    """How to combine a stack: the method and every parameter it uses.

    Build one with :meth:`from_config` (a config entry, checked, completed
    from DEFAULTS of its kind) or :meth:`of` (keyword arguments). ``params()``
    is what provenance records; ``as_config()`` the entry with every default
    filled in, which rules pass on as a param.
    """

    method: str
    sigma_lower: float
    sigma_upper: float
    maxiters: int | None
    cenfunc: str
    stdfunc: str
    n_low: int
    n_high: int
    weights: bool = False
    kind: str = "master"  # whose defaults: 'master' or 'stack'

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(
                f"unknown combine method {self.method!r}; use one of {', '.join(METHODS)}"
            )

    @classmethod
    def of(cls, method, kind="master", **params):
        """A spec from keyword arguments; the rest from DEFAULTS[kind]."""
        unknown = sorted(set(params) - set(DEFAULTS[kind]))
        if unknown:
            raise TypeError(
                f"unknown combine parameter {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(k for k in DEFAULTS[kind] if k != 'method')}"
            )
        return cls(**(DEFAULTS[kind] | params | {"method": method, "kind": kind}))

    @classmethod
    def from_config(cls, entry, kind, where=None):
        """The spec of one config entry of ``kind`` ('master' or 'stack').

        Raises ConfigProblem, naming ``where`` (the entry's place in the
        config), the key and the fix, for a key that is not known and for a
        key the entry's method does not use: neither may be ignored silently.
        """
        where = where or f"{kind} combine entry"
        entry = dict(entry or {})
        problems = check_entry(entry, kind, where)
        if problems:
            raise problems[0]
        return cls(**(DEFAULTS[kind] | entry | {"kind": kind}))

    def params(self):
        """The parameters this spec's method uses, by name (for HISTORY)."""
        keys = [k for k in METHOD_PARAMETERS[self.method] if k in ENTRY_KEYS[self.kind]]
        return {key: getattr(self, key) for key in keys}

    def as_config(self):
        """A complete config entry: the method and the parameters it uses."""
        return {"method": self.method} | self.params()

    def minmax_counts(self, n):
        """(low, high) rejected of ``n`` values (see minmax_counts)."""
        return minmax_counts(n, self.n_low, self.n_high)

    def notes(self, n, varying=False):
        """What HISTORY should say beyond params(): the counts min-max used."""
        if self.method != "minmax":
            return []
        return [minmax_note(n, self.n_low, self.n_high, varying)]


def check_entry(entry, kind, where):
    """Problems with one combine entry: ConfigProblems naming entry, key and fix.

    Only the keys are checked here; types and allowed values are the
    schema's. Run before the schema, so that a typo is reported with its
    likely meaning rather than as a bare schema error.
    """
    if not isinstance(entry, dict):
        return []  # the schema says what is wrong with it
    allowed = ENTRY_KEYS[kind]
    problems = []
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(
                ConfigProblem(
                    f"unknown key {key!r}",
                    f"{hint}a {kind} combine entry takes {', '.join(allowed)}",
                    where,
                )
            )
    method = entry.get("method", DEFAULTS[kind]["method"])
    if method is None:
        problems.append(
            ConfigProblem("no method", f"add method: one of {', '.join(METHODS)}", where)
        )
    elif method in METHODS:
        unused = [
            key
            for key in entry
            if key in allowed and key != "method" and key not in METHOD_PARAMETERS[method]
        ]
        if unused:
            uses = [k for k in METHOD_PARAMETERS[method] if k in allowed]
            uses = f"it takes {', '.join(uses)}" if uses else "it takes no parameters"
            verb = "does" if len(unused) == 1 else "do"
            problems.append(
                ConfigProblem(
                    f"{', '.join(unused)} {verb} nothing with method {method} ({uses})",
                    f"remove {', '.join(unused)}, or choose a method that uses "
                    f"{'it' if len(unused) == 1 else 'them'}",
                    where,
                )
            )
    return problems


#: Where each kind's entries sit in the config.
SECTIONS = {"master": ("calibration", "combine"), "stack": ("stacking", "combine")}


def check_combine_config(config):
    """Check every combine entry of a (not yet schema-validated) config.

    Raises ConfigProblem listing each problem found.
    """
    problems = []
    for kind, (section, key) in SECTIONS.items():
        entries = (config.get(section) or {}) if isinstance(config, dict) else {}
        entries = entries.get(key) if isinstance(entries, dict) else None
        for name, entry in (entries or {}).items() if isinstance(entries, dict) else ():
            problems += check_entry(entry, kind, f"{section}.{key}.{name}")
    if problems:
        raise ConfigProblems(problems)


def complete_entries(entries, kind):
    """{name: entry with every default of its kind filled in} of a validated
    config's combine section; what rules pass on as params."""
    section, key = SECTIONS[kind]
    return {
        name: CombineSpec.from_config(entry, kind, f"{section}.{key}.{name}").as_config()
        for name, entry in entries.items()
    }


# --- the exact path: sorted windows --------------------------------------


def _take(values, index):
    return np.take_along_axis(values, index[None], axis=0)[0]


def _window_median(values, lo, count):
    """Median of values[lo:lo+count] along axis 0, per pixel (sorted input)."""
    top = values.shape[0] - 1
    median = 0.5 * (
        _take(values, np.clip(lo + (count - 1) // 2, 0, top)).astype(np.float64)
        + _take(values, np.clip(lo + count // 2, 0, top))
    )
    median[count <= 0] = np.nan
    return median


def _window_mean(values, inside, count):
    total = np.where(inside, values, 0.0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def _sigma_clip_window(values, valid, spec):
    """Indices [lo, hi) kept by iterative sigma clipping (sorted values).

    The same result as astropy.stats.sigma_clip(axis=0): bounds recomputed
    from the surviving values until nothing changes (or ``maxiters``), then
    every value inside the final bounds kept. Centres, widths and bounds are
    float64, as astropy's. Each iteration works only on the pixels whose
    window still moved.
    """
    n, pixels = values.shape
    index = np.arange(n)[:, None]
    lo = np.zeros(pixels, dtype=np.int64)
    hi = valid.astype(np.int64)
    final_lo, final_hi = lo.copy(), hi.copy()
    active = np.arange(pixels)
    maxiters = spec.maxiters
    for _ in range(n if maxiters is None else int(maxiters)):
        v, a_lo, a_hi, a_valid = values[:, active], lo[active], hi[active], valid[active]
        count = a_hi - a_lo
        inside = (index >= a_lo) & (index < a_hi)
        if spec.cenfunc == "median":
            centre = _window_median(v, a_lo, count)
        else:
            centre = _window_mean(v, inside, count)
        if spec.stdfunc == "mad_std":
            absdev = np.where(inside, np.abs(v - centre), np.inf)
            absdev.sort(axis=0)
            width = MAD_TO_SIGMA * _window_median(absdev, np.zeros_like(a_lo), count)
        else:  # the standard deviation is about the mean, whatever the centre
            spread = v - _window_mean(v, inside, count)
            with np.errstate(invalid="ignore", divide="ignore"):
                width = np.sqrt(np.where(inside, spread * spread, 0.0).sum(axis=0) / count)
        with np.errstate(invalid="ignore"):
            n_low = (v < centre - spec.sigma_lower * width).sum(axis=0)
            n_high = (v > centre + spec.sigma_upper * width).sum(axis=0)
        # what is kept is every value inside the latest bounds ...
        final_lo[active] = n_low
        final_hi[active] = np.maximum(a_valid - n_high, n_low)
        # ... while, like astropy's loop, the working set only shrinks
        new_lo = np.maximum(a_lo, n_low)
        new_hi = np.maximum(np.minimum(a_hi, a_valid - n_high), new_lo)
        moved = (new_lo != a_lo) | (new_hi != a_hi)
        lo[active], hi[active] = new_lo, new_hi
        active = active[moved]
        if active.size == 0:
            break
    return final_lo, final_hi


def _exact(block, spec, weights):
    """(image, coverage) of an (n, pixels) block by sorted windows."""
    method = spec.method
    order = np.argsort(block, axis=0) if weights is not None else None
    values = np.take_along_axis(block, order, axis=0) if order is not None else np.sort(block, 0)
    valid = np.isfinite(values).sum(axis=0)
    if method == "median":
        return _window_median(values, np.zeros_like(valid), valid), valid
    if method == "average":
        lo, hi = np.zeros_like(valid), valid
    elif method == "minmax":
        # each pixel by its own count of values, by the one rule
        counts = np.array([spec.minmax_counts(k) for k in range(values.shape[0] + 1)])
        lo, hi = counts[valid, 0], valid - counts[valid, 1]
    elif method == "sigclip":
        lo, hi = _sigma_clip_window(values, valid, spec)
    else:
        raise ValueError(f"unknown combine method {method!r}; use one of {', '.join(METHODS)}")
    inside = (np.arange(values.shape[0])[:, None] >= lo) & (
        np.arange(values.shape[0])[:, None] < hi
    )
    count = hi - lo
    if weights is None:
        return _window_mean(values, inside, count), count
    w = np.where(inside, weights[order], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(inside, values, 0.0) * w).sum(axis=0) / w.sum(axis=0), count


# --- the fast path ----------------------------------------------------------


def _mean(block, weights):
    if weights is None:
        return block.mean(axis=0, dtype=np.float64)
    return (block * weights[:, None]).sum(axis=0, dtype=np.float64) / weights.sum()


def _median_of(block):
    n = block.shape[0]
    kth = sorted({(n - 1) // 2, n // 2})
    part = np.partition(block, kth, axis=0)
    return 0.5 * (part[(n - 1) // 2].astype(np.float64) + part[n // 2])


def _fast(block, spec, weights):
    """(image, done) for clean pixels; ``done`` marks those answered."""
    n, method = block.shape[0], spec.method
    if method == "average":
        return _mean(block, weights), np.ones(block.shape[1], bool)
    if method == "median":
        return _median_of(block), np.ones(block.shape[1], bool)
    if method == "minmax":
        if weights is not None:
            return None, np.zeros(block.shape[1], bool)
        n_low, n_high = spec.minmax_counts(n)
        part = np.partition(block, sorted({n_low, n - n_high - 1}), axis=0)
        return part[n_low : n - n_high].mean(axis=0, dtype=np.float64), np.ones(
            block.shape[1], bool
        )
    if spec.cenfunc == "median":
        centre = _median_of(block)
    else:
        centre = block.mean(axis=0, dtype=np.float64)
    if spec.stdfunc == "mad_std":
        # float32 deviations: partitioning float64 is ten times slower here
        width = MAD_TO_SIGMA * _median_of(np.abs(block - centre.astype(np.float32)))
    else:  # two-pass standard deviation, float32 deviations, float64 sums
        spread = block - block.mean(axis=0, dtype=np.float64).astype(np.float32)
        width = np.sqrt(np.einsum("ij,ij->j", spread, spread, dtype=np.float64) / n)
        del spread
    low = _float32_above(centre - spec.sigma_lower * width)
    high = _float32_below(centre + spec.sigma_upper * width)
    done = ~((block < low) | (block > high)).any(axis=0)
    return _mean(block, weights), done & (n > 0)


def _float32_above(bound):
    """The least float32 >= a float64 bound: for float32 x, x < bound exactly
    when x < this, so comparisons stay in float32 and decide as astropy's."""
    rounded = bound.astype(np.float32)
    below = rounded < bound
    rounded[below] = np.nextafter(rounded[below], np.float32(np.inf))
    return rounded


def _float32_below(bound):
    """The greatest float32 <= a float64 bound (see _float32_above)."""
    rounded = bound.astype(np.float32)
    above = rounded > bound
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def _kept(n, spec):
    """How many values a clean pixel keeps on the fast path."""
    if spec.method != "minmax":
        return n
    return n - sum(spec.minmax_counts(n))


def combine_block(block, spec, weights=None):
    """(image, coverage) of an (n, pixels) float32 block, combined as ``spec``
    (a CombineSpec) says."""
    n, pixels = block.shape
    image = np.empty(pixels, dtype=np.float32)
    coverage = np.empty(pixels, dtype=np.int16)
    clean = np.isfinite(block).all(axis=0)
    todo = ~clean
    if clean.any():
        sub = block if clean.all() else block[:, clean]
        result, done = _fast(sub, spec, weights)
        where = np.flatnonzero(clean)
        if result is not None:
            image[where[done]] = result[done]
            coverage[where[done]] = _kept(n, spec)
        todo[where[~done]] = True
    if todo.any():
        result, count = _exact(block[:, todo], spec, weights)
        image[todo] = result
        coverage[todo] = count
    return image, coverage


def _band_rows(n, ny, nx, memory_bytes, in_flight, threads):
    """Rows per band: ``in_flight`` bands and their temporaries must fit in
    memory, and there must be a few bands per thread, so that every core
    combines while the next band is read."""
    per_row = n * nx * 4 * 6  # the band, a sorted or float64 copy, temporaries
    by_memory = int(memory_bytes // (per_row * max(1, in_flight)))
    by_threads = -(-ny // (4 * max(1, threads)))
    return max(1, min(by_memory, by_threads))


def _as_spec(method, params):
    if isinstance(method, CombineSpec):
        if params:
            raise TypeError("give the parameters in the CombineSpec, not beside it")
        return method
    return CombineSpec.of(method, **params)


def combine(
    cube, method="average", weights=None, memory_mb=512, threads=1, progress=None, **params
):
    """Combine a stack (n, ny, nx) held in memory into (image, coverage).

    ``method`` is a CombineSpec, or a method name with its parameters as
    keywords: ``n_low``/``n_high`` (minmax, see minmax_counts),
    ``sigma_lower``, ``sigma_upper``, ``maxiters`` (None: until nothing
    changes), ``cenfunc`` ('median' or 'mean') and ``stdfunc`` ('mad_std' or
    'std') for sigclip; those not given take the masters' defaults
    (DEFAULTS['master']), an unknown one is refused. ``coverage`` counts the
    frames that contributed to each pixel. NaN marks a pixel missing in one
    frame; it is combined from the others. ``weights`` (one per frame) make
    the average and the clipped mean weighted.
    """
    spec = _as_spec(method, params)
    cube = np.asarray(cube)
    if cube.ndim != 3 or cube.shape[0] == 0:
        raise ValueError(f"need a stack of shape (n, ny, nx), got {cube.shape}")
    n, ny, nx = cube.shape
    weights = None if weights is None else np.asarray(weights, dtype=np.float64)
    image = np.empty((ny, nx), dtype=np.float32)
    coverage = np.empty((ny, nx), dtype=np.int16)
    rows = _band_rows(n, ny, nx, memory_mb * 2**20, threads, threads)
    bands = [(start, min(ny, start + rows)) for start in range(0, ny, rows)]

    def work(band):
        start, stop = band
        block = np.ascontiguousarray(cube[:, start:stop], dtype=np.float32).reshape(n, -1)
        result, count = combine_block(block, spec, weights)
        image[start:stop] = result.reshape(stop - start, nx)
        coverage[start:stop] = count.reshape(stop - start, nx)
        return stop

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for stop in pool.map(work, bands):
            if progress is not None:
                progress(stop, ny)
    return image, coverage


def combine_files(
    paths, method, scales=None, weights=None, memory_mb=2048, threads=2, progress=None, **params
):
    """Combine FITS images on disk band by band: each file is read once, a
    band of rows at a time, multiplied by its scale, and combined; at most
    ``threads + 1`` bands are held, sized to stay within ``memory_mb``.
    ``method`` and ``params`` as for combine()."""
    spec = _as_spec(method, params)
    n = len(paths)
    scales = np.ones(n) if scales is None else np.asarray(scales, dtype=np.float64)
    weights = None if weights is None else np.asarray(weights, dtype=np.float64)
    files = [open_bands(path) for path in paths]
    try:
        ny, nx = files[0].shape
        for image_file in files:
            if image_file.shape != (ny, nx):
                raise ValueError(
                    f"{image_file.path}: shape {image_file.shape} differs from {(ny, nx)}"
                )
        image = np.empty((ny, nx), dtype=np.float32)
        coverage = np.empty((ny, nx), dtype=np.int16)
        rows = _band_rows(n, ny, nx, memory_mb * 2**20, threads + 1, threads)
        pending = []

        def finish(job):
            start, stop, future = job
            result, count = future.result()
            image[start:stop] = result.reshape(stop - start, nx)
            coverage[start:stop] = count.reshape(stop - start, nx)
            if progress is not None:
                progress(stop, ny)

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for start in range(0, ny, rows):
                stop = min(ny, start + rows)
                block = np.empty((n, (stop - start) * nx), dtype=np.float32)
                for i, image_file in enumerate(files):  # reading stays on one thread
                    image_file.rows_into(start, stop, block[i], scales[i])
                pending.append((start, stop, pool.submit(combine_block, block, spec, weights)))
                while len(pending) >= max(1, threads):
                    finish(pending.pop(0))
            while pending:
                finish(pending.pop(0))
        return image, coverage
    finally:
        for image_file in files:
            image_file.close()
