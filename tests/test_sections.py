import numpy as np
import pytest

from ccdreduce.sections import parse_section, section_slices


def test_fits_section_is_one_based_inclusive_x_first():
    image = np.arange(20 * 30).reshape(20, 30)  # ny=20, nx=30
    rows, cols = section_slices("[3:10,5:20]", image.shape)
    cut = image[rows, cols]
    assert cut.shape == (16, 8)
    # FITS pixel (x=3, y=5) is numpy [4, 2]
    assert cut[0, 0] == image[4, 2]
    assert cut[-1, -1] == image[19, 9]


def test_section_outside_frame_names_both_sizes():
    with pytest.raises(ValueError, match=r"\[1:4096,1:4096\].*1536x1023"):
        section_slices("[1:4096,1:4096]", (1023, 1536))


@pytest.mark.parametrize("bad", ["1:10,1:10", "[0:10,1:10]", "[10:1,1:10]", "[a:b,c:d]"])
def test_malformed_sections_are_refused(bad):
    with pytest.raises(ValueError):
        parse_section(bad)
