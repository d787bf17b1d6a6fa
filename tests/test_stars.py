"""Star finding on simulated images with known positions."""

import numpy as np

from ccdreduce.simulate import render_stars
from ccdreduce.stars import background, detect, median_fwhm


def field(fwhm=3.4, seed=1, sky=200.0, noise=10.0, n=40):
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    x = rng.uniform(20, 236, n)
    y = rng.uniform(20, 236, n)
    flux = 10 ** rng.uniform(3.5, 5.0, n)
    image = render_stars(shape, x, y, flux, fwhm) + sky + rng.normal(0, noise, shape)
    return image.astype(np.float32), x, y, flux


def nearest(stars, x, y):
    d = np.hypot(stars["x"][:, None] - x[None], stars["y"][:, None] - y[None])
    return d.argmin(axis=1), d.min(axis=1)


def test_background_ignores_the_stars():
    image, *_ = field(sky=200.0, noise=10.0)
    level = background(image)
    # within 0.1 sigma: the wings of 40 bright stars lift the median a little
    assert abs(level.level - 200.0) < 1.0 and abs(level.noise - 10.0) < 0.3


def test_bright_star_centroids_within_two_hundredths_of_a_pixel():
    image, x, y, flux = field()
    stars, _ = detect(image)
    index, distance = nearest(stars, x, y)
    separation = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(len(x)) * 1e9
    isolated = separation.min(axis=1) > 15  # a blended pair pulls both centroids
    bright = (flux[index] > 20000) & isolated[index]
    assert bright.sum() >= 8
    assert distance.max() < 1.0  # every detection is a real star
    errors = np.hypot(stars["x"] - x[index], stars["y"] - y[index])[bright]
    assert np.sqrt(np.mean(errors**2)) < 0.02


def test_fwhm_scales_with_the_star_size():
    """Twice the half-light radius: a fixed multiple of the true FWHM for one
    profile shape (1.26 for Moffat beta=3), so apertures in FWHM units take
    the same share of light whatever the seeing."""
    ratios = []
    for fwhm in (2.5, 3.4, 4.5, 6.0):
        stars, _ = detect(field(fwhm=fwhm)[0], fwhm_guess=3.5)
        ratios.append(median_fwhm(stars) / fwhm)
    # within 7 %: at an aperture of 2 FWHM that moves the light caught by < 0.5 %
    assert max(ratios) / min(ratios) < 1.07, ratios
    assert 1.15 < np.mean(ratios) < 1.35


def test_noise_and_cosmic_rays_are_not_stars():
    rng = np.random.default_rng(5)
    image = (200 + rng.normal(0, 10, (256, 256))).astype(np.float32)
    image[rng.integers(10, 246, 40), rng.integers(10, 246, 40)] += 3000  # cosmic rays
    stars, _ = detect(image)
    assert len(stars["x"]) == 0


def test_saturated_stars_are_flagged():
    image, x, y, flux = field()
    saturated = np.zeros(image.shape, bool)
    brightest = np.argmax(flux)
    saturated[int(round(y[brightest])), int(round(x[brightest]))] = True
    stars, _ = detect(image, saturated)
    index, _ = nearest(stars, x, y)
    assert stars["saturated"][index == brightest].all()
    assert stars["saturated"].sum() == 1


def test_sky_model_is_a_level_or_a_map_that_follows_a_gradient():
    from ccdreduce.stars import sky_model

    rng = np.random.default_rng(3)
    gradient = np.linspace(100, 300, 256)[None, :] * np.ones((256, 1))
    image = (gradient + rng.normal(0, 5, (256, 256))).astype(np.float32)
    level, median = sky_model(image, "median", 200.0)
    assert level == median == 200.0
    sky, median = sky_model(image, "background2d", 200.0, box=32)
    error = np.abs(sky - gradient)
    assert error[:, 48:-48].max() < 5 and abs(median - 200) < 5  # edge cells are flattened
    assert np.sqrt(np.mean(error**2)) < 0.2 * np.sqrt(np.mean((gradient - 200.0) ** 2))


def test_a_bad_column_is_not_a_string_of_stars():
    image, x, y, _ = field()
    clean, _ = detect(image)
    image[:, 128] += 3000.0  # a hot column, one pixel wide, top to bottom
    stars, _ = detect(image)
    on_column = np.abs(stars["x"] - 128) < 1.5
    true_on_column = np.sum(np.abs(x - 128) < 4)  # real stars the column runs through
    assert on_column.sum() <= true_on_column
    assert abs(median_fwhm(stars) - median_fwhm(clean)) < 0.2  # the seeing is the stars'
    assert len(stars["x"]) >= len(clean["x"]) - 2 * true_on_column - 1


def clipped_sky(values, iterations=3):
    """The sky as the partition-based statistics give it: np.median and the
    MAD of the pixels within 3 sigma of the level, recomputed each round."""
    from ccdreduce.robust import MAD_TO_SIGMA_4DP, mad_std

    values = values[np.isfinite(values)].ravel()
    level, noise = np.median(values), mad_std(values, factor=MAD_TO_SIGMA_4DP)
    for _ in range(iterations):
        keep = np.abs(values - level) < 3 * noise
        if not keep.any():
            break
        level = np.median(values[keep])
        noise = mad_std(values[keep], level, factor=MAD_TO_SIGMA_4DP)
    return float(level), float(noise)


def test_background_from_sorted_pixels_equals_median_and_mad_to_the_last_bit():
    rng = np.random.default_rng(7)
    skies = [
        rng.normal(140.0, 11.0, (64, 64)),  # sky noise
        rng.integers(95, 105, (31, 17)).astype(float),  # integer ADU: many ties
        np.concatenate([rng.normal(100, 5, 900), rng.normal(1e4, 1e3, 90)]),  # stars
        rng.standard_cauchy(1001) * 3,  # wild tails
        np.full(12, 7.0),  # a flat frame: no noise
        np.array([3.0]),
        np.where(rng.random(500) < 0.3, np.nan, rng.normal(0, 1e-3, 500)),  # NaN pixels
    ]
    for sky in skies:
        for dtype in (np.float32, np.float64):
            found = background(sky.astype(dtype))
            assert (found.level, found.noise) == clipped_sky(sky.astype(dtype))
