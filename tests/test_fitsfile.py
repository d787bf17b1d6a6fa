"""Reading raw pixels in every storage form, and writing products atomically."""

import gzip
import mmap

import numpy as np
import pytest
from astropy.io import fits

from ccdreduce.errors import FrameProblem
from ccdreduce.fitsfile import read_image, read_product, write_image

RNG = np.random.default_rng(7)
UINT16 = RNG.integers(0, 65536, (20, 30)).astype(np.uint16)


def plain(path, data, **cards):
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda p: plain(p / "u16.fits", UINT16),  # BZERO 32768
        lambda p: plain(p / "i16.fits", UINT16.astype(np.int16)),
        lambda p: plain(p / "f32.fits", UINT16.astype(np.float32) / 3),
        lambda p: plain(p / "i32.fits", UINT16.astype(np.int32) - 1000),
        lambda p: (
            fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(UINT16)]).writeto(p / "rice.fits.fz")
            or p / "rice.fits.fz"
        ),
        lambda p: (
            (p / "g.fits.gz").write_bytes(gzip.compress((plain(p / "g.fits", UINT16)).read_bytes()))
            and p / "g.fits.gz"
        ),
    ],
    ids=["uint16-bzero", "int16", "float32", "int32", "tile-compressed", "gzip"],
)
def test_pixels_equal_astropys_scaled_values_in_every_storage_form(tmp_path, make):
    path = make(tmp_path)
    data, header = read_image(path)
    with fits.open(path) as hdul:
        expected = next(h.data for h in hdul if h.data is not None).astype(np.float32)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, expected)


def test_bscale_is_applied(tmp_path):
    hdu = fits.PrimaryHDU(UINT16.astype(np.int16))
    hdu.scale("int16", bscale=0.5, bzero=10.0)
    hdu.writeto(tmp_path / "scaled.fits")
    data, _ = read_image(tmp_path / "scaled.fits")
    np.testing.assert_allclose(data, fits.getdata(tmp_path / "scaled.fits"), rtol=1e-6)


def test_unreadable_pixels_name_the_file(tmp_path):
    path = plain(tmp_path / "cut.fits", UINT16)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(FrameProblem, match="cut.fits: cannot read its pixels"):
        read_image(path)


def test_products_are_written_atomically_with_their_extensions(tmp_path):
    out = tmp_path / "sub" / "product.fits"
    header = fits.Header({"BZERO": 32768, "OBJECT": "M 67"})
    write_image(
        out,
        np.ones((4, 5)),
        header,
        mask=np.zeros((4, 5), np.uint8),
        extensions={"COVERAGE": np.full((4, 5), 3, np.int16)},
    )
    data, header, mask = read_product(out)
    assert data.dtype == np.dtype(">f4") and "BZERO" not in header and header["OBJECT"] == "M 67"
    assert mask.shape == (4, 5)
    assert fits.getdata(out, "COVERAGE")[0, 0] == 3
    assert [p.name for p in out.parent.iterdir()] == ["product.fits"]  # no temporary left


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32, np.float64, np.int32])
def test_fast_reader_reads_bands_as_astropy_scales_them(tmp_path, dtype):
    from ccdreduce import fastfits

    data = UINT16 if dtype == np.uint16 else UINT16.astype(dtype)
    path = plain(tmp_path / "frame.fits", data, OBJECT="M 67")
    image = fastfits.ImageFile(path)
    band = np.empty(5 * 30, dtype=np.float32)
    image.rows_into(7, 12, band, scale=2.0)
    image.close()
    expected = fits.getdata(path)[7:12].astype(np.float64) * 2.0
    np.testing.assert_allclose(band.reshape(5, 30), expected, rtol=1e-7)


def test_fast_reader_refuses_what_it_cannot_read_and_its_writer_is_valid_fits(tmp_path):
    from ccdreduce import fastfits

    compressed = tmp_path / "c.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(UINT16)]).writeto(compressed)
    with pytest.raises(fastfits.NotSimple):
        fastfits.ImageFile(compressed)
    out = tmp_path / "out.fits"
    fastfits.write_image(out, UINT16.astype(np.float32), [("NCOMBINE", 13), ("COMBMETH", "median")])
    with fits.open(out) as hdul:
        hdul.verify("exception")
        np.testing.assert_array_equal(hdul[0].data, UINT16.astype(np.float32))
        assert hdul[0].header["NCOMBINE"] == 13 and hdul[0].header["COMBMETH"] == "median"


def test_band_readers_give_astropys_scaled_rows_whatever_the_storage(tmp_path):
    from ccdreduce import fastfits
    from ccdreduce.fitsfile import open_bands

    simple = plain(tmp_path / "u16.fits", UINT16)
    compressed = tmp_path / "rice.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(UINT16)]).writeto(compressed)
    for path, reader in ((simple, fastfits.ImageFile), (compressed, None)):
        bands = open_bands(path)
        try:
            assert bands.shape == UINT16.shape
            assert reader is None or isinstance(bands, reader)
            out = np.empty(5 * 30, np.float32)
            bands.rows_into(7, 12, out, scale=0.5)
            np.testing.assert_array_equal(out.reshape(5, 30), UINT16[7:12] * np.float32(0.5))
        finally:
            bands.close()


def test_masters_are_memory_mapped_and_equal_to_what_was_written(tmp_path):
    from ccdreduce.fitsfile import map_pixels

    write_image(tmp_path / "bias.fits", UINT16.astype(np.float32), fits.Header())
    pixels = map_pixels(tmp_path / "bias.fits")
    base = pixels
    while getattr(base, "base", None) is not None and not isinstance(base, mmap.mmap):
        base = base.base
    assert isinstance(base, mmap.mmap)  # pages of the file, not a copy
    np.testing.assert_array_equal(pixels, UINT16.astype(np.float32))


def test_image_fields_of_the_first_2d_image_or_the_problem_with_the_fix(tmp_path):
    import os

    from ccdreduce.fitsfile import image_fields

    def fields(path, wanted=("EXPTIME", "FILTER")):
        return image_fields(str(path), os.path.getsize(path), wanted, fix="FIX")

    compressed = tmp_path / "rice.fits.fz"
    header = fits.Header({"EXPTIME": 30.0, "FILTER": "R"})
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(UINT16, header=header)]).writeto(compressed)
    assert fields(compressed) == {"EXPTIME": 30.0, "FILTER": "R", "_hdu": 1, "_shape": [20, 30]}
    greek = plain(tmp_path / "greek.fits", UINT16, FILTER="Ha")
    # a camera's UTF-8 alpha, which astropy reads as 'H??'
    greek.write_bytes(greek.read_bytes().replace(b"'Ha      '", "'Hα     '".encode()))
    assert fields(greek)["FILTER"] == "Hα"
    truncated = plain(tmp_path / "short.fits", UINT16)
    truncated.write_bytes(truncated.read_bytes()[:4000])
    assert fields(truncated)["_problem"].startswith("file is truncated")
    assert fields(truncated)["_problem"].endswith("Fix: FIX")
    cube = plain(tmp_path / "cube.fits", np.zeros((3, 10, 10), np.uint16))
    assert "more than 2 axes" in fields(cube)["_problem"]
    text = tmp_path / "notes.fits"
    text.write_text("not FITS at all\n" * 200)
    assert fields(text)["_problem"].startswith("not a readable FITS file")


def test_each_kind_of_product_gets_its_unit_from_one_table():
    from ccdreduce.fitsfile import set_unit

    raw = fits.Header()
    raw["BUNIT"] = ("ADU", "as the camera wrote it")
    for kind in ("bias", "dark"):  # counts: the value set, the camera's comment kept
        header = raw.copy()
        set_unit(header, kind)
        assert header["BUNIT"] == "adu" and header.comments["BUNIT"] == "as the camera wrote it"
    flat = raw.copy()
    set_unit(flat, "flat")  # a ratio, which CCDData.read must still accept
    assert flat["BUNIT"] == "adu/adu"
    for kind, says in (("calibrated", "flat-fielded"), ("stack", "scaled to the reference")):
        header = fits.Header()
        set_unit(header, kind)
        assert header["BUNIT"] == "adu" and says in header.comments["BUNIT"]
    with pytest.raises(ValueError, match="no unit known for a 'preview'"):
        set_unit(fits.Header(), "preview")


def test_a_product_opens_with_ccddata_with_unit_mask_bits_and_uncertainty(tmp_path):
    from astropy.nddata import CCDData, StdDevUncertainty

    from ccdreduce.fitsfile import (
        MASK_BITS,
        MASK_NO_DATA,
        read_uncertainty,
        set_unit,
        write_image,
    )

    data = np.arange(30, dtype=np.float32).reshape(5, 6)
    mask = np.zeros(data.shape, np.uint8)
    mask[2, 3] = MASK_NO_DATA
    for kind in ("flat", "calibrated"):
        header = fits.Header()
        set_unit(header, kind)
        out = tmp_path / f"{kind}.fits"
        write_image(out, data, header, mask=mask, uncertainty=np.sqrt(data + 1))
        ccd = CCDData.read(out)
        assert isinstance(ccd.uncertainty, StdDevUncertainty)
        np.testing.assert_allclose(ccd.uncertainty.array, np.sqrt(data + 1), rtol=1e-6)
        assert ccd.mask.sum() == 1 and ccd.mask[2, 3]
        assert ccd.unit.to_string() == ("" if kind == "flat" else "adu")
        np.testing.assert_allclose(read_uncertainty(out), np.sqrt(data + 1), rtol=1e-6)
        mask_header = fits.getheader(out, "MASK")
        assert [mask_header[f"BIT{bit}"] for bit in MASK_BITS] == list(MASK_BITS.values())
    header = fits.Header()
    write_image(tmp_path / "plain.fits", data, header)
    assert read_uncertainty(tmp_path / "plain.fits") is None


#: Value fields in the forms cameras write them, and forms that are not plain.
PLAIN_VALUES = [
    "'R       '",
    "'  lead'",
    "'it''s'",
    "''",
    "'    '",
    "'a/b' / slash inside",
    "'x'/no space",
    "2025-03-01",  # unquoted: not a FITS value
    "T",
    "                   F / comment",
    "+5",
    "-0",
    "007",
    "123456789012345678901",
    "60/comment",
    "5.",
    ".5",
    "-1.5E-03",
    "1E3",
    "-.5E2",
    "30.000000000000004 / exposure",
    "1.5e3",  # lower-case exponent
    "2.5D2",  # Fortran exponent
    "(1.0, 2.0)",  # complex
    "",  # undefined
    "'what?'",
]


@pytest.mark.parametrize("value", PLAIN_VALUES)
def test_headers_read_without_astropy_give_astropys_values(tmp_path, value):
    import os

    from ccdreduce import fastfits
    from ccdreduce.fitsfile import image_fields

    cards = ["SIMPLE  =                    T", "BITPIX  =                   16"]
    cards += ["NAXIS   =                    2", "NAXIS1  =                   30"]
    cards += ["NAXIS2  =                   20", f"VALUE   = {value}", "COMMENT a note", "END"]
    path = tmp_path / "camera.fits"
    header = "".join(card.ljust(80) for card in cards)
    path.write_bytes((header + " " * (-len(header) % 2880)).encode() + UINT16.byteswap().tobytes())
    wanted = ["VALUE", "NAXIS1", "ABSENT"]
    got = image_fields(str(path), os.path.getsize(path), wanted, fix="FIX")
    with fits.open(path) as hdul:
        try:
            expected = {k: hdul[0].header[k] for k in ("VALUE", "NAXIS1") if k in hdul[0].header}
        except fits.VerifyError:  # a value astropy cannot read: the file is left out
            assert got["_problem"].startswith("not a readable FITS file")
            with pytest.raises(fastfits.NotSimple):
                fastfits.header_fields(str(path), wanted)
            return
    assert {k: got[k] for k in expected} == expected  # with or without astropy
    assert [type(got[k]) for k in expected] == [type(v) for v in expected.values()]
    assert got["_shape"] == [20, 30] and got["_hdu"] == 0 and "ABSENT" not in got
    try:
        fields, needed = fastfits.header_fields(str(path), wanted)
    except fastfits.NotSimple:  # astropy read it
        assert value in ("2025-03-01", "1.5e3", "2.5D2", "(1.0, 2.0)", "", "'what?'")
    else:
        assert fields == got and needed == 2880 + 20 * 30 * 2 == os.path.getsize(path)


def test_headers_not_plain_are_left_to_astropy(tmp_path):
    from ccdreduce import fastfits

    def header_of(*cards, end="END"):
        path = tmp_path / "odd.fits"
        head = ["SIMPLE  =                    T", "BITPIX  =                   16"]
        head += ["NAXIS   =                    2", "NAXIS1  =                   30"]
        text = "".join(c.ljust(80) for c in [*head, "NAXIS2  =                   20", *cards, end])
        path.write_bytes((text + " " * (-len(text) % 2880)).encode("latin-1") + bytes(1200))
        return str(path)

    for odd in (
        header_of("FILTER  = 'first'", "FILTER  = 'second'"),  # given twice
        header_of("OBJECT  = 'a long &'", "CONTINUE  'name'"),  # a long string
        header_of("HIERARCH ESO DET DIT = 1.0"),
        header_of("FILTER  = 'H\xe1'"),  # not ASCII
        header_of("filter  = 'R'"),  # lower-case keyword
        header_of("FILTER  = 'R'", end="END     junk"),
    ):
        with pytest.raises(fastfits.NotSimple):
            fastfits.header_fields(odd, ["FILTER", "OBJECT"])
    fields, _ = fastfits.header_fields(header_of("FILTER  = 'R'"), ["FILTER"])
    assert fields["FILTER"] == "R"
    # a long string of another keyword (as the products' provenance) is not in the way
    other = header_of("NOTES   = 'a long &'", "CONTINUE  'tail'", "FILTER  = 'V'")
    assert (
        fastfits.header_fields(other, ["FILTER"])[0]["FILTER"]
        == "V"
        == fits.getval(other, "FILTER")
    )
    with pytest.raises(fastfits.NotSimple):  # commentary, whatever follows its name
        fastfits.header_fields(header_of("COMMENT = 'a note'"), ["COMMENT"])


def test_image_fields_are_the_same_read_with_or_without_astropy(tmp_path, monkeypatch):
    import os

    from ccdreduce import fastfits
    from ccdreduce.fitsfile import image_fields

    header = fits.Header({"EXPOSURE": 30.0, "FILTER": "R", "DATE-OBS": "2025-03-03T01:04:05"})
    header["XBINNING"], header["OBJCTRA"] = 1, "07 18 48.0"
    files = {"plain": plain(tmp_path / "plain.fits", UINT16, **header)}
    files["rice"] = tmp_path / "rice.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(UINT16, header=header)]).writeto(
        files["rice"]
    )
    with fits.open(files["rice"]) as hdul:
        rice_data_at = hdul[1].fileinfo()["datLoc"]
    # cut short: in the data (the plain image's 1200 bytes, the table's), and in the header
    for name, cut in (("plain", 2880 + 600), ("rice", rice_data_at), ("rice", 4000)):
        short = tmp_path / f"{name}-{cut}{files[name].suffix}"
        short.write_bytes(files[name].read_bytes()[:cut])
        files[f"{name} cut at {cut}"] = short
    packed = gzip.compress(files["plain"].read_bytes())
    for name, data in (("gzip", packed), ("gzip cut", packed[: len(packed) // 2])):
        files[name] = tmp_path / f"{name.replace(' ', '-')}.fits.gz"
        files[name].write_bytes(data)
    wanted = ["EXPOSURE", "FILTER", "DATE-OBS", "XBINNING", "OBJCTRA", "NAXIS1", "NAXIS2"]

    def fields():
        return {
            n: image_fields(str(p), os.path.getsize(p), wanted, "FIX") for n, p in files.items()
        }

    without = fields()
    assert fastfits.header_fields(str(files["rice"]), wanted)[0] == without["rice"]
    assert without["rice"]["_hdu"] == 1 and without["rice"]["NAXIS1"] == 30
    assert without["plain cut at 3480"]["_problem"].startswith("file is truncated")
    assert without[f"rice cut at {rice_data_at}"]["_problem"].startswith("file is truncated")
    assert "_problem" in without["rice cut at 4000"]
    assert without["gzip"] == without["plain"] and "_problem" in without["gzip cut"]
    assert fastfits.header_fields(str(files["gzip"]), wanted) == (without["plain"], 0)
    with pytest.raises(fastfits.NotSimple):  # a broken stream: astropy says what is wrong
        fastfits.header_fields(str(files["gzip cut"]), wanted)

    def refuse(path, wanted):
        raise fastfits.NotSimple("astropy, please")

    monkeypatch.setattr(fastfits, "header_fields", refuse)
    assert fields() == without
    # a reserved keyword of the compressed table is the image's only through astropy
    with pytest.raises(fastfits.NotSimple):
        monkeypatch.undo()
        fastfits.header_fields(str(files["rice"]), ["BZERO"])
