"""Star patterns that survive any turn, flip and change of plate scale.

Three stars make a triangle whose side ratios do not change when the frame
is turned, flipped about the meridian, shifted or binned. Triangles of
neighbouring bright stars in the frame are looked up among the reference's
by those ratios; each pair of like triangles proposes a similarity (scale,
rotation, shift), and the proposal that puts most of the frame's bright
stars on reference stars wins (the idea of astroalign, on our catalogues).

Neighbours are taken among the brightest 20, 40, 80 and 160 stars of each
list: when the plate scales differ by up to 2 either way (a binned camera,
another telescope) or the frames overlap by a third, the same stars are the
brightest of the common sky at one of these depths in each list, so their
nearest neighbours make the same triangles.
"""

import itertools

import numpy as np
from scipy.spatial import cKDTree

DEPTHS = (20, 40, 80, 160)  # brightest stars whose neighbours make triangles
NEIGHBOURS = 4  # each star with its 4 nearest: 10 triangles
RATIO_TOLERANCE = 0.01  # side ratios of like triangles agree within this
SHORTEST_SIDE = 4.0  # px: shorter sides leave the ratios to centroid noise
SCORED_STARS = 40  # the frame's brightest stars that score a proposal

_CORNERS = np.array(list(itertools.combinations(range(NEIGHBOURS + 1), 3)))


def triangles(xy):
    """(m, 3) star indices of the triangles each star makes with its nearest
    neighbours, vertices ordered by the side opposite them, shortest first,
    so that like triangles list like stars in the same order."""
    if len(xy) < 3:
        return np.empty((0, 3), dtype=int)
    k = min(NEIGHBOURS + 1, len(xy))
    _, near = cKDTree(xy).query(xy, k=k)
    corners = _CORNERS[np.all(_CORNERS < k, axis=1)]
    tri = np.unique(np.sort(near[:, corners].reshape(-1, 3), axis=1), axis=0)
    opposite = _sides(xy, tri)
    order = np.argsort(opposite, axis=1)
    return np.take_along_axis(tri, order, axis=1)


def _sides(xy, tri):
    """Side lengths opposite each vertex of each triangle."""
    p = xy[tri]
    return np.stack(
        [
            np.hypot(*(p[:, 1] - p[:, 2]).T),
            np.hypot(*(p[:, 0] - p[:, 2]).T),
            np.hypot(*(p[:, 0] - p[:, 1]).T),
        ],
        axis=1,
    )


def descriptors(xy, tri):
    """Per triangle (shortest / longest side, middle / longest side), and
    whether it is usable: not too small, not a line."""
    sides = _sides(xy, tri)  # sorted: the vertices are ordered by them
    ratios = sides[:, :2] / sides[:, 2:]
    usable = (sides[:, 0] >= SHORTEST_SIDE) & (ratios[:, 0] + ratios[:, 1] > 1.02)
    return ratios, usable


def _orientation(xy, tri):
    """+1 or -1: the turning sense of the ordered vertices. A similarity
    keeps it; a mirror image, which no turn or flip produces, does not."""
    p = xy[tri]
    u, v = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return np.sign(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])


def layered_triangles(xy):
    """Triangles of the brightest stars at every depth, with descriptors."""
    depths = sorted({min(depth, len(xy)) for depth in DEPTHS})  # a short list: all of it
    tri = np.unique(np.concatenate([triangles(xy[:depth]) for depth in depths]), axis=0)
    ratios, usable = descriptors(xy, tri)
    return tri[usable], ratios[usable]


def like_triangles(ref_xy, frame_xy):
    """Pairs of triangles (ref (m, 3), frame (m, 3) star indices) with the
    same side ratios and turning sense."""
    ref_tri, ref_ratio = layered_triangles(ref_xy)
    frame_tri, frame_ratio = layered_triangles(frame_xy)
    if not len(ref_tri) or not len(frame_tri):
        return np.empty((0, 3), int), np.empty((0, 3), int)
    close = cKDTree(ref_ratio).sparse_distance_matrix(
        cKDTree(frame_ratio), RATIO_TOLERANCE, output_type="coo_matrix"
    )
    r, f = ref_tri[close.row], frame_tri[close.col]
    same = _orientation(ref_xy, r) == _orientation(frame_xy, f)
    return r[same], f[same]


def proposals(ref_xy, frame_xy, scale_range):
    """Similarities ref = a * frame + t (complex a, t arrays), one per pair
    of like triangles, within ``scale_range`` (reference px per frame px)."""
    r, f = like_triangles(ref_xy, frame_xy)
    zr = ref_xy[r, 0] + 1j * ref_xy[r, 1]
    zf = frame_xy[f, 0] + 1j * frame_xy[f, 1]
    cr, cf = zr.mean(axis=1, keepdims=True), zf.mean(axis=1, keepdims=True)
    a = np.sum(np.conj(zf - cf) * (zr - cr), axis=1) / np.sum(np.abs(zf - cf) ** 2, axis=1)
    t = cr[:, 0] - a * cf[:, 0]
    low, high = scale_range
    keep = (np.abs(a) >= low) & (np.abs(a) <= high)
    return a[keep], t[keep]


def scores(ref_xy, frame_xy, a, t, tolerance):
    """For each proposal, how many of the frame's brightest stars it puts
    within ``tolerance`` px of a reference star."""
    bright = frame_xy[:SCORED_STARS]
    z = a[:, None] * (bright[:, 0] + 1j * bright[:, 1])[None, :] + t[:, None]
    points = np.column_stack([z.real.ravel(), z.imag.ravel()])
    dist, _ = cKDTree(ref_xy).query(points, distance_upper_bound=tolerance)
    return np.isfinite(dist).reshape(z.shape).sum(axis=1)


def best_proposals(ref_xy, frame_xy, scale_range, tolerance, tries=3):
    """The few best-scoring distinct similarities (a, t, score), best first."""
    a, t = proposals(ref_xy, frame_xy, scale_range)
    if not len(a):
        return []
    score = scores(ref_xy, frame_xy, a, t, tolerance)
    chosen = []
    for i in np.argsort(-score, kind="stable"):
        if len(chosen) == tries:
            break
        # many like triangles propose the same similarity: try each only once
        if any(abs(a[i] - a[j]) < 0.01 * abs(a[j]) and abs(t[i] - t[j]) < 10 for j in chosen):
            continue
        chosen.append(i)
    return [(a[i], t[i], int(score[i])) for i in chosen]
