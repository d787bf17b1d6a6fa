"""Resampling a calibrated frame onto the stack grid by a 2x3 transform.

Convention (frames.ecsv ``transform``): a star at 0-based pixel (x, y) of the
frame lands at ``A @ (x, y, 1)`` on the output (stack) grid, so output pixel
(X, Y) samples the frame at ``inv(A) @ (X, Y, 1)``.

Three paths, chosen by ``kind_of``:

- whole-pixel translation, and right-angle turns (meridian flips, a camera
  put back at 90 deg) with whole-pixel offsets: a permutation of pixels
  (flips, a transpose, a slice copy), no interpolation, noise untouched;
- anything else: a cubic B-spline (``method="spline3"``, the default,
  scipy.ndimage) or Lanczos-3 (``method="lanczos3"``), scaled by 1 / |det|
  so that a star's total flux is kept when the scale changes.

Why the spline (benchmarks/resample.py and tests/test_resample.py measure
both): it reproduces straight lines exactly, so star centroids do not move
(below 1e-4 px), while normalised Lanczos-3 weights have a first moment of
up to 0.02 px at fractional offsets near 0.25 and 0.75, which is the whole
centroid budget; and in scipy's C it is 2-3x faster than a numpy Lanczos.
Both keep flux within 2e-3 and FWHM within 0.2 %.

No data stays no data. An output pixel is NaN when its source point lies
outside the frame (beyond the outer pixel edges, -0.5 and n - 0.5) or when
the interpolation kernel reaches a NaN pixel: every output pixel whose
source point lies less than 3 frame pixels (``REACH``) along each axis from
a NaN pixel's centre, so a hole grows by up to 3 frame pixels on each side
(Lanczos-3 taps reach 3 px; the spline's 4x4 core 2, plus one for its
prefilter's tail). The spline's prefilter is global, so the hole is first
filled with values grown in from its edge: no step there, nothing to ring.
Inside the frame but near its edge the kernel reads mirrored pixels, never
zeros, so there is no darkening at the edges.

Mask bits: an output pixel carries the OR of the bits of the 2x2 frame
pixels around its source point (nearest pixel on the whole-pixel paths);
uncovered output pixels get 0, as ``register.shift_mask`` does today.

Uncertainty (``warp_sigma``): an interpolated value is a weighted sum of
frame pixels, sum w_i x_i, so its variance is sum w_i^2 s_i^2. The weights
of the cubic spline (prefilter and B-spline together: the cardinal spline,
infinite but decaying by 0.27 a pixel) and of Lanczos-3 depend only on the
source point's fractional offsets (fx, fy) and are separable, so the
output sigma is the input's (its variance interpolated bilinearly: smooth,
never negative) times ``noise_gain(fx) * noise_gain(fy)``, the root of the
sum of squared 1-D weights, tabulated once (1 at whole pixels, 0.87 for
the spline at half a pixel along one axis, 0.76 at (0.5, 0.5)).
Measured on a seeded white-noise field to 1 % (tests/test_resample.py).
What the sigma does not say: neighbouring output pixels now share input
pixels, so their noise is correlated (the stack's sky noise averaged over
an aperture falls less than 1/sqrt(area) would claim).
"""

import numpy as np

#: rows of output computed at a time on the general path: keeps the
#: coordinate and tap arrays small (2k frame, busy machine: spline 0.78 s at
#: 128 rows, 0.95 at 32, 0.99 whole; Lanczos-3 1.5 s at 32 rows, 1.9 at 128,
#: 4.9 whole)
BAND = 128
LANCZOS_A = 3
#: frame px: how far no data reaches into the output. Lanczos-3 taps reach
#: 3 px; the spline's 4x4 core 2, but its global prefilter carries what
#: fills a hole one pixel further (damped by 0.27 a pixel): at 2 px the kept
#: border differed from the hole-free frame by up to 0.5 sigma of the noise
#: (a star in the hole), at 3 px by 0.13 sigma (tests/test_resample.py)
REACH = 3
#: px: offsets this close to whole pixels are whole pixels (float noise of a
#: composed transform, far below any measurement)
OFFSET_TOL = 1e-3


def as_matrix(transform):
    """The 3x3 homogeneous matrix of a 2x3 transform."""
    matrix = np.eye(3)
    matrix[:2] = np.asarray(transform, dtype=float).reshape(2, 3)
    return matrix


def compose(outer, inner):
    """The 2x3 transform applying ``inner`` first, then ``outer``."""
    return (as_matrix(outer) @ as_matrix(inner))[:2]


def translation(dx, dy):
    """The 2x3 transform of a pure shift: x -> x + dx, y -> y + dy."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def _right_angle(linear, rotation_tol_deg, scale_tol):
    """The signed permutation matrix (entries 0, +-1) that ``linear`` is
    within the tolerances, or None. A mirror (det -1) counts: a flipped
    readout is as much a permutation as a turn."""
    nearest = np.round(linear)
    if abs(abs(np.linalg.det(nearest)) - 1) > 0.5 or np.abs(nearest).sum() != 2:
        return None
    # off by an angle t the entries move by sin t; by a scale s by |s - 1|
    slack = np.sin(np.radians(rotation_tol_deg)) + scale_tol
    return nearest if np.abs(linear - nearest).max() <= slack else None


def kind_of(transform, rotation_tol_deg=0.01, scale_tol=1e-4, offset_tol=OFFSET_TOL):
    """Which path a transform takes: "translation" (no turn, no scale within
    the tolerances: the issue's pure translation, whatever its offsets),
    "rot90" (a turn by 90, 180 or 270 deg, or a mirror, with whole-pixel
    offsets: a pixel permutation) or "general".

    A translation by fractional pixels is interpolated by ``warp`` unless
    ``snap`` rounds it (``resample: integer``); so is a right-angle turn
    with fractional offsets, which is therefore "general" here.
    """
    matrix = np.asarray(transform, dtype=float).reshape(2, 3)
    nearest = _right_angle(matrix[:, :2], rotation_tol_deg, scale_tol)
    if nearest is None:
        return "general"
    if np.array_equal(nearest, np.eye(2)):
        return "translation"
    return "rot90" if _whole(matrix[:, 2], offset_tol) else "general"


def _whole(offsets, offset_tol):
    return np.abs(offsets - np.round(offsets)).max() <= offset_tol


def snap(transform, rotation_tol_deg=0.01, scale_tol=1e-4):
    """The whole-pixel transform nearest ``transform`` (exact right angle,
    rounded offsets) when it is a translation or right-angle turn within the
    tolerances, else None. What ``resample: integer`` applies."""
    matrix = np.asarray(transform, dtype=float).reshape(2, 3)
    nearest = _right_angle(matrix[:, :2], rotation_tol_deg, scale_tol)
    if nearest is None:
        return None
    return np.column_stack([nearest, np.round(matrix[:, 2])])


# -- whole-pixel paths ------------------------------------------------------


def place(image, ox, oy, out_shape, fill):
    """``image`` pasted with its pixel (0, 0) at output pixel (ox, oy) of a
    ``fill``-valued array of ``out_shape``: ``register.shift_image`` without
    interpolation, onto any grid."""
    out = np.full(out_shape, fill, dtype=image.dtype)
    ny, nx = image.shape
    oy_, ox_ = int(oy), int(ox)
    dst_y = slice(max(0, oy_), min(out_shape[0], oy_ + ny))
    dst_x = slice(max(0, ox_), min(out_shape[1], ox_ + nx))
    if dst_y.start < dst_y.stop and dst_x.start < dst_x.stop:
        src_y = slice(dst_y.start - oy_, dst_y.stop - oy_)
        src_x = slice(dst_x.start - ox_, dst_x.stop - ox_)
        out[dst_y, dst_x] = image[src_y, src_x]
    return out


def permute(image, transform, out_shape, fill):
    """A whole-pixel transform (signed permutation, integer offsets) applied
    by transposing and flipping views (what np.rot90 does), then one copy."""
    matrix = np.asarray(transform, dtype=float).reshape(2, 3)
    linear = np.round(matrix[:, :2]).astype(int)
    view = image.T if linear[0, 0] == 0 else image  # x_out follows y_in
    offsets = []
    for axis_out, (row, shift) in enumerate(zip(linear, np.round(matrix[:, 2]), strict=True)):
        sign = row.sum()  # the one nonzero entry of the row
        length = view.shape[1 - axis_out]  # output x is array axis 1
        if sign < 0:  # x_out = shift - i  =  (length - 1 - i) + shift - (length - 1)
            view = np.flip(view, axis=1 - axis_out)
            shift -= length - 1
        offsets.append(int(shift))
    return place(view, offsets[0], offsets[1], out_shape, fill)


# -- the general path -------------------------------------------------------


def _source_points(inverse, rows, nx):
    """Frame coordinates (x, y) sampled by output rows ``rows`` (all
    columns), each an array of shape (len(rows), nx)."""
    yy = np.asarray(rows, dtype=float)[:, None]
    xx = np.arange(nx, dtype=float)[None, :]
    sx = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
    sy = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
    return sx, sy


def _lanczos_weights(frac):
    """The 2a Lanczos weights of taps floor(s) - a + 1 .. floor(s) + a for
    fractional parts ``frac``, normalised to sum 1 (flat fields stay flat)."""
    taps = np.arange(1 - LANCZOS_A, LANCZOS_A + 1, dtype=np.float32)
    dist = frac[..., None] - taps  # source point minus tap position
    weights = np.sinc(dist) * np.sinc(dist / LANCZOS_A)
    return weights / weights.sum(axis=-1, keepdims=True)


def _reach(flags, below, above):
    """True at (y, x) when ``flags`` is set anywhere in rows y - below ..
    y + above and columns x - below .. x + above: the kernel anchors (floor
    of the source point) whose taps touch a flagged pixel."""
    out = flags
    for axis in (0, 1):
        spread = out.copy()
        n = out.shape[axis]
        for step in range(-below, above + 1):
            # spread[i] |= out[i + step] where both exist
            dst = [slice(None)] * 2
            src = [slice(None)] * 2
            dst[axis] = slice(max(0, -step), n - max(0, step))
            src[axis] = slice(max(0, step), n + min(0, step))
            spread[tuple(dst)] |= out[tuple(src)]
        out = spread
    return out


def _core_or(mask):
    """OR of each pixel's bits with those right, below and diagonal: the
    2x2 core of a kernel anchored at (floor y, floor x)."""
    out = mask.copy()
    out[:, :-1] |= mask[:, 1:]
    out[:-1, :] |= out[1:, :].copy()
    return out


def _lanczos_rows(padded, sx, sy, pad):
    """Lanczos-3 interpolation at (sx, sy) of a frame padded by ``pad``
    mirrored pixels on every side (so that no tap reads outside)."""
    # points outside the frame are dropped later; clipped, their taps stay
    # inside the padding
    x0 = np.clip(np.floor(sx), -1, padded.shape[1] - 2 * pad - 1)
    y0 = np.clip(np.floor(sy), -1, padded.shape[0] - 2 * pad - 1)
    wx = _lanczos_weights((sx - x0).astype(np.float32))
    wy = _lanczos_weights((sy - y0).astype(np.float32))
    width = padded.shape[1]
    base = (y0.astype(np.intp) + pad) * width + x0.astype(np.intp) + pad
    flat = padded.ravel()
    out = np.zeros(sx.shape, dtype=np.float32)
    for j, dy in enumerate(range(1 - LANCZOS_A, LANCZOS_A + 1)):
        row = np.zeros(sx.shape, dtype=np.float32)
        for i, dx in enumerate(range(1 - LANCZOS_A, LANCZOS_A + 1)):
            row += wx[..., i] * flat.take(base + (dy * width + dx))
        out += wy[..., j] * row
    return out


def _inside(sx, sy, shape):
    """Source points within the frame's outer pixel edges."""
    ny, nx = shape
    return (sx >= -0.5) & (sx < nx - 0.5) & (sy >= -0.5) & (sy < ny - 0.5)


def _anchor(sx, sy, shape):
    """Flat index of each point's floor pixel, clipped into the frame (the
    points beyond are dropped by ``_inside`` anyway)."""
    ny, nx = shape
    x0 = np.clip(np.floor(sx), 0, nx - 1).astype(np.intp)
    y0 = np.clip(np.floor(sy), 0, ny - 1).astype(np.intp)
    return y0 * nx + x0


def _neighbour_mean(flat, todo, shape):
    """Mean of the finite 4-neighbours of flat pixels ``todo`` (NaN where
    there is none)."""
    ny, nx = shape
    y, x = np.divmod(todo, nx)
    total = np.zeros(todo.size)
    count = np.zeros(todo.size)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ok = (y + dy >= 0) & (y + dy < ny) & (x + dx >= 0) & (x + dx < nx)
        values = flat[(np.where(ok, y + dy, y)) * nx + np.where(ok, x + dx, x)]
        good = ok & np.isfinite(values)
        total[good] += values[good]
        count[good] += 1
    with np.errstate(invalid="ignore"):
        return total / count


def _filled(data, nan, smooth, rings=6):
    """The frame with its NaN pixels replaced. ``smooth`` (the spline): the
    hole's outer ``rings`` pixels grown in from their neighbours, the rest
    by the innermost ring's mean, so that the global prefilter sees no step
    at the hole's edge (a step ``rings`` deep reaches the kept pixels
    damped by 0.27 ** (rings + 2), 3e-5). Else (Lanczos) zeros: those
    outputs are NaN anyway. Cost grows with the NaN pixels, not the frame."""
    if not nan.any():
        return data
    if not smooth:
        return np.where(nan, 0.0, data).astype(data.dtype)
    out = data.copy()
    flat = out.ravel()
    todo = np.flatnonzero(nan)
    last = np.zeros(1)
    for _ in range(rings):
        mean = _neighbour_mean(flat, todo, data.shape)
        grown = np.isfinite(mean)
        if not grown.any():
            break
        flat[todo[grown]] = last = mean[grown]  # after all reads: one ring a pass
        todo = todo[~grown]
    flat[todo] = last.mean()
    return out


def _spline_rows(coeffs, sx, sy):
    from scipy import ndimage

    return ndimage.map_coordinates(
        coeffs, [sy, sx], order=3, mode="reflect", prefilter=False, output=np.float32
    )


def _interpolate(data, inverse, out_shape, method):
    """The general path's image: interpolated, NaN where the kernel reaches
    no data or the source point lies outside the frame, not yet scaled."""
    nan = ~np.isfinite(data)
    touched = _reach(nan, REACH - 1, REACH).ravel()
    if method == "lanczos3":
        pad = LANCZOS_A + 1
        source = np.pad(_filled(data, nan, smooth=False), pad, mode="symmetric")

        def rows(sx, sy):
            return _lanczos_rows(source, sx, sy, pad)
    elif method == "spline3":
        from scipy import ndimage

        source = ndimage.spline_filter(
            _filled(data, nan, smooth=True).astype(np.float64), order=3, mode="reflect"
        )

        def rows(sx, sy):
            return _spline_rows(source, sx, sy)
    else:
        raise ValueError(f"unknown resampling method {method!r}: lanczos3 or spline3")
    out = np.empty(out_shape, dtype=np.float32)
    for start in range(0, out_shape[0], BAND):
        stop = min(start + BAND, out_shape[0])
        sx, sy = _source_points(inverse, range(start, stop), out_shape[1])
        band = rows(sx, sy)
        band[~_inside(sx, sy, data.shape) | touched[_anchor(sx, sy, data.shape)]] = np.nan
        out[start:stop] = band
    return out


def _mask_general(mask, inverse, out_shape):
    core = _core_or(mask).ravel()
    out = np.zeros(out_shape, dtype=np.uint8)
    for start in range(0, out_shape[0], BAND):
        stop = min(start + BAND, out_shape[0])
        sx, sy = _source_points(inverse, range(start, stop), out_shape[1])
        out[start:stop] = np.where(
            _inside(sx, sy, mask.shape), core[_anchor(sx, sy, mask.shape)], 0
        )
    return out


def _cardinal_spline_gain(fractions):
    """sqrt(sum_k eta(f - k)^2) of the cubic cardinal spline eta (what
    scipy's prefiltered order-3 interpolation applies to each pixel) at
    fractional offsets ``fractions``."""
    from scipy import ndimage

    half = 24  # eta decays by 0.27 a pixel: 0.27**24 ~ 1e-14
    delta = np.zeros(2 * half + 1)
    delta[half] = 1.0
    taps = np.arange(-half + 4, half - 3)
    points = half + fractions[:, None] - taps[None, :]
    weights = ndimage.map_coordinates(delta, [points.ravel()], order=3, mode="mirror")
    return np.sqrt((weights.reshape(points.shape) ** 2).sum(axis=1))


def _lanczos_gain(fractions):
    weights = _lanczos_weights(fractions.astype(np.float64))
    return np.sqrt((weights**2).sum(axis=-1))


_GAIN_TABLES = {}


def noise_gain(fractions, method="spline3"):
    """Output sigma over input sigma of a 1-D interpolation at fractional
    offsets ``fractions`` (white noise): the root of the sum of the squared
    interpolation weights. 1 at whole pixels, least at half a pixel."""
    if method not in _GAIN_TABLES:
        grid = np.linspace(0.0, 1.0, 129)
        gain = {"spline3": _cardinal_spline_gain, "lanczos3": _lanczos_gain}[method]
        _GAIN_TABLES[method] = (grid, gain(grid))
    grid, table = _GAIN_TABLES[method]
    fractions = np.asarray(fractions, dtype=float)
    return np.interp(fractions - np.floor(fractions), grid, table)


def _variance_rows(variance, sx, sy):
    """The input variance at (sx, sy), bilinear (never negative, no ringing)."""
    from scipy import ndimage

    return ndimage.map_coordinates(variance, [sy, sx], order=1, mode="nearest")


def warp_sigma(sigma, transform, out_shape, method="spline3"):
    """The per-pixel standard deviation of ``warp(data, transform, ...)``
    given the frame's ``sigma`` (module text): moved exactly on the
    whole-pixel paths; interpolated, times the kernel's noise gain at each
    output pixel's fractional source offsets, divided by |det| like the
    data. NaN where the source point lies outside the frame or sigma is NaN
    (the caller also sets NaN wherever the warped data is NaN)."""
    sigma = np.asarray(sigma, dtype=np.float32)
    out_shape = tuple(int(n) for n in out_shape)
    matrix = np.asarray(transform, dtype=float).reshape(2, 3)
    exact = snap(matrix)
    if exact is not None and _whole(matrix[:, 2], OFFSET_TOL):
        return permute(sigma, exact, out_shape, np.nan)
    inverse = np.linalg.inv(as_matrix(matrix))
    variance = np.square(sigma, dtype=np.float64)
    bad = ~np.isfinite(variance)
    variance[bad] = 0.0
    out = np.empty(out_shape, dtype=np.float32)
    for start in range(0, out_shape[0], BAND):
        stop = min(start + BAND, out_shape[0])
        sx, sy = _source_points(inverse, range(start, stop), out_shape[1])
        band = np.sqrt(_variance_rows(variance, sx, sy))
        band *= noise_gain(sx, method) * noise_gain(sy, method)
        band[~_inside(sx, sy, sigma.shape) | bad.ravel()[_anchor(sx, sy, sigma.shape)]] = np.nan
        out[start:stop] = band
    out *= np.float32(1.0 / abs(np.linalg.det(matrix[:, :2])))
    return out


def warp(data, transform, out_shape, mask=None, method="spline3"):
    """The frame resampled onto an output grid of ``out_shape`` (ny, nx).

    Returns (float32 image, uint8 mask or None). Values are surface
    brightness per output pixel: divided by |det| of the transform's linear
    part, so that a star's summed flux is kept when the scale is not 1.
    Whole-pixel translations and right-angle turns move pixels without
    interpolation; see the module text for NaN and mask rules.
    """
    data = np.asarray(data, dtype=np.float32)
    out_shape = tuple(int(n) for n in out_shape)
    matrix = np.asarray(transform, dtype=float).reshape(2, 3)
    exact = snap(matrix)
    if exact is not None and _whole(matrix[:, 2], OFFSET_TOL):
        image = permute(data, exact, out_shape, np.nan)
        if mask is None:
            return image, None
        return image, permute(np.asarray(mask, np.uint8), exact, out_shape, 0)
    inverse = np.linalg.inv(as_matrix(matrix))
    image = _interpolate(data, inverse, out_shape, method)
    image *= np.float32(1.0 / abs(np.linalg.det(matrix[:, :2])))
    moved_mask = (
        None if mask is None else _mask_general(np.asarray(mask, np.uint8), inverse, out_shape)
    )
    return image, moved_mask


# -- the stack grid ---------------------------------------------------------


def footprint(transform, shape):
    """The output coordinates of a frame's four outer corners (pixel edges),
    a (4, 2) array of x, y."""
    ny, nx = shape
    corners = np.array(
        [[-0.5, -0.5, 1], [nx - 0.5, -0.5, 1], [-0.5, ny - 0.5, 1], [nx - 0.5, ny - 0.5, 1]]
    )
    return corners @ np.asarray(transform, dtype=float).reshape(2, 3).T


def canvas(transforms, frame_shapes, reference_shape, mode="reference"):
    """The stack grid: (out_shape, offset), ``offset`` a 2x3 translation to
    apply after every frame's transform (``compose(offset, transform)``).

    "reference": the reference's grid, offset the identity. "union": the
    smallest grid that covers every frame's footprint (partly covered pixels
    included), shifted by whole pixels so that coordinates start at 0: the
    reference's pixels stay whole pixels and its translations stay integer.
    """
    if mode == "reference":
        return tuple(int(n) for n in reference_shape), translation(0.0, 0.0)
    if mode != "union":
        raise ValueError(f"unknown canvas {mode!r}: reference or union")
    corners = np.vstack([footprint(t, s) for t, s in zip(transforms, frame_shapes, strict=True)])
    # the pixels that contain the extreme corners; a corner on an edge (to
    # rounding) belongs to the pixel inside
    first = np.floor(corners.min(axis=0) + 0.5 + 1e-6)
    last = np.ceil(corners.max(axis=0) - 0.5 - 1e-6)
    nx, ny = (last - first + 1).astype(int)
    return (int(ny), int(nx)), translation(-first[0], -first[1])
