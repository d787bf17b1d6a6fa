"""Star lists as detection gives them, for a frame taken with a known
transform onto a reference: for tests and benchmarks of the matcher."""

import numpy as np

from ccdreduce.register import similarity_matrix, transform_xy

REF_SHAPE = (1024, 1024)  # (ny, nx)
DENSITY = 200 / (1024 * 1024)  # stars per reference px: 200 in the reference


def sky_field(seed):
    """Stars on the reference grid over a field wide enough for any frame
    of the tests, and their fluxes (many faint, few bright)."""
    rng = np.random.default_rng(seed)
    low, high = -1600.0, 2600.0
    n = rng.poisson(DENSITY * (high - low) ** 2)
    xy = rng.uniform(low, high, (n, 2))
    flux = (1.0 - rng.random(n)) ** (-1 / 0.8)
    return xy, flux


def inside(xy, shape):
    ny, nx = shape
    return (xy >= 0).all(axis=1) & (xy <= [nx - 1, ny - 1]).all(axis=1)


def catalogue(xy, flux, rng, most=300):
    """A star list as detection gives it: brightest first by a measured
    flux (5 % noise reorders near-equal stars), at most ``most`` stars."""
    order = np.argsort(-flux * (1 + 0.05 * rng.normal(size=len(flux))), kind="stable")[:most]
    return xy[order], order


def truth(rotation, scale, offset, frame_shape):
    """The 2x3 frame-to-reference transform of a frame that shows the
    reference's sky turned by ``rotation`` deg, at ``scale`` reference px per
    frame px, its centre ``offset`` (fraction of the reference) from the
    reference's centre."""
    a = scale * np.exp(-1j * np.radians(rotation))
    ny, nx = frame_shape
    centre_frame = (nx - 1) / 2 + 1j * (ny - 1) / 2
    centre_ref = (REF_SHAPE[1] - 1) / 2 + 1j * (REF_SHAPE[0] - 1) / 2
    shift = (offset[0] * REF_SHAPE[1]) + 1j * (offset[1] * REF_SHAPE[0])
    return similarity_matrix(a, centre_ref + shift - a * centre_frame)


def night(transform, frame_shape, seed=0, noise=0.03, missing=0.2, extra=0.2):
    """(reference list, frame list, the frame stars' true positions (NaN
    for spurious sources)) for a frame taken with ``transform``."""
    rng = np.random.default_rng(seed + 1000)
    xy, flux = sky_field(seed)
    in_ref = inside(xy, REF_SHAPE)
    ref_xy, _ = catalogue(xy[in_ref], flux[in_ref], rng)
    back = np.linalg.inv(transform[:, :2])
    frame_true = (xy - transform[:, 2]) @ back.T
    seen = inside(frame_true, frame_shape) & (rng.random(len(xy)) >= missing)
    true_xy, true_flux = frame_true[seen], flux[seen]
    ny, nx = frame_shape
    n_extra = int(extra * len(true_xy))  # cosmic rays, hot pixels, a satellite
    spurious = rng.uniform(0, 1, (n_extra, 2)) * [nx - 1, ny - 1]
    spurious_flux = (1.0 - rng.random(n_extra)) ** (-1 / 0.8)
    listed = np.vstack([true_xy, spurious])
    measured = listed + rng.normal(0, noise, listed.shape)
    measured[len(true_xy) :] = spurious
    listed[len(true_xy) :] = np.nan
    frame_xy, order = catalogue(measured, np.concatenate([true_flux, spurious_flux]), rng)
    return ref_xy, frame_xy, listed[order]


def mapping_error(match, transform, frame_true):
    """Median distance (px) between where the match and the truth put the
    frame's real stars on the reference grid."""
    real = frame_true[np.isfinite(frame_true[:, 0])]
    return float(
        np.median(
            np.hypot(*(transform_xy(match.transform, real) - transform_xy(transform, real)).T)
        )
    )
