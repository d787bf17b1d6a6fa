"""Finding stars in a calibrated frame: sky level and noise, peaks above the
noise, windowed centroids, fluxes and FWHM. numpy and scipy.ndimage only,
so that a per-frame job starts fast.

Centroids are iterated with a Gaussian window (as SExtractor's XWIN), which
is unbiased for a symmetric star and good to a few hundredths of a pixel for
bright ones; registration averages many of them.
"""

from dataclasses import dataclass

import numpy as np

from .robust import MAD_TO_SIGMA_4DP, mad_std

GAUSS_FWHM = 2.3548200450309493  # FWHM / sigma of a Gaussian
#: Axis ratio of a source's windowed second moments above which it is not a
#: star: a round star gives 1, a star trailed far beyond the window at most
#: ~1.4, a hot or bad column (one pixel wide) 4-6.
MAX_ELONGATION = 2.0


@dataclass
class Background:
    level: float  # sigma-clipped median, ADU
    noise: float  # robust standard deviation per pixel, ADU


def background(data, max_samples=1_000_000, iterations=3):
    """Sky level and noise: median and MAD of the pixels, star-clipped.

    The pixels are sorted once. Each clip (|x - level| < 3 sigma, which
    grows either way from the level) keeps a run of the sorted pixels, so
    its median is read off the run's middle and its MAD from the run's two
    halves, whose deviations are sorted too: the numbers np.median and
    robust.mad_std give for the clipped pixels, without a partition each
    (~33 -> ~10 ms a 512x512 frame)."""
    values = data[np.isfinite(data)].ravel()
    if values.size == 0:
        return Background(float("nan"), float("nan"))
    if values.size > max_samples:  # a regular subsample is plenty for two numbers
        values = values[:: values.size // max_samples + 1]
    ordered = np.sort(values)
    level = _sorted_median(ordered)
    noise = MAD_TO_SIGMA_4DP * _sorted_mad(ordered, level)
    for _ in range(iterations):
        keep = np.flatnonzero(np.abs(ordered - level) < 3 * noise)
        if not keep.size:
            break
        if keep[-1] - keep[0] + 1 != keep.size:  # not a run: cannot happen, but then the long way
            kept = ordered[keep]
            level = np.median(kept)
            noise = mad_std(kept, level, factor=MAD_TO_SIGMA_4DP)
            continue
        kept = ordered[keep[0] : keep[-1] + 1]
        level = _sorted_median(kept)
        noise = MAD_TO_SIGMA_4DP * _sorted_mad(kept, level)
    return Background(float(level), float(noise))


def _sorted_median(ordered):
    """np.median of sorted values: the mean of the same middle one or two
    values np.median takes after its partition."""
    n = ordered.size
    return np.mean(ordered[(n - 1) // 2 : n // 2 + 1])


def _sorted_mad(ordered, centre):
    """np.median(np.abs(ordered - centre)) of sorted values: the deviations
    fall towards the centre and rise after it, two sorted runs whose middle
    values are found by bisection."""
    deviations = np.abs(ordered - centre)
    split = int(np.searchsorted(ordered, centre))
    below, above = deviations[:split][::-1], deviations[split:]
    n = deviations.size
    middle = [_kth_of_two(below, above, k) for k in range((n - 1) // 2, n // 2 + 1)]
    return np.mean(np.array(middle, dtype=deviations.dtype))


def _kth_of_two(a, b, k):
    """The k-th smallest (from 0) of the values of sorted arrays a and b."""
    lo, hi = max(0, k + 1 - b.size), min(k + 1, a.size)  # how many come from a
    while lo < hi:
        taken = (lo + hi) // 2
        if b[k - taken] > a[taken]:  # a's next value is below b's last one taken
            lo = taken + 1
        else:
            hi = taken
    last = [a[lo - 1]] if lo else []
    last += [b[k - lo]] if k + 1 - lo else []
    return max(last)


def sky_model(data, method, level, box=64):
    """The sky to subtract: the frame's median ``level`` (method 'median'),
    or a photutils Background2D map of ``box``-pixel cells ('background2d')
    for gradients. Returns (sky, its median level)."""
    if method == "background2d":
        from photutils.background import Background2D

        sky = Background2D(data, box, filter_size=3).background
        return sky, float(np.median(sky))
    return float(level), float(level)


def _stamps(image, xs, ys, radius):
    """(n, 2r+1, 2r+1) cut-outs centred on integer pixels (xs, ys)."""
    offsets = np.arange(-radius, radius + 1)
    rows = ys[:, None, None] + offsets[None, :, None]
    cols = xs[:, None, None] + offsets[None, None, :]
    return image[rows, cols]


def detect(data, saturated=None, threshold=5.0, fwhm_guess=3.5, max_stars=300):
    """Stars in a calibrated frame, brightest first (see _detect_once).

    A second pass with windows sized to the measured seeing follows when the
    stars are much broader or sharper than the first guess, so that FWHM and
    fluxes hold over the whole range of seeing.
    """
    stars, sky = _detect_once(data, saturated, threshold, fwhm_guess, max_stars)
    # twice the half-light radius runs 1.0 (Gaussian) to 1.3 (Moffat) times the
    # true FWHM; windows need the true size only roughly
    seeing = median_fwhm(stars) / 1.15
    if np.isfinite(seeing) and not 0.75 < seeing / fwhm_guess < 1.33:
        stars, sky = _detect_once(data, saturated, threshold, seeing, max_stars)
    return stars, sky


def _detect_once(data, saturated, threshold, fwhm_guess, max_stars, border=None):
    """Stars in a calibrated frame, brightest first.

    Returns (stars, background): ``stars`` a dict of arrays x, y (0-based
    pixel centres, FITS axis 1 and 2), flux (window sum above sky), peak
    (highest pixel above sky), fwhm (twice the half-light radius, exact for
    a Gaussian star) and saturated.
    """
    from scipy import ndimage

    sky = background(data)
    image = np.where(np.isfinite(data), data - sky.level, 0.0).astype(np.float32)
    sigma = max(fwhm_guess / GAUSS_FWHM, 0.7)
    smooth = ndimage.gaussian_filter(image, sigma)
    # noise of the smoothed image: a Gaussian filter divides white noise by 2 sqrt(pi) sigma
    smooth_noise = sky.noise / (2.0 * np.sqrt(np.pi) * sigma)
    border = int(np.ceil(3.0 * fwhm_guess)) + 2 if border is None else border
    peaks = (smooth == ndimage.maximum_filter(smooth, size=2 * int(sigma) + 3)) & (
        smooth > threshold * smooth_noise
    )
    peaks[:border] = peaks[-border:] = False
    peaks[:, :border] = peaks[:, -border:] = False
    ys, xs = np.nonzero(peaks)
    order = np.argsort(smooth[ys, xs])[::-1][: 3 * max_stars]
    ys, xs = ys[order], xs[order]
    measured = _measure(data, image, xs, ys, fwhm_guess, saturated)
    # cosmic-ray hits are sharper than any star the optics can make: most of
    # their light sits in one pixel
    with np.errstate(invalid="ignore", divide="ignore"):
        sharp = measured["peak"] / measured["flux"]
    flux, fwhm = measured["flux"], measured["fwhm"]
    keep = measured["ok"] & (flux > 0) & np.isfinite(fwhm) & (fwhm > 1.2) & (sharp < 0.6)
    # bad columns and satellite trails are lines, not stars: counted as stars
    # they gave a 30 px 'seeing' and apertures that held no star
    keep &= measured["elongation"] < MAX_ELONGATION
    # merge duplicates: two peaks whose centroids met are one star
    x, y = measured["x"], measured["y"]
    order = np.argsort(-flux)
    taken = np.zeros(xs.size, bool)
    chosen = []
    for i in order:
        if not keep[i] or taken[i]:
            continue
        chosen.append(i)
        taken |= (x - x[i]) ** 2 + (y - y[i]) ** 2 < (0.7 * fwhm_guess) ** 2
        if len(chosen) == max_stars:
            break
    chosen = np.array(chosen, dtype=int)
    # the axis ratio too: the frame's roundness for stacking.select
    kept = {name: measured[name][chosen] for name in (*STAR_COLUMNS, "elongation")}
    return kept, sky


STAR_COLUMNS = ("x", "y", "flux", "peak", "fwhm", "saturated")


def _measure(data, image, xs, ys, fwhm_guess, saturated=None):
    """Centroid, flux, peak and FWHM of stars near integer pixels (xs, ys) of
    a sky-subtracted ``image``; ``ok`` is False where ``data`` has NaN."""
    radius = int(np.ceil(3.0 * fwhm_guess))
    if xs.size == 0:
        return {name: np.zeros(0) for name in STAR_COLUMNS} | {
            "saturated": np.zeros(0, bool),
            "elongation": np.zeros(0),
            "ok": np.zeros(0, bool),
        }
    stamps = _stamps(image, xs, ys, radius).astype(np.float64)
    ok = np.isfinite(_stamps(data, xs, ys, radius)).all(axis=(1, 2))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    dx = np.zeros(xs.size)
    dy = np.zeros(xs.size)
    window = (fwhm_guess / GAUSS_FWHM) ** 2
    for _ in range(8):  # Gaussian-windowed centroid, iterated
        rx = offsets[None, None, :] - dx[:, None, None]
        ry = offsets[None, :, None] - dy[:, None, None]
        weight = stamps * np.exp(-(rx**2 + ry**2) / (2 * window))
        total = weight.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            step_x = (weight * rx).sum(axis=(1, 2)) / total
            step_y = (weight * ry).sum(axis=(1, 2)) / total
        step_x, step_y = np.nan_to_num(step_x), np.nan_to_num(step_y)
        # windowed centroids converge to the true centre with a factor 2 step
        dx = np.clip(dx + 2 * step_x, -radius / 2, radius / 2)
        dy = np.clip(dy + 2 * step_y, -radius / 2, radius / 2)
    rx = offsets[None, None, :] - dx[:, None, None]
    ry = offsets[None, :, None] - dy[:, None, None]
    r2 = rx**2 + ry**2
    is_saturated = np.zeros(xs.size, bool)
    if saturated is not None:
        is_saturated = _stamps(saturated, xs, ys, 2).any(axis=(1, 2))
    weight = stamps * np.exp(-r2 / (2 * window))
    return {
        "x": xs + dx,
        "y": ys + dy,
        "flux": np.where(r2 <= (2 * fwhm_guess) ** 2, stamps, 0.0).sum(axis=(1, 2)),
        "peak": stamps.max(axis=(1, 2)),
        "fwhm": _half_light_fwhm(stamps, r2, radius),
        "saturated": is_saturated,
        "elongation": _elongation(weight, rx, ry),
        "ok": ok,
    }


def _elongation(weight, rx, ry):
    """Axis ratio of windowed second moments (1 for a round source, large
    for a line), from the window-weighted stamps about their centroids."""
    total = weight.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        xx = (weight * rx**2).sum(axis=(1, 2)) / total
        yy = (weight * ry**2).sum(axis=(1, 2)) / total
        xy = (weight * rx * ry).sum(axis=(1, 2)) / total
        half_sum, half_diff = (xx + yy) / 2, np.sqrt(((xx - yy) / 2) ** 2 + xy**2)
        ratio = np.sqrt((half_sum + half_diff) / (half_sum - half_diff))
    return np.where((half_sum - half_diff) > 0, ratio, np.inf)


def measure_at(data, x, y, fwhm_guess=3.5):
    """The same measurements for stars near known positions (x, y), e.g. to
    compare one star list across two images."""
    sky = background(data)
    image = np.where(np.isfinite(data), data - sky.level, 0.0).astype(np.float32)
    radius = int(np.ceil(3.0 * fwhm_guess))
    ny, nx = data.shape
    xs = np.clip(np.round(np.asarray(x)).astype(int), radius, nx - radius - 1)
    ys = np.clip(np.round(np.asarray(y)).astype(int), radius, ny - radius - 1)
    return _measure(data, image, xs, ys, fwhm_guess)


def _half_light_fwhm(stamps, r2, radius):
    """FWHM from the half-light radius: twice the radius that holds half the
    light within ``radius`` (exact for a Gaussian). Unlike second moments it
    scales with the star's size whatever the pixel sampling, so apertures
    set in FWHM units take the same share of light in every frame."""
    n = stamps.shape[0]
    flat_r = np.sqrt(r2.reshape(n, -1))
    flat_v = stamps.reshape(n, -1)
    outer = flat_r > radius
    local = np.array(
        [np.median(v[o]) if o.any() else 0.0 for v, o in zip(flat_v, outer, strict=True)]
    )
    values = np.where(outer, 0.0, flat_v - local[:, None])
    order = np.argsort(flat_r, axis=1)
    r_sorted = np.take_along_axis(flat_r, order, axis=1)
    cumulative = np.cumsum(np.take_along_axis(values, order, axis=1), axis=1)
    total = cumulative[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = cumulative / total
    # first pixel past half the light, interpolated with the one before
    past = np.argmax(fraction >= 0.5, axis=1)
    before = np.clip(past - 1, 0, None)
    rows = np.arange(n)
    f0, f1 = fraction[rows, before], fraction[rows, past]
    r0, r1 = r_sorted[rows, before], r_sorted[rows, past]
    with np.errstate(invalid="ignore", divide="ignore"):
        r_half = np.where(f1 > f0, r0 + (0.5 - f0) * (r1 - r0) / (f1 - f0), r1)
    return np.where(total[:, 0] > 0, 2.0 * r_half, np.nan)


def median_fwhm(stars, count=30):
    """Seeing of a frame: median FWHM of its brightest unsaturated stars."""
    good = ~stars["saturated"]
    values = stars["fwhm"][good][:count]
    return float(np.median(values)) if values.size else float("nan")
