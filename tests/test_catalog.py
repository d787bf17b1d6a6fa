"""Star catalogues of calibrated frames: measured on a synthetic frame of
known stars, sky and noise, then written as ECSV and read back unchanged."""

import numpy as np
import pytest

from ccdreduce import catalog
from ccdreduce.fitsfile import MASK_SATURATED

SKY, NOISE, SIGMA = 100.0, 2.0, 1.5  # ADU, ADU, px (FWHM 3.53 px)
# (x, y, total flux in ADU), 0-based pixel centres, well apart and off the edges
STARS = [(30.3, 40.7, 8000.0), (90.6, 25.2, 6000.0), (60.1, 95.4, 4000.0), (100.8, 100.3, 2500.0)]


def frame(stars=STARS, shape=(128, 128), seed=3):
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape, dtype=float)
    data = SKY + rng.normal(0.0, NOISE, shape)
    for x, y, flux in stars:
        data += (
            flux
            / (2 * np.pi * SIGMA**2)
            * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * SIGMA**2))
        )
    return data.astype(np.float32)


@pytest.fixture(scope="module")
def measured():
    mask = np.zeros((128, 128), np.uint8)
    mask[41, 30] = MASK_SATURATED  # the brightest star saturated in its raw frame
    mask[100, 101] = 2  # a low flat under the faintest: not saturation
    return catalog.measure(frame(), mask, "2025-03-01/light_001", 30, detect_sigma=5.0)


def test_every_star_found_brightest_first_where_it_is(measured):
    stars, meta = measured
    assert meta["n_stars"] == len(stars["x"]) == len(STARS)
    assert np.all(np.diff(stars["flux"]) < 0)
    truth = np.array(STARS)
    assert np.abs(stars["x"] - truth[:, 0]).max() < 0.05
    assert np.abs(stars["y"] - truth[:, 1]).max() < 0.05
    # the window sum (radius 2 x the FWHM guess) holds all but a trace of the light
    np.testing.assert_allclose(stars["flux"], truth[:, 2], rtol=0.03)
    np.testing.assert_allclose(stars["peak"], truth[:, 2] / (2 * np.pi * SIGMA**2), rtol=0.1)
    assert list(stars["saturated"]) == [True, False, False, False]


def test_the_frame_summary_gives_exposure_sky_noise_and_seeing(measured):
    _, meta = measured
    assert meta["frame"] == "2025-03-01/light_001"
    assert meta["exposure"] == 30.0 and isinstance(meta["exposure"], float)
    assert meta["sky"] == pytest.approx(SKY, abs=0.1)
    assert meta["noise"] == pytest.approx(NOISE, rel=0.08)
    assert meta["fwhm"] == pytest.approx(2.3548 * SIGMA, rel=0.05)  # saturated star left out
    assert meta["shape"] == [128, 128]


def test_written_and_read_back_unchanged(measured, tmp_path):
    stars, meta = measured
    path = tmp_path / "light_001.ecsv"
    catalog.write(path, stars, meta)
    back, back_meta = catalog.read(path)
    assert set(back) == set(catalog.COLUMNS)
    for name in ("x", "y", "flux", "peak", "fwhm"):
        np.testing.assert_array_equal(back[name], stars[name])
    assert back["saturated"].dtype == bool and list(back["saturated"]) == list(stars["saturated"])
    assert {k: back_meta[k] for k in meta} == meta
    assert "brightest first" in " ".join(back_meta["comments"])


def test_a_frame_without_stars_gives_an_empty_catalogue(tmp_path):
    stars, meta = catalog.measure(frame(stars=[]), None, "n/blank", 10.0, detect_sigma=5.0)
    assert meta["n_stars"] == 0 and np.isnan(meta["fwhm"])
    assert meta["sky"] == pytest.approx(SKY, abs=0.1)
    catalog.write(tmp_path / "blank.ecsv", stars, meta)
    back, _ = catalog.read(tmp_path / "blank.ecsv")
    assert all(len(back[name]) == 0 for name in catalog.COLUMNS)


def read_by_astropy(path):
    """A catalogue as astropy's ECSV reader gives it."""
    from astropy.table import Table

    table = Table.read(path, format="ascii.ecsv")
    stars = {name: np.asarray(table[name]) for name in catalog.COLUMNS}
    stars["saturated"] = stars["saturated"].astype(bool)
    return stars, dict(table.meta)


def test_catalogues_are_read_back_as_astropys_ecsv_reader_reads_them(measured, tmp_path):
    stars, meta = measured
    colour = meta | {"channels": {c: {"sky": 10.5 * i, "noise": 2.25} for i, c in enumerate("RGB")}}
    blank = {name: np.array([], dtype=bool if name == "saturated" else float) for name in stars}
    odd = dict(stars) | {"flux": np.where(np.arange(len(stars["x"])) % 2, np.nan, 1e300)}
    written = {
        "mono": (stars, meta),
        "colour": (stars, colour),
        "no stars": (blank, meta | {"fwhm": float("nan"), "n_stars": 0}),
        "nan and huge": (odd, meta | {"note": "it's: a [note], {with} # marks"}),
    }
    for name, (values, extra) in written.items():
        path = tmp_path / f"{name.replace(' ', '_')}.ecsv"
        catalog.write(path, values, extra)
        direct, expected = catalog._read_plain(path), read_by_astropy(path)
        assert list(direct[1].items()) == list(expected[1].items()) or (
            name == "no stars" and str(direct[1]) == str(expected[1])  # NaN != NaN
        )
        for column in catalog.COLUMNS:
            np.testing.assert_array_equal(direct[0][column], expected[0][column])
            assert direct[0][column].dtype == expected[0][column].dtype
    # not as write() makes it: astropy reads it
    edited = tmp_path / "edited.ecsv"
    edited.write_text(
        (tmp_path / "mono.ecsv").read_text().replace("datatype: bool", "datatype: int64")
    )
    with pytest.raises(catalog._NotPlain):
        catalog._read_plain(edited)
    tagged = tmp_path / "tagged.ecsv"  # a tag the safe loader does not know
    catalog.write(tagged, stars, meta | {"pair": (1, 2)})
    with pytest.raises(catalog._NotPlain):
        catalog._read_plain(tagged)
    assert catalog.read(tagged)[1]["pair"] == read_by_astropy(tagged)[1]["pair"]
