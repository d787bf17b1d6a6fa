"""PNG previews (ccdreduce.preview): the picture where the layout puts it,
its grey levels following the stretch, NaN white, row 0 at the bottom as
in FITS; ticks at round values."""

import numpy as np
import pytest
from PIL import Image

from ccdreduce import badpixels, preview
from ccdreduce.preview import BAR_GAP, BAR_LABELS, BAR_WIDTH, IMAGE_SIDE, MARGINS


@pytest.mark.parametrize(
    ("low", "high", "ticks", "decimals"),
    [
        (0, 512, [0, 100, 200, 300, 400, 500], 0),
        (-17.81, 31.55, [-10, 0, 10, 20, 30], 0),
        (0, 14, [0, 2.5, 5, 7.5, 10, 12.5], 1),
        (0.0011, 0.0042, [0.002, 0.003, 0.004], 3),
        (0.0011, 0.0036, [0.0015, 0.002, 0.0025, 0.003, 0.0035], 4),
        (891.5, 1109, [900, 950, 1000, 1050, 1100], 0),
        (0, 128, [0, 25, 50, 75, 100, 125], 0),
        (0.5, 0.5, [0.5], None),
    ],
)
def test_ticks_are_round_values_within_the_range(low, high, ticks, decimals):
    found, places = preview.nice_ticks(low, high)
    assert found == pytest.approx(ticks) and places == decimals
    assert low <= found[0] and found[-1] <= high
    assert preview._label(found[-1], places) == str(ticks[-1])


def test_a_preview_draws_the_stretched_image_with_row_zero_at_the_bottom(tmp_path):
    ny, nx = 260, 520  # drawn 1:1, 520 x 260 px
    image = np.tile(np.linspace(0.0, 100.0, nx), (ny, 1))  # dark left, bright right
    image[:10, :] = 100.0  # the first FITS rows bright: at the bottom of the picture
    image[100:120, 200:240] = np.nan  # no data: white
    path = tmp_path / "p.png"
    preview.save_preview(image, path, "gradient")
    png = np.asarray(Image.open(path).convert("L")).astype(int)
    width = MARGINS["left"] + IMAGE_SIDE + BAR_GAP + BAR_WIDTH + BAR_LABELS
    assert png.shape == (MARGINS["top"] + ny + MARGINS["bottom"], width)
    picture = png[MARGINS["top"] : MARGINS["top"] + ny, MARGINS["left"] : MARGINS["left"] + nx]
    rows = picture[::-1]  # as FITS rows again
    middle = rows[60]
    assert middle[5] < 40 and middle[-5] > 215  # zscale clips the ends of a ramp
    assert np.all(np.diff(middle[::40]) >= 0)  # brighter to the right
    assert rows[:10, :50].min() > 215  # FITS rows 0-9 bright, at the bottom
    assert (rows[102:118, 202:238] == 255).all()  # NaN white
    bar = png[MARGINS["top"] : MARGINS["top"] + ny, MARGINS["left"] + nx + BAR_GAP + 5]
    assert bar[2] > 245 and bar[-3] < 10  # the bar: vmax at the top, vmin at the bottom


def test_a_colour_picture_keeps_its_colours(tmp_path):
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[:, :50, 0] = 255  # left half red
    rgb[:, 50:, 2] = 255  # right half blue
    path = tmp_path / "c.png"
    preview.image_png(rgb, path, "colour", (100, 100))
    png = np.asarray(Image.open(path).convert("RGB")).astype(int)
    top, left = MARGINS["top"], MARGINS["left"]
    assert tuple(png[top + 260, left + 100]) == (255, 0, 0)
    assert tuple(png[top + 260, left + 420]) == (0, 0, 255)


def test_a_bad_pixel_map_shows_each_bad_pixel_black(tmp_path):
    bpm = np.zeros((520, 520), np.uint8)
    bpm[20, 10] = 1  # FITS y=21, x=11 (1-based)
    path = tmp_path / "bpm.png"
    badpixels.save_preview(bpm, path, "night / bad pixels")
    png = np.asarray(Image.open(path).convert("L")).astype(int)
    top, left = MARGINS["top"], MARGINS["left"]
    assert png[top + 519 - 20, left + 10] == 0
    assert png[top + 519 - 21, left + 10] == 255 and png[top + 519 - 20, left + 11] == 255


@pytest.mark.parametrize("shape", [(1, 1), (16, 16), (1, 2000), (3000, 2), (40, 60)])
@pytest.mark.parametrize("values", ["ramp", "constant", "nan", "tiny", "huge"])
def test_any_image_gets_a_preview_its_labels_inside_the_picture(tmp_path, shape, values):
    image = {
        "ramp": np.arange(np.prod(shape), dtype=float).reshape(shape),
        "constant": np.full(shape, 0.5),
        "nan": np.full(shape, np.nan),
        "tiny": np.linspace(1e-7, 3e-7, np.prod(shape)).reshape(shape),
        "huge": np.linspace(0, 3e30, np.prod(shape)).reshape(shape),
    }[values]
    path = tmp_path / "p.png"
    preview.save_preview(image, path, "any")
    png = np.asarray(Image.open(path).convert("L"))
    assert (
        png.shape[1]
        == MARGINS["left"]
        + IMAGE_SIDE * min(1, shape[1] / shape[0]) // 1
        + (BAR_GAP + BAR_WIDTH + BAR_LABELS)
        or png.shape[1] > 0
    )
    assert (png[:, -2:] == 255).all()  # nothing written over the right edge
