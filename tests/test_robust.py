import numpy as np
import pytest
from astropy.stats import mad_std as astropy_mad_std
from scipy.stats import norm

from ccdreduce import robust


def test_the_exact_factor_is_one_over_the_gaussian_quartile_as_astropy_has_it():
    assert robust.MAD_TO_SIGMA == 1 / norm.ppf(0.75)
    values = np.random.default_rng(0).normal(0, 3, 1001)
    assert robust.mad_std(values) == astropy_mad_std(values)
    assert round(robust.MAD_TO_SIGMA, 4) == robust.MAD_TO_SIGMA_4DP


def test_mad_std_of_gaussian_noise_is_its_sigma_and_outliers_barely_move_it():
    values = np.random.default_rng(1).normal(100.0, 5.0, 200_000)
    assert robust.mad_std(values) == pytest.approx(5.0, rel=0.01)
    values[:2000] = 1e6  # 1 % cosmic rays
    assert robust.mad_std(values) == pytest.approx(5.0, rel=0.03)
    assert np.std(values) > 1e4


def test_mad_about_a_given_centre():
    values = np.array([1.0, 2.0, 4.0, 7.0, 100.0])
    assert robust.mad(values) == 3.0  # about the median 4: |dev| 3, 2, 0, 3, 96
    assert robust.mad(values, centre=0.0) == 4.0
    assert robust.mad_std(values, 0.0, factor=2.0) == 8.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mad_std_is_bit_for_bit_the_inline_expression_it_replaced(dtype):
    """stars, stacking and register computed 1.4826 * median(|x - median|)
    inline; the helper must give the same bits and dtype."""
    values = np.random.default_rng(2).normal(1000.0, 20.0, 10_001).astype(dtype)
    inline = 1.4826 * np.median(np.abs(values - np.median(values)))
    helped = robust.mad_std(values, factor=robust.MAD_TO_SIGMA_4DP)
    assert helped == inline and helped.dtype == inline.dtype
    level = np.median(values[:5000])
    inline = 1.4826 * np.median(np.abs(values - level))
    assert robust.mad_std(values, level, factor=robust.MAD_TO_SIGMA_4DP) == inline
