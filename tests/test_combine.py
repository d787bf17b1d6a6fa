"""The combine engine against astropy and ccdproc on the same numbers."""

from pathlib import Path

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
    image, coverage, _ = combine(
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
    image, _, _ = combine(cube, "sigclip", sigma_lower=5, sigma_upper=5, maxiters=1)
    np.testing.assert_allclose(image, reference.data, rtol=1e-5)


def test_median_and_average_skip_missing_pixels():
    cube = stack(n=5)
    cube[1, 10, 10] = np.nan
    cube[:, 0, 0] = np.nan
    for method, reference in (("median", np.nanmedian), ("average", np.nanmean)):
        image, coverage, _ = combine(cube, method)
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            expected = reference(cube, axis=0)
        np.testing.assert_allclose(image, expected, rtol=1e-6)
        assert coverage[10, 10] == 4 and coverage[0, 0] == 0 and np.isnan(image[0, 0])


def test_minmax_drops_extremes_and_shrinks_for_small_stacks():
    cube = stack(n=9)
    image, coverage, _ = combine(cube, "minmax", n_low=3, n_high=3)
    ordered = np.sort(cube, axis=0)
    np.testing.assert_allclose(image, ordered[3:6].mean(axis=0), rtol=1e-6)
    assert (coverage == 3).all()
    # four frames cannot lose six values: 3/3 shrinks to 2/2 (none left), then
    # 1/1: the two middle values stay, the median
    small, coverage, _ = combine(cube[:4], "minmax", n_low=3, n_high=3)
    ordered = np.sort(cube[:4], axis=0)
    np.testing.assert_allclose(small, ordered[1:3].mean(axis=0), rtol=1e-6)
    assert (coverage == 2).all()


def test_minmax_of_a_pixel_some_frames_miss_uses_the_same_symmetric_rule():
    """The exact path (NaN present) counts as the fast path does: a pixel
    covered by 6 of 9 frames rejects 2/2 of its 6 values, not 2 low 3 high."""
    cube = stack(n=9)
    cube[:3, 40, 50] = np.nan
    image, coverage, _ = combine(cube, "minmax", n_low=3, n_high=3)
    ordered = np.sort(cube[3:, 40, 50])
    assert coverage[40, 50] == 2
    assert image[40, 50] == pytest.approx(ordered[2:4].mean(), rel=1e-6)


def star_field(n, seed=11, size=128, spacing=32, peak=2000.0, sigma=2.0, sky=100.0):
    """``n`` frames of 16 Gaussian stars of known total flux on a flat sky,
    with Poisson-like noise; returns (cube, centres, true flux, sky)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    model = np.full((size, size), sky)
    axis = range(spacing // 2, size, spacing)
    centres = [(cy, cx) for cy in axis for cx in axis]
    for cy, cx in centres:
        model += peak * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
    flux = len(centres) * peak * 2 * np.pi * sigma**2
    cube = rng.normal(model, np.sqrt(model), (n, size, size)).astype(np.float32)
    return cube, centres, flux, sky


def aperture_flux(image, centres, sky, radius=10):
    y, x = np.mgrid[: image.shape[0], : image.shape[1]]
    return sum(
        float((image[(y - cy) ** 2 + (x - cx) ** 2 <= radius**2] - sky).sum()) for cy, cx in centres
    )


@pytest.mark.parametrize("frames", [2, 6])
def test_minmax_of_a_small_stack_keeps_the_star_flux_as_the_median_does(frames):
    """The trap: with 2 frames, 3/3 became 0 low 1 high (the pixel-wise
    minimum, flux ratio 0.95); with 6, 2 low 3 high (0.98). Reduced
    symmetrically, min-max stays median-like and keeps the true flux."""
    cube, centres, flux, sky = star_field(frames)
    minmax, coverage, _ = combine(cube, "minmax", n_low=3, n_high=3)
    median, _, _ = combine(cube, "median")
    ratio = aperture_flux(minmax, centres, sky) / flux
    assert abs(ratio - 1) < 0.005, ratio
    assert abs(ratio - aperture_flux(median, centres, sky) / flux) < 0.005
    assert (coverage == 2).all()  # 2 frames: both kept; 6 frames: the middle two


def test_minmax_counts_reduce_low_and_high_symmetrically_and_keep_one():
    from ccdreduce.combine import minmax_counts, minmax_note

    expected = {
        (9, 3, 3): (3, 3),
        (7, 3, 3): (3, 3),
        (6, 3, 3): (2, 2),
        (4, 3, 3): (1, 1),
        (3, 3, 3): (1, 1),
        (2, 3, 3): (0, 0),
        (2, 0, 1): (0, 1),  # asked for, and one value stays
        (4, 0, 5): (0, 3),
        (1, 1, 1): (0, 0),
        (0, 3, 3): (0, 0),
    }
    for (n, low, high), counts in expected.items():
        assert minmax_counts(n, low, high) == counts, (n, low, high)
        if n:
            assert n - sum(counts) >= 1
    assert minmax_note(2, 3, 3) == (
        "minmax: 2 frames: rejected 0 low 0 high (configured 3/3, reduced symmetrically "
        "to keep >= 1)"
    )
    assert minmax_note(9, 3, 3) == "minmax: 9 frames: rejected 3 low 3 high"


def test_an_unknown_combine_parameter_is_refused():
    with pytest.raises(TypeError, match="sigma_lowr"):
        combine(stack(n=5), "sigclip", sigma_lowr=1.0)


def validated(config):
    """A config as the workflow sees it: checked against the schema, its
    defaults filled in."""
    from snakemake.utils import validate

    config = {"raw_dir": "raw"} | config
    validate(config, str(Path(__file__).parents[1] / "schemas" / "config.schema.yaml"))
    return config


def test_a_stack_entry_with_only_its_method_gets_the_stacking_defaults_not_the_masters():
    config = validated(
        {
            "stacking": {
                "combine": {"sigclip": {"method": "sigclip"}, "minmax": {"method": "minmax"}}
            }
        }
    )
    # the schema fills in no parameter: the masters' recipe must not leak in
    assert config["stacking"]["combine"]["sigclip"] == {"method": "sigclip"}
    from ccdreduce.combine import CombineSpec

    stack = config["stacking"]["combine"]
    assert CombineSpec.from_config(stack["sigclip"], "stack").params() == {
        "sigma_lower": 3,
        "sigma_upper": 5,
        "maxiters": 10,
        "cenfunc": "median",
        "stdfunc": "mad_std",
        "noise_floor": True,
        "weights": "noise",
    }
    assert CombineSpec.from_config(stack["minmax"], "stack").params() == {
        "n_low": 3,
        "n_high": 3,
        "weights": "none",
    }
    # the booleans of old still mean what they meant
    assert CombineSpec.from_config({"method": "average", "weights": True}, "stack").weights == (
        "noise"
    )
    assert CombineSpec.from_config({"method": "average", "weights": False}, "stack").weights == (
        "none"
    )
    # and a master left to its defaults is the observatory's recipe
    master = CombineSpec.from_config(config["calibration"]["combine"]["bias"], "master")
    assert master.as_config() == {
        "method": "sigclip",
        "sigma_lower": 5,
        "sigma_upper": 5,
        "maxiters": 1,
        "cenfunc": "median",
        "stdfunc": "mad_std",
    }
    assert CombineSpec.from_config({"method": "minmax"}, "master").params() == {
        "n_low": 1,
        "n_high": 1,
    }


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"stacking": {"combine": {"sigclip": {"method": "sigclip", "sigma_lowr": 1}}}},
            r"stacking\.combine\.sigclip: unknown key 'sigma_lowr'\. Fix: did you mean "
            r"'sigma_lower'\?",
        ),
        (
            {"calibration": {"combine": {"flat": {"method": "median", "sigma_lower": 4}}}},
            r"calibration\.combine\.flat: sigma_lower does nothing with method median .*"
            r"Fix: remove sigma_lower",
        ),
        (
            {"stacking": {"combine": {"median": {"method": "median", "weights": True}}}},
            r"stacking\.combine\.median: weights does nothing with method median",
        ),
        (
            {"calibration": {"combine": {"bias": {"method": "average", "weights": True}}}},
            r"calibration\.combine\.bias: unknown key 'weights'",
        ),
    ],
)
def test_a_combine_key_that_would_be_ignored_is_refused(config, message):
    from ccdreduce.combine import check_combine_config
    from ccdreduce.errors import ConfigProblem

    with pytest.raises(ConfigProblem, match=message):
        check_combine_config(config)
    if "unknown key" in message:  # the schema, which checks after, refuses it too
        with pytest.raises(Exception, match="Unevaluated properties are not allowed"):
            validated(config)


def test_bands_give_the_same_answer_as_one_piece():
    cube = stack(n=6, shape=(100, 40))
    whole, _, _ = combine(cube, "sigclip", maxiters=None)
    banded, _, _ = combine(cube, "sigclip", maxiters=None, memory_mb=0.03)  # 5-row bands
    np.testing.assert_array_equal(whole, banded)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown combine method 'mode'"):
        combine(stack(n=5), "mode")


def test_weights_make_a_weighted_mean_of_the_kept_values():
    cube = stack(n=6)
    weights = np.array([1.0, 2.0, 3.0, 1.0, 0.5, 2.5])
    image, _, _ = combine(cube, "average", weights=weights)
    expected = (cube * weights[:, None, None]).sum(axis=0) / weights.sum()
    np.testing.assert_allclose(image, expected, rtol=1e-6)
    # with clipping, the cosmic ray's frame drops out of the weighted mean there
    image, coverage, _ = combine(cube, "sigclip", weights=weights, sigma_lower=5, sigma_upper=5)
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
        whole, cov, _ = combine(cube * scales[:, None, None], method, n_low=1, n_high=1)
        banded, bcov, _ = combine_files(
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


# --- uncertainty, against known truth ------------------------------------


def noisy_cube(n, seed, shape=(200, 200), nan_fraction=0.03):
    """(cube, sigmas, per-frame sigma): zero-mean Gaussian frames whose
    noise differs by up to 2x, a few per cent of values missing (NaN)."""
    rng = np.random.default_rng(seed)
    frame_sigma = rng.uniform(1.0, 2.0, n) * 5.0
    cube = (rng.standard_normal((n, *shape)) * frame_sigma[:, None, None]).astype(np.float32)
    cube[rng.random(cube.shape) < nan_fraction] = np.nan
    sigmas = np.broadcast_to(frame_sigma[:, None, None], cube.shape).astype(np.float32)
    return cube, sigmas, frame_sigma


STACK_SPECS = {
    "average": {"weights": "none"},
    "median": {},
    "minmax": {"n_low": 1, "n_high": 1},
    "sigclip": {"weights": "none"},  # the stack default: median, MAD, noise floor
    "ccdclip": {"weights": "none"},
}


@pytest.mark.parametrize("n", [3, 4, 6, 10, 20])
@pytest.mark.parametrize("method", list(STACK_SPECS))
def test_predicted_sigma_matches_the_measured_scatter(method, n):
    """Truth is 0 everywhere: image / sigma must scatter as a unit normal
    (predicted over measured between 0.9 and 1.1), per pixel, whatever its
    count of values, with unequal frame noise."""
    from ccdreduce.combine import CombineSpec

    cube, sigmas, _ = noisy_cube(n, seed=n)
    spec = CombineSpec.of(method, kind="stack", **STACK_SPECS[method])
    image, _, sigma = combine(cube, spec, uncertainty=sigmas)
    ratio = 1.0 / np.nanstd(image / sigma)
    assert 0.9 < ratio < 1.1, ratio


@pytest.mark.parametrize("n", [3, 5, 13])
@pytest.mark.parametrize("method", ["average", "median", "minmax", "sigclip"])
def test_sigma_from_the_scatter_of_the_inputs(method, n):
    """Masters (no input sigma): sigma from the survivors' own scatter, its
    rms over pixels equal to the measured scatter of the result (0.9-1.1).
    Not for the masters' 5-sigma MAD clip of 3 frames: the MAD of 3 values
    is so often tiny that good values go, and the two left agree too well."""
    if method == "sigclip" and n == 3:
        pytest.skip("a MAD of three values: see the docstring")
    rng = np.random.default_rng(n)
    cube = (rng.standard_normal((n, 200, 200)) * 5.0).astype(np.float32)
    image, _, sigma = combine(cube, method, uncertainty="scatter")
    ok = np.isfinite(sigma)
    ratio = np.sqrt(np.mean(sigma[ok] ** 2)) / np.std(image[ok])
    assert 0.9 < ratio < 1.1, ratio


def test_the_weighted_average_reaches_the_inverse_variance_ideal():
    """Scaled frames of unequal noise, weighted by the inverse variance of
    the scaled frame: noise within 3 % of 1/sqrt(sum 1/(s_i sigma_i)^2)."""
    rng = np.random.default_rng(7)
    n = 9
    frame_sigma = rng.uniform(3.0, 9.0, n)
    scale = rng.uniform(0.6, 1.6, n)
    raw = rng.standard_normal((n, 250, 250)) * frame_sigma[:, None, None] + 100.0
    cube = (raw * scale[:, None, None]).astype(np.float32)
    sigmas = np.broadcast_to((frame_sigma * scale)[:, None, None], cube.shape).astype(np.float32)
    weights = 1.0 / (scale * frame_sigma) ** 2
    ideal = 1.0 / np.sqrt(np.sum(1.0 / (scale * frame_sigma) ** 2))
    image, _, sigma = combine(cube, "average", weights=weights, uncertainty=sigmas)
    assert abs(np.std(image) / ideal - 1) < 0.03
    assert np.allclose(sigma, ideal, rtol=1e-5)  # and that is what it predicts
    unweighted, _, _ = combine(cube, "average")
    assert np.std(unweighted) > 1.1 * ideal  # the unweighted average is worse here


def test_a_median_of_three_has_the_known_efficiency():
    from ccdreduce.combine import median_counts, trimmed_variance

    assert trimmed_variance(3, *median_counts(3)) == pytest.approx(0.4487, rel=0.01)
    # pi/2 times the mean's variance for large n
    assert trimmed_variance(41, *median_counts(41)) * 41 == pytest.approx(np.pi / 2, rel=0.02)
    assert trimmed_variance(7, 0, 0) == 1 / 7


@pytest.mark.parametrize(
    "method, params",
    [
        ("average", {}),
        ("median", {}),
        ("minmax", {"n_low": 2, "n_high": 1}),
        ("sigclip", {"sigma_lower": 2.0, "sigma_upper": 2.0, "noise_floor": True}),
        ("sigclip", {"sigma_lower": 2.5, "sigma_upper": 2.5, "stdfunc": "std"}),
        ("ccdclip", {"sigma_lower": 2.0, "sigma_upper": 2.0, "maxiters": None}),
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("uncertainty", ["cube", "scatter"])
def test_the_fast_and_the_exact_path_agree(method, params, weighted, uncertainty):
    """One frame more, all NaN, sends every pixel through the exact path with
    the same values: image, coverage and sigma must not change."""
    if uncertainty == "scatter" and (method == "ccdclip" or params.get("noise_floor")):
        pytest.skip("needs the inputs' sigma")
    if weighted and method == "median":
        pytest.skip("medians are not weighted")
    n = 8
    cube, sigmas, _ = noisy_cube(n, seed=5, shape=(40, 50), nan_fraction=0.0)
    cube[3, 10, 10] += 500.0  # a cosmic ray: rejection on both paths
    weights = np.linspace(0.5, 2.0, n) if weighted else None
    extra = np.full((1, 40, 50), np.nan, np.float32)
    padded = np.concatenate([cube, extra])
    padded_sigmas = np.concatenate([sigmas, np.ones_like(extra)])
    fast = combine(
        cube,
        method,
        weights=weights,
        uncertainty=sigmas if uncertainty == "cube" else "scatter",
        **params,
    )
    exact = combine(
        padded,
        method,
        weights=None if weights is None else np.append(weights, 1.0),
        uncertainty=padded_sigmas if uncertainty == "cube" else "scatter",
        **params,
    )
    for got, expected in zip(exact, fast, strict=True):
        np.testing.assert_allclose(got, expected, rtol=2e-6)


def cosmic_ray_cube(n, seed=0, shape=(30, 30), height=50.0):
    """n Gaussian frames (truth 100, per-frame sigma known), one pixel in
    three hit in one frame by a ``height``-sigma cosmic ray."""
    rng = np.random.default_rng(seed)
    frame_sigma = rng.uniform(4.0, 6.0, n)
    cube = (100.0 + rng.standard_normal((n, *shape)) * frame_sigma[:, None, None]).astype(
        np.float32
    )
    hit = rng.random(shape) < 1 / 3
    frame = rng.integers(0, n, shape)
    ys, xs = np.nonzero(hit)
    cube[frame[ys, xs], ys, xs] += height * frame_sigma[frame[ys, xs]]
    sigmas = np.broadcast_to(frame_sigma[:, None, None], cube.shape).astype(np.float32)
    return cube, sigmas, frame_sigma, hit


@pytest.mark.parametrize("n", [3, 4, 6, 10])
@pytest.mark.parametrize("method", ["sigclip", "ccdclip", "minmax"])
def test_the_default_rejections_remove_a_single_cosmic_ray_at_any_coverage(method, n):
    """A 50-sigma hit kept would move the result by 50/n frame sigmas, at
    least 5 for n = 10; rejected, every hit pixel stays within 3 frame
    sigmas (about 300 hit pixels: the largest residual, not a typical one)."""
    from ccdreduce.combine import CombineSpec

    cube, sigmas, frame_sigma, hit = cosmic_ray_cube(n, seed=n)
    spec = CombineSpec.of(method, kind="stack")
    image, _, _ = combine(cube, spec, uncertainty=sigmas)
    assert np.abs(image - 100.0)[hit].max() < 3 * frame_sigma.max()
    assert 50 / n * frame_sigma.min() > 3 * frame_sigma.max()  # so a kept hit would fail


def test_a_std_width_sigma_clip_keeps_the_cosmic_ray_of_six_frames():
    """Why the default changed: with the width from the same 6 values, a
    single outlier's z-score is at most 5/sqrt(6) = 2.04 < 3."""
    from ccdreduce.combine import CombineSpec

    cube, sigmas, frame_sigma, hit = cosmic_ray_cube(6, seed=6)
    spec = CombineSpec.of("sigclip", kind="stack", stdfunc="std", noise_floor=False)
    image, coverage, _ = combine(cube, spec, uncertainty=sigmas)
    assert (np.abs(image - 100.0)[hit] > 3 * frame_sigma.min()).all()
    assert (coverage[hit] == 6).all()


def test_ccdclip_needs_the_inputs_sigma():
    with pytest.raises(ValueError, match="ccdclip needs each input's uncertainty"):
        combine(stack(n=5), "ccdclip")


def test_files_with_uncert_give_the_sigma_of_the_cube(tmp_path):
    from ccdreduce.combine import combine_files
    from ccdreduce.errors import FrameProblem
    from ccdreduce.fitsfile import write_image

    cube, sigmas, _ = noisy_cube(6, seed=2, shape=(60, 40))
    scales = np.array([1.0, 0.8, 1.3, 1.1, -1.0, 0.9])  # a sign must not turn sigma
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"f{i}.fits")
        mask = np.isnan(cube[i]).astype(np.uint8)
        write_image(paths[-1], cube[i], fits_header(), mask=mask, uncertainty=sigmas[i])
    expected = combine(
        cube * scales[:, None, None],
        "sigclip",
        uncertainty=sigmas * np.abs(scales)[:, None, None],
        noise_floor=True,
    )
    got = combine_files(
        paths, "sigclip", scales=scales, memory_mb=0.05, uncertainty=True, noise_floor=True
    )
    for a, b in zip(got, expected, strict=True):  # scaled in float32 on reading
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)
    write_image(paths[2], cube[2], fits_header())  # made before UNCERT existed
    with pytest.raises(FrameProblem, match=r"f2\.fits.*no UNCERT extension"):
        combine_files(paths, "average", uncertainty=True)


def fits_header():
    from astropy.io import fits

    header = fits.Header()
    header["BUNIT"] = "adu"
    return header


def test_ccdclip_rejects_by_each_values_own_sigma_not_by_rank():
    """Sorted, the kept values need not be one window: 10 with sigma 1 goes,
    20 with sigma 100 beyond it stays."""
    values = np.array([0.0, 0.5, -0.5, 10.0, 20.0], np.float32)[:, None, None]
    sigmas = np.array([1.0, 1.0, 1.0, 1.0, 100.0], np.float32)[:, None, None]
    image, coverage, _ = combine(values, "ccdclip", uncertainty=sigmas, maxiters=None)
    assert coverage[0, 0] == 4 and image[0, 0] == pytest.approx(20.0 / 4)
    values = np.concatenate([values, np.full((1, 1, 1), np.nan, np.float32)])  # exact path
    sigmas = np.concatenate([sigmas, np.ones((1, 1, 1), np.float32)])
    image, coverage, _ = combine(values, "ccdclip", uncertainty=sigmas, maxiters=None)
    assert coverage[0, 0] == 4 and image[0, 0] == pytest.approx(20.0 / 4)


def test_uncert_is_read_without_astropy_past_the_mask(tmp_path):
    from ccdreduce import fastfits
    from ccdreduce.fitsfile import open_bands, write_image

    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_image(
        tmp_path / "a.fits",
        data,
        fits_header(),
        mask=np.ones((3, 4), np.uint8),
        uncertainty=data / 2,
    )
    reader = open_bands(tmp_path / "a.fits", "UNCERT")
    assert isinstance(reader, fastfits.ImageFile)
    out = np.empty(8, np.float32)
    reader.rows_into(1, 3, out, -2.0)
    reader.close()
    np.testing.assert_array_equal(out, -(data[1:] / 2).ravel() * 2)
