"""Robust statistics: the median absolute deviation (MAD) as a standard
deviation, the one home of its factor.

For Gaussian noise the MAD is sigma / 1.4826..., so the MAD times
MAD_TO_SIGMA estimates sigma while a few outliers (stars, cosmic rays, a
blended star pair) barely move it.

Two spellings of the factor are in use, and both live here on purpose:

- MAD_TO_SIGMA, the exact 1 / Phi^-1(3/4) as astropy.stats.mad_std has it:
  the combine engine, which reproduces astropy's sigma clipping bit for bit;
- MAD_TO_SIGMA_4DP = 1.4826, to four decimals, as sky noise (stars),
  registration's outlier clipping and flux scaling have always used it.

The two differ by 1.5e-6 relative. Moving the second group onto the exact
factor would change sky noise, detection thresholds and frame weights in
their last digits, and so every product downstream; that is a decision of
its own, not a refactoring.

numpy only: star finding imports this in every per-frame job.
"""

import numpy as np

#: 1 / Phi^-1(3/4): MAD to standard deviation for Gaussian noise (astropy's).
MAD_TO_SIGMA = 1.482602218505602
#: The same factor to four decimals, as stars, register and scaling use it.
MAD_TO_SIGMA_4DP = 1.4826


def mad(values, centre=None):
    """Median absolute deviation of ``values`` about ``centre`` (their
    median when None)."""
    if centre is None:
        centre = np.median(values)
    return np.median(np.abs(values - centre))


def mad_std(values, centre=None, factor=MAD_TO_SIGMA):
    """Robust standard deviation: ``factor`` times the MAD about ``centre``
    (the median of ``values`` when None).

    The product is taken as ``factor * mad`` with ``factor`` a Python float,
    so the result has the dtype numpy gives that expression (float32 input
    stays float32), exactly as the callers computed it inline before.
    """
    return factor * mad(values, centre)
