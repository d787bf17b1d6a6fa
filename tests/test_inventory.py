"""The inventory: finding nights and frames, reading headers once, and
turning bad files into excluded rows with a reason that names the fix."""

import os
import shutil

import pytest
from astropy.io import fits
from conftest import default_config
from helpers import write_night, write_raw

from ccdreduce import inventory
from ccdreduce.errors import ConfigProblem

CONFIG = default_config(raw_dir="x")


def scan(raw, config=CONFIG, cache=None):
    return inventory.scan(raw, config, cache)


def by_name(night):
    return {f.relpath.split("/")[-1]: f for f in night.frames}


def test_frames_anywhere_below_a_night_with_every_fits_suffix(tmp_path):
    night = tmp_path / "2025-03-01"
    write_raw(night / "a" / "b" / "bias1.fits", "Bias Frame", 0.0)
    write_raw(night / "bias2.fit", "BIAS", 0.0)
    write_raw(night / "bias3.FTS", "zero", 0.0)
    write_raw(night / "dark.fits.fz", "DARK", 30.0, compress=True)
    gz = write_raw(tmp_path / "tmp.fits", "Dark Frame", 30.0)
    import gzip

    (night / "dark2.fits.gz").write_bytes(gzip.compress(gz.read_bytes()))
    gz.unlink()
    (night / "notes.txt").write_text("seeing 2 arcsec")
    (night / ".DS_Store").write_bytes(b"\0")
    nights = scan(tmp_path)
    frames = by_name(nights["2025-03-01"])
    assert set(frames) == {"bias1.fits", "bias2.fit", "bias3.FTS", "dark.fits.fz", "dark2.fits.gz"}
    assert all(f.usable for f in frames.values()), [f.problem for f in frames.values()]
    assert frames["dark.fits.fz"].kind == "dark" and frames["dark.fits.fz"].shape == (40, 48)
    assert frames["dark2.fits.gz"].stem == "dark2"
    assert nights["2025-03-01"].ignored == [
        ("2025-03-01/notes.txt", "not a FITS file name (.fits, .fit, .fts, .gz, .fz)")
    ]


def test_bad_files_are_excluded_with_problem_and_fix(tmp_path):
    night = tmp_path / "2025-03-01"
    good = write_raw(night / "good.fits", "Light Frame", 30.0, filt="R")
    (night / "empty.fits").write_bytes(b"")
    (night / "text.fits").write_text("this is not a FITS file\n" * 200)
    truncated = night / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:4000])
    write_raw(night / "zwo.fits", "Light Frame", "6,4E-05", filt="R")
    write_raw(night / "noexp.fits", "Dark Frame", None)
    write_raw(night / "focus.fits", "Focus", 1.0)
    frames = by_name(scan(tmp_path)["2025-03-01"])
    assert frames["good.fits"].usable
    expected = {
        "empty.fits": "empty (0 bytes)",
        "text.fits": "not a readable FITS file",
        "truncated.fits": "truncated (4000 bytes",
        "zwo.fits": "EXPTIME = '6,4E-05' is not a usable exposure time",
        "noexp.fits": "no exposure time",
        "focus.fits": "unknown frame type IMAGETYP = 'Focus'",
    }
    for name, problem in expected.items():
        assert problem in (frames[name].problem or ""), (name, frames[name].problem)
        assert "Fix:" in frames[name].problem


def test_overrides_and_excludes_never_touch_the_raw_file(tmp_path):
    zwo = write_raw(tmp_path / "n1" / "zwo.fits", "Light Frame", "6,4E-05", filt="R")
    write_raw(tmp_path / "n1" / "junk.fits", "Light Frame", 1.0, filt="R")
    before = zwo.read_bytes()
    config = default_config(
        raw_dir="x",
        header_overrides={"n1/zwo*": {"EXPTIME": 6.4e-05, "OBJECT": "M 1"}},
        exclude=["n1/junk.fits"],
    )
    frames = by_name(scan(tmp_path, config)["n1"])
    assert frames["zwo.fits"].usable and frames["zwo.fits"].exposure == 6.4e-05
    assert frames["zwo.fits"].object == "M 1"
    assert frames["zwo.fits"].overrides == {"EXPTIME": 6.4e-05, "OBJECT": "M 1"}
    assert "excluded by the configuration" in frames["junk.fits"].problem
    assert zwo.read_bytes() == before


def test_two_files_with_one_stem_cannot_both_be_calibrated(tmp_path):
    write_raw(tmp_path / "n1" / "a" / "m1.fits", "Light Frame", 1.0, filt="R")
    write_raw(tmp_path / "n1" / "b" / "m1.fit", "Light Frame", 1.0, filt="R")
    frames = scan(tmp_path)["n1"].frames
    assert [f.usable for f in frames] == [True, False]
    assert "same name stem as n1/a/m1.fits" in frames[1].problem


def test_header_cache_skips_unchanged_files_and_rereads_changed_ones(tmp_path, monkeypatch):
    write_night(tmp_path / "raw", "2025-03-01", "2025-03-01T20:00:00")
    cache = tmp_path / "cache"
    first = scan(tmp_path / "raw", cache=cache)
    assert (cache / "2025-03-01.json").exists()

    reads = []
    original = inventory.read_header_fields
    monkeypatch.setattr(
        inventory, "read_header_fields", lambda p, w: reads.append(p) or original(p, w)
    )
    second = scan(tmp_path / "raw", cache=cache)
    assert reads == []
    assert [f.kind for f in second["2025-03-01"].frames] == [
        f.kind for f in first["2025-03-01"].frames
    ]
    # a replaced frame (new size and mtime) is read again, and only it
    changed = tmp_path / "raw" / "2025-03-01" / "bias_0.fits"
    os.remove(changed)
    write_raw(changed, "Dark Frame", 5.0, shape=(40, 48))
    third = scan(tmp_path / "raw", cache=cache)
    assert [os.path.basename(p) for p in reads] == ["bias_0.fits"]
    assert by_name(third["2025-03-01"])["bias_0.fits"].kind == "dark"


def test_night_dates_come_from_date_obs(tmp_path):
    write_raw(tmp_path / "first" / "a.fits", "Bias Frame", 0.0, date="2025-03-01T23:00:00")
    write_raw(tmp_path / "first" / "b.fits", "Bias Frame", 0.0, date="2025-03-02T01:00:00")
    night = scan(tmp_path)["first"]
    assert night.date.isoformat().startswith("2025-03-01T23:00")


def test_raw_dir_problems_are_explained(tmp_path):
    with pytest.raises(ConfigProblem, match="is not a folder"):
        scan(tmp_path / "missing")
    with pytest.raises(ConfigProblem, match="has no night folders"):
        scan(tmp_path)
    (tmp_path / "night one").mkdir()
    with pytest.raises(ConfigProblem, match="night_one"):
        scan(tmp_path)


def test_cube_is_refused(tmp_path):
    import numpy as np

    path = tmp_path / "n" / "cube.fits"
    path.parent.mkdir()
    fits.PrimaryHDU(np.zeros((3, 10, 10), np.uint16)).writeto(path)
    frame = scan(tmp_path)["n"].frames[0]
    assert "more than 2 axes" in frame.problem


def test_a_light_with_exptime_0_is_excluded_with_the_fix(tmp_path):
    write_raw(tmp_path / "raw" / "n1" / "light.fits", "Light Frame", 0.0, filt="R")
    write_raw(tmp_path / "raw" / "n1" / "bias.fits", "Bias Frame", 0.0)
    frames = {f.stem: f for f in scan(tmp_path / "raw")["n1"].frames}
    assert frames["bias"].usable  # a bias has no exposure, rightly
    assert frames["light"].problem.startswith("science frame with EXPTIME = 0 s")
    assert "{'n1/light.fits': {EXPTIME: 30}}" in frames["light"].problem


def test_a_byte_identical_copy_is_used_once_and_a_lookalike_is_not_a_copy(tmp_path):
    raw = tmp_path / "raw"
    write_night(raw, "n1", "2025-03-01T20:00:00")
    write_night(raw, "n2", "2025-03-02T20:00:00")
    original = raw / "n1" / "light_R_30s_0.fits"
    (raw / "n1" / "sub").mkdir()
    shutil.copy2(original, raw / "n1" / "sub" / "again.fits")  # another name
    shutil.copy2(original, raw / "n2" / "from_n1.fits")  # another night
    lookalike = raw / "n1" / "lookalike.fits"  # same size and header, one pixel differs
    with fits.open(original) as hdul:
        data = hdul[0].data.copy()
        data[20, 24] += 1
        fits.PrimaryHDU(data, hdul[0].header).writeto(lookalike)
    nights = scan(raw)
    frames = {f.relpath: f for night in nights.values() for f in night.frames}
    assert frames["n1/light_R_30s_0.fits"].usable and frames["n1/lookalike.fits"].usable
    for copy in ("n1/sub/again.fits", "n2/from_n1.fits"):
        assert frames[copy].problem.startswith(
            "byte-identical copy of n1/light_R_30s_0.fits, which is used"
        )
    assert sum(not f.usable for f in frames.values()) == 2


def write_utf8_card(path, keyword, text):
    """Put a UTF-8 value into a raw file's card, bytes as some cameras write."""
    raw = path.read_bytes()
    placeholder = f"{keyword:8s}= 'PLACEHOLDER'".encode()
    assert placeholder in raw
    value = f"'{text}'".encode()
    path.write_bytes(raw.replace(placeholder, f"{keyword:8s}= ".encode() + value.ljust(13)))


def test_non_ascii_filters_are_read_from_their_bytes_and_stay_apart(tmp_path):
    raw = tmp_path / "raw"
    for name in ("flat_a", "light_a", "flat_b", "light_b"):
        kind = "Flat Field" if name.startswith("flat") else "Light Frame"
        path = write_raw(raw / "n1" / f"{name}.fits", kind, 2.0, filt="PLACEHOLDER")
        write_utf8_card(path, "FILTER", "Hα" if name.endswith("a") else "Hβ")
    frames = by_name(scan(raw)["n1"])
    assert frames["flat_a.fits"].filter == "Hα" and frames["light_b.fits"].filter == "Hβ"
    assert frames["flat_a.fits"].filter_key == frames["light_a.fits"].filter_key
    assert frames["flat_a.fits"].filter_key != frames["flat_b.fits"].filter_key
    assert any("FILTER 'Hα' is named" in said for said in inventory.renamed(scan(raw)))


def test_objects_that_would_merge_or_are_too_long_get_their_own_stack(tmp_path):
    from ccdreduce import policy, stacking

    raw = tmp_path / "raw"
    write_night(raw, "n1", "2025-03-01T20:00:00", lights=())
    objects = {"l1": "a/b", "l2": "a b", "l3": "../../etc", "l4": "etc", "l5": "M" * 300}
    for stem, name in objects.items():
        write_raw(raw / "n1" / f"{stem}.fits", "Light Frame", 30.0, filt="R", OBJECT=name)
    plan = policy.make_plan(scan(raw))
    groups = stacking.stack_groups(plan, ["object", "filter"])
    assert len(groups) == len(objects)  # five objects, five stacks
    members = {g: {f.object for f in frames} for g, frames in groups.items()}
    assert all(len(values) == 1 for values in members.values())
    assert "etc/R" in groups and all(len(g.split("/")[0]) <= 64 for g in groups)


def test_filter_aliases_apply_before_names_and_are_remembered(tmp_path):
    write_raw(tmp_path / "n1" / "a.fits", "Light Frame", 30.0, filt="Johnson V", OBJECT="M 67")
    write_raw(tmp_path / "n1" / "b.fits", "Light Frame", 30.0, filt="v", OBJECT="M 67")
    write_raw(tmp_path / "n1" / "c.fits", "Flat Field", 2.0, filt="V")
    config = default_config(raw_dir="x", filters={"aliases": {"Johnson V": "V", "v": "V"}})
    frames = by_name(scan(tmp_path, config)["n1"])
    assert {f.filter_key for f in frames.values()} == {"V"}  # one flat, one stack
    assert frames["a.fits"].filter_spelling == "Johnson V"
    assert frames["b.fits"].filter_spelling == "v"
    assert frames["c.fits"].filter_spelling is None
    # without aliases the three spellings stay apart (V and v by a digest)
    assert len({f.filter_key for f in by_name(scan(tmp_path)["n1"]).values()}) == 3


def test_exposure_groups_are_archive_wide_and_keep_the_true_exposure(tmp_path):
    write_raw(tmp_path / "n1" / "dark.fits", "Dark Frame", 300.0)
    write_raw(tmp_path / "n2" / "light.fits", "Light Frame", 300.1, filt="R")
    nights = scan(tmp_path)
    light = by_name(nights["n2"])["light.fits"]
    assert (light.exposure, light.exposure_group, light.exposure_key) == (300.1, 300.0, "300")


def test_camera_values_and_set_point_are_read_and_cached(tmp_path, monkeypatch):
    write_raw(
        tmp_path / "n1" / "a.fits",
        "Light Frame",
        30.0,
        filt="R",
        INSTRUME="ZWO ASI294MC Pro",
        GAIN=120,
        OFFSET=30,
        **{"CCD-TEMP": -9.8},
    )
    write_raw(tmp_path / "n1" / "b.fits", "DARKFLAT", 2.0)
    cache = tmp_path / "cache"
    frame = by_name(scan(tmp_path, cache=cache)["n1"])["a.fits"]
    assert frame.camera == ("zwo asi294mc pro", "", "", "120", "30", "")
    assert frame.temperature == -9.8
    assert frame.describe_camera() == "GAIN '120', OFFSET '30'"
    assert by_name(scan(tmp_path)["n1"])["b.fits"].kind == "dark"  # a flat-dark
    # the cache holds the camera keys: a second scan reads no header
    monkeypatch.setattr(inventory, "read_header_fields", lambda *a: pytest.fail("re-read"))
    assert by_name(scan(tmp_path, cache=cache)["n1"])["a.fits"].camera == frame.camera
    assert inventory.CACHE_VERSION == 6
