"""The combine engine against astropy and ccdproc on the same numbers."""

import numpy as np
import pytest
from astropy.stats import mad_std, sigma_clip

from ccdreduce.combine import combine


def stack(n=9, shape=(60, 70), seed=3):
    rng = np.random.default_rng(seed)
    cube = rng.normal(1000.0, 10.0, (n, *shape)).astype(np.float32)
    cube[2, 5:9, 5:9] += 5000.0  # a cosmic ray
    cube[4, 20, 30] = -300.0  # a cold outlier
    return cube


@pytest.mark.parametrize("maxiters", [1, 3, None])
@pytest.mark.parametrize(
    "cenfunc, stdfunc", [("median", "mad_std"), ("mean", "std"), ("median", "std")]
)
def test_sigma_clip_equals_astropy(maxiters, cenfunc, stdfunc):
    cube = stack()
    image, coverage = combine(
        cube,
        "sigclip",
        sigma_lower=2.5,
        sigma_upper=3.0,
        maxiters=maxiters,
        cenfunc=cenfunc,
        stdfunc=stdfunc,
    )
    clipped = sigma_clip(
        cube,
        sigma_lower=2.5,
        sigma_upper=3.0,
        maxiters=maxiters,
        axis=0,
        cenfunc=cenfunc,
        stdfunc=stdfunc,
        masked=True,
    )
    np.testing.assert_allclose(image, clipped.mean(axis=0).filled(np.nan), rtol=1e-6)
    np.testing.assert_array_equal(coverage, (~clipped.mask).sum(axis=0))
    if cenfunc == "median":  # mean and std of 9 values are dragged along by a +5000 hit
        assert abs(image[6, 6] - 1000.0) < 30.0  # the cosmic ray was rejected


def test_master_recipe_equals_ccdproc_combine():
    """The observatory recipe: average, 5/5 sigma clip, median centre, MAD width."""
    from astropy.nddata import CCDData
    from ccdproc import combine as ccdproc_combine

    cube = stack(n=7)
    frames = [CCDData(frame, unit="adu") for frame in cube]
    reference = ccdproc_combine(
        frames,
        method="average",
        sigma_clip=True,
        sigma_clip_low_thresh=5,
        sigma_clip_high_thresh=5,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=mad_std,
    )
    image, _ = combine(cube, "sigclip", sigma_lower=5, sigma_upper=5, maxiters=1)
    np.testing.assert_allclose(image, reference.data, rtol=1e-5)


def test_median_and_average_skip_missing_pixels():
    cube = stack(n=5)
    cube[1, 10, 10] = np.nan
    cube[:, 0, 0] = np.nan
    for method, reference in (("median", np.nanmedian), ("average", np.nanmean)):
        image, coverage = combine(cube, method)
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            expected = reference(cube, axis=0)
        np.testing.assert_allclose(image, expected, rtol=1e-6)
        assert coverage[10, 10] == 4 and coverage[0, 0] == 0 and np.isnan(image[0, 0])


def test_minmax_drops_extremes_and_shrinks_for_small_stacks():
    cube = stack(n=9)
    image, coverage = combine(cube, "minmax", n_low=3, n_high=3)
    ordered = np.sort(cube, axis=0)
    np.testing.assert_allclose(image, ordered[3:6].mean(axis=0), rtol=1e-6)
    assert (coverage == 3).all()
    # four frames cannot lose six values: one low and two high go, one stays
    small, coverage = combine(cube[:4], "minmax", n_low=3, n_high=3)
    ordered = np.sort(cube[:4], axis=0)
    np.testing.assert_allclose(small, ordered[1], rtol=1e-6)
    assert (coverage == 1).all()


def test_bands_give_the_same_answer_as_one_piece():
    cube = stack(n=6, shape=(100, 40))
    whole, _ = combine(cube, "sigclip", maxiters=None)
    banded, _ = combine(cube, "sigclip", maxiters=None, band_bytes=6 * 40 * 4 * 4 * 7)
    np.testing.assert_array_equal(whole, banded)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown combine method 'mode'"):
        combine(stack(n=5), "mode")


def test_weights_make_a_weighted_mean_of_the_kept_values():
    cube = stack(n=6)
    weights = np.array([1.0, 2.0, 3.0, 1.0, 0.5, 2.5])
    image, _ = combine(cube, "average", weights=weights)
    expected = (cube * weights[:, None, None]).sum(axis=0) / weights.sum()
    np.testing.assert_allclose(image, expected, rtol=1e-6)
    # with clipping, the cosmic ray's frame drops out of the weighted mean there
    image, coverage = combine(cube, "sigclip", weights=weights, sigma_lower=5, sigma_upper=5)
    keep = np.ones(6, bool)
    keep[2] = False
    expected = (cube[keep, 6, 6] * weights[keep]).sum() / weights[keep].sum()
    assert image[6, 6] == pytest.approx(expected, rel=1e-6) and coverage[6, 6] == 5


def test_files_are_combined_band_by_band_as_in_memory(tmp_path):
    from astropy.io import fits

    from ccdreduce.combine import combine_files

    cube = stack(n=7, shape=(90, 50))
    cube[1, :10] = np.nan  # an edge no frame 1 covers
    paths = []
    for i, frame in enumerate(cube):
        paths.append(tmp_path / f"f{i}.fits")
        fits.PrimaryHDU(frame).writeto(paths[-1])
    scales = np.linspace(0.9, 1.2, 7)
    bands = []
    for method in ("median", "sigclip", "minmax"):
        whole, cov = combine(cube * scales[:, None, None], method, n_low=1, n_high=1)
        banded, bcov = combine_files(
            paths,
            method,
            scales=scales,
            memory_mb=0.05,
            threads=2,
            progress=lambda done, total: bands.append(done),
            n_low=1,
            n_high=1,
        )
        np.testing.assert_allclose(banded, whole, rtol=1e-6)
        np.testing.assert_array_equal(bcov, cov)
    assert len(set(bands)) > 3  # it really went in bands
    assert (cov[:10] == 6 - 2).all()  # minmax of the 6 frames covering the edge


def test_stack_groups_are_safe_folders(tmp_path):
    from ccdreduce.inventory import Frame
    from ccdreduce.stacking import group_name

    frame = Frame(
        night="2025-03-01",
        relpath="x",
        path="x",
        stem="x",
        object="NGC 2362",
        filter="H-alpha/3nm",
        exposure=30.0,
    )
    assert group_name(frame, ["object", "filter"]) == "NGC_2362/H-alpha_3nm"
    assert group_name(frame, ["object", "filter", "night"]) == "NGC_2362/H-alpha_3nm/2025-03-01"
    frame.object = "../../etc"
    assert group_name(frame, ["object"]) == "etc"
