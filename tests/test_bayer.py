"""Bayer patterns and demosaicing (ccdreduce.bayer), and the colour frames'
names and groups around them (science, stacking, inventory)."""

import numpy as np
import pytest
from astropy.io import fits

from ccdreduce import bayer, inventory, science, stacking
from ccdreduce.fitsfile import MASK_BAD_PIXEL


def header(**cards):
    h = fits.Header()
    for key, value in cards.items():
        h[key] = value
    return h


# --- patterns ------------------------------------------------------------------


def test_pattern_none_for_mono():
    assert bayer.pattern(header()) is None
    assert bayer.pattern(header(BAYERPAT="NONE")) is None


@pytest.mark.parametrize(
    ("xoff", "yoff", "expected"),
    [(0, 0, "RGGB"), (1, 0, "GRBG"), (0, 1, "GBRG"), (1, 1, "BGGR"), (2, 2, "RGGB")],
)
def test_pattern_offsets(xoff, yoff, expected):
    assert bayer.pattern(header(BAYERPAT="RGGB", XBAYROFF=xoff, YBAYROFF=yoff)) == expected


def test_pattern_colortyp_and_case():
    assert bayer.pattern(header(COLORTYP=" grbg ")) == "GRBG"


def test_pattern_bottom_up_rows():
    # an even number of rows stored bottom-up: array row 0 is sensor row ny-1 (odd)
    assert bayer.pattern(header(BAYERPAT="RGGB", ROWORDER="BOTTOM-UP"), (100, 80)) == "GBRG"
    assert bayer.pattern(header(BAYERPAT="RGGB", ROWORDER="BOTTOM-UP"), (101, 80)) == "RGGB"
    with pytest.raises(ValueError, match="shape"):
        bayer.pattern(header(BAYERPAT="RGGB", ROWORDER="BOTTOM-UP"))


def test_pattern_rejects_unknown():
    with pytest.raises(ValueError, match="not one of"):
        bayer.pattern(header(BAYERPAT="RGBW"))


@pytest.mark.parametrize("pattern", bayer.PATTERNS)
@pytest.mark.parametrize(("y0", "x0"), [(0, 0), (0, 1), (1, 0), (3, 5), (4, 6)])
def test_pattern_after_trim_matches_the_cut(pattern, y0, x0):
    sites = bayer.colour_masks(pattern, (12, 12))
    moved = bayer.colour_masks(bayer.pattern_after_trim(pattern, y0, x0), (8, 6))
    for channel in bayer.CHANNELS:
        assert (moved[channel] == sites[channel][y0 : y0 + 8, x0 : x0 + 6]).all()


def test_mosaic_pattern_from_trim_section():
    # [2:256,1:256]: first column 1 (0-based): GRBG moves to RGGB
    assert science.mosaic_pattern("GRBG", "[2:256,1:256]", (256, 264)) == "RGGB"
    assert science.mosaic_pattern("GRBG", "[1:256,2:256]", (256, 264)) == "BGGR"
    assert science.mosaic_pattern("GRBG", None, (256, 264)) == "GRBG"


def test_colour_masks_cover_every_pixel_once():
    sites = bayer.colour_masks("GRBG", (6, 8))
    total = sum(sites[c].astype(int) for c in bayer.CHANNELS)
    assert (total == 1).all()
    assert sites["R"][0, 1] and sites["B"][1, 0] and sites["G"][0, 0] and sites["G"][1, 1]
    assert sites["G"].sum() == 2 * sites["R"].sum() == 2 * sites["B"].sum()


# --- demosaicing ------------------------------------------------------------------


def mosaic_of(scene, pattern):
    """A mosaic sampling each pixel's own colour of ``scene`` {channel: image}."""
    sites = bayer.colour_masks(pattern, scene["R"].shape)
    out = np.zeros(scene["R"].shape, np.float32)
    for channel in bayer.CHANNELS:
        out[sites[channel]] = scene[channel][sites[channel]]
    return out


@pytest.mark.parametrize("pattern", bayer.PATTERNS)
def test_bilinear_exact_on_a_constant_scene(pattern):
    levels = {"R": 120.0, "G": 300.0, "B": 45.0}
    scene = {c: np.full((9, 11), v, np.float32) for c, v in levels.items()}
    planes = bayer.demosaic(mosaic_of(scene, pattern), pattern, "bilinear")
    for channel, level in levels.items():
        assert planes.data[channel].shape == (9, 11)
        np.testing.assert_allclose(planes.data[channel], level, rtol=1e-6)  # edges too


def test_bilinear_keeps_samples_and_is_exact_on_a_ramp():
    y, x = np.mgrid[0:10, 0:12].astype(np.float32)
    ramp = 10 + 2 * x + 3 * y
    scene = {c: ramp for c in bayer.CHANNELS}
    planes = bayer.demosaic(mosaic_of(scene, "RGGB"), "RGGB", "bilinear")
    sites = bayer.colour_masks("RGGB", ramp.shape)
    for channel in bayer.CHANNELS:
        plane = planes.data[channel]
        np.testing.assert_allclose(plane[sites[channel]], ramp[sites[channel]])
        # a linear scene is interpolated exactly away from the edges
        np.testing.assert_allclose(plane[1:-1, 1:-1], ramp[1:-1, 1:-1], rtol=1e-6)


def test_bilinear_leaves_out_masked_samples():
    scene = {c: np.full((8, 8), 100.0, np.float32) for c in bayer.CHANNELS}
    data = mosaic_of(scene, "RGGB")
    mask = np.zeros(data.shape, np.uint8)
    data[2, 2] = 60000.0  # a hot R sample
    mask[2, 2] = MASK_BAD_PIXEL
    planes = bayer.demosaic(data, "RGGB", "bilinear", mask=mask)
    # its neighbours from the other R samples; itself has none within reach
    assert np.isnan(planes.data["R"][2, 2])
    r = planes.data["R"].copy()
    r[2, 2] = 100.0
    np.testing.assert_allclose(r, 100.0)
    assert planes.mask["R"][1:4, 1:4].all() and planes.mask["R"][2, 2] == MASK_BAD_PIXEL
    assert not planes.mask["R"][5:, 5:].any()
    assert not planes.mask["G"].any()  # G never used that sample


def test_bilinear_nan_where_no_sample():
    data = np.full((4, 4), 10.0, np.float32)
    mask = np.zeros(data.shape, np.uint8)
    mask[0::2, 0::2] = MASK_BAD_PIXEL  # every R sample of RGGB
    planes = bayer.demosaic(data, "RGGB", "bilinear", mask=mask)
    assert np.isnan(planes.data["R"]).all()
    assert np.isfinite(planes.data["G"]).all()


@pytest.mark.parametrize("method", bayer.METHODS)
def test_variance_propagation_against_monte_carlo(method):
    rng = np.random.default_rng(15)
    shape = (16, 18)
    sigma = rng.uniform(2.0, 6.0, shape).astype(np.float32)
    trials = np.stack(
        [
            bayer.demosaic(
                (500 + sigma * rng.standard_normal(shape)).astype(np.float32), "GRBG", method
            ).data["G"]
            for _ in range(3000)
        ]
    )
    planes = bayer.demosaic(np.full(shape, 500, np.float32), "GRBG", method, variance=sigma**2)
    for channel in ("G",):
        predicted = planes.variance[channel]
        measured = trials.var(axis=0)
        # 3000 trials: the variance is known to ~2.6 % a pixel
        np.testing.assert_allclose(np.median(measured / predicted), 1.0, atol=0.02)
        assert np.abs(measured / predicted - 1).max() < 0.15


def test_bilinear_variance_is_lower_where_interpolated():
    planes = bayer.demosaic(
        np.full((8, 8), 100, np.float32), "RGGB", "bilinear", variance=np.full((8, 8), 4.0)
    )
    r = planes.variance["R"]
    assert r[2, 2] == pytest.approx(4.0)  # a sample
    assert r[2, 3] == pytest.approx(2.0)  # mean of 2
    assert r[3, 3] == pytest.approx(1.0)  # mean of 4


def test_superpixel_halves_and_averages():
    data = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    planes = bayer.demosaic(data, "GRBG", "superpixel", variance=np.full((6, 8), 4.0))
    assert planes.data["R"].shape == (3, 4)
    np.testing.assert_array_equal(planes.data["R"], data[0::2, 1::2])
    np.testing.assert_array_equal(planes.data["B"], data[1::2, 0::2])
    np.testing.assert_array_equal(planes.data["G"], (data[0::2, 0::2] + data[1::2, 1::2]) / 2)
    assert planes.variance["G"] == pytest.approx(np.full((3, 4), 2.0))
    assert planes.variance["R"] == pytest.approx(np.full((3, 4), 4.0))


def test_superpixel_drops_an_odd_edge_and_ors_masks():
    data = np.ones((5, 7), np.float32)
    mask = np.zeros((5, 7), np.uint8)
    mask[1, 1] = MASK_BAD_PIXEL  # the second G of cell (0, 0) in GRBG
    planes = bayer.demosaic(data, "GRBG", "superpixel", mask=mask)
    assert planes.data["G"].shape == (2, 3)
    assert planes.mask["G"][0, 0] == MASK_BAD_PIXEL and planes.mask["G"].sum() == MASK_BAD_PIXEL
    assert not planes.mask["R"].any()


def test_demosaic_rejects_unknown_method_and_pattern():
    with pytest.raises(ValueError, match="demosaic method"):
        bayer.demosaic(np.ones((4, 4)), "RGGB", "vng")
    with pytest.raises(ValueError, match="Bayer pattern"):
        bayer.demosaic(np.ones((4, 4)), "RGBG")


def test_luminance_is_the_mean():
    planes = bayer.demosaic(
        mosaic_of(
            {c: np.full((4, 4), v, np.float32) for c, v in zip("RGB", (3, 6, 9), strict=True)},
            "BGGR",
        ),
        "BGGR",
    )
    np.testing.assert_allclose(bayer.luminance(planes), 6.0)


# --- colour frames around the pixels ---------------------------------------------


def test_channel_header_drops_the_mosaic_cards():
    h = header(BAYERPAT="RGGB", XBAYROFF=0, YBAYROFF=0, FILTER="L", OBJECT="M42")
    out = science.channel_header(h, "B", "bilinear")
    assert "BAYERPAT" not in out and "XBAYROFF" not in out
    assert out["FILTER"] == "B" and out["CHANNEL"] == "B" and out["OSCFILT"] == "L"
    assert out["DEMOSAIC"] == "bilinear" and out["OBJECT"] == "M42"
    assert h["FILTER"] == "L"  # the mosaic's header untouched


def frame(stem, bayer_pattern=None, filt="L"):
    return inventory.Frame(
        night="n1",
        relpath=f"n1/{stem}.fits",
        path=f"/raw/n1/{stem}.fits",
        stem=stem,
        kind="light",
        exposure=30.0,
        filter=filt,
        object="M42",
        bayer=bayer_pattern,
    )


class Plan:
    def __init__(self, frames):
        self.lights = {(f.night, f.stem): (f, None) for f in frames}


def test_colour_frames_make_three_channel_stacks():
    frames = [frame("a", "GRBG"), frame("b", "GRBG"), frame("m", None, filt="V")]
    groups = stacking.stack_groups(Plan(frames), ["object", "filter"])
    assert sorted(groups) == ["M42/L/B", "M42/L/G", "M42/L/R", "M42/V"]
    assert [f.stem for f in groups["M42/L/R"]] == ["a", "b"]
    assert stacking.colour_groups(groups) == ["M42/L"]
    assert stacking.channel_of(frames[0], "M42/L/B") == "B"
    assert stacking.channel_of(frames[2], "M42/V") is None


def test_mono_and_colour_in_one_group_is_refused():
    from ccdreduce.errors import ConfigProblem

    frames = [frame("a", "GRBG"), frame("m", None)]
    with pytest.raises(ConfigProblem, match="colour"):
        stacking.stack_groups(Plan(frames), ["object", "filter"])


def test_a_colour_groups_pin_holds_for_its_channels():
    pins = {"M42/L": "n1/a", "M42/V/R": "n1/x"}
    assert stacking.pinned(pins, "M42/L/G", ["M42/L"]) == "n1/a"
    assert stacking.pinned(pins, "M42/V/R", ["M42/L"]) == "n1/x"
    assert stacking.pinned(pins, "M42/L/G") is None  # not a colour group: no inheritance
    assert stacking.pinned(pins, "M42/R", ["M42/L"]) is None


def test_inventory_reads_the_pattern(tmp_path):
    night = tmp_path / "raw" / "2025-05-01"
    night.mkdir(parents=True)
    for name, cards in {
        "colour.fits": {"BAYERPAT": "RGGB", "XBAYROFF": 1},
        "mono.fits": {},
        "odd.fits": {"BAYERPAT": "XYZW"},
    }.items():
        h = header(IMAGETYP="Light Frame", EXPTIME=30.0, FILTER="L", OBJECT="M42", **cards)
        fits.writeto(night / name, np.zeros((8, 10), np.uint16), h)
    from conftest import default_config

    scanned = inventory.scan_night(tmp_path / "raw", "2025-05-01", default_config())
    by_stem = {f.stem: f for f in scanned.frames}
    assert by_stem["colour"].bayer == "GRBG"
    assert by_stem["mono"].bayer is None and by_stem["mono"].usable
    assert not by_stem["odd"].usable and "BAYERPAT" in by_stem["odd"].problem


def test_channel_meta_takes_the_channels_sky():
    from ccdreduce import catalog

    meta = {"sky": 10.0, "noise": 2.0, "fwhm": 3.0, "channels": {"B": {"sky": 4.0, "noise": 1.5}}}
    assert catalog.channel_meta(meta, "B") | {"channels": None} == {
        "sky": 4.0,
        "noise": 1.5,
        "fwhm": 3.0,
        "channels": None,
    }
    assert catalog.channel_meta(meta) is meta  # a mono frame's meta as it is


def test_colour_balance_makes_stars_white():
    from ccdreduce.colourpreview import colour_balance, colour_stretch

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:96]
    stars = sum(
        f * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 4.0)
        for cx, cy, f in [(20, 30, 900.0), (60, 70, 3000.0), (75, 15, 1500.0), (40, 80, 600.0)]
    )
    gains, skies = {"R": 0.8, "G": 1.0, "B": 0.5}, {"R": 40.0, "G": 55.0, "B": 20.0}
    channels = {c: skies[c] + gains[c] * stars + rng.normal(0, 2.0, x.shape) for c in "RGB"}
    balanced, balance, noise = colour_balance(channels)
    for c in "RGB":
        assert balance[c][0] == pytest.approx(skies[c], abs=0.5)
        assert balance[c][1] == pytest.approx(gains[c], rel=0.03)
    rgb = colour_stretch(balanced, noise)
    assert rgb.shape == (96, 96, 3) and rgb.min() >= 0 and rgb.max() <= 1
    # the brightest star white: its channels alike after balance and stretch
    np.testing.assert_allclose(rgb[70, 60], rgb[70, 60].mean(), rtol=0.05)
