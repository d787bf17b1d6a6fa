"""Two cameras in one night (issue 15): the workflow run once on
simulate.matching_nights() (a 128x128 CCD at -20 C and a 112x96 CMOS with
another bias level, each with its own biases, darks and flats), then the
calibrated frames' headers read: each frame was calibrated with its own
camera's masters, the 300.1 s lights took the 300 s dark as their
exposure, the darks of another set point were passed over and said so, and
'Johnson V' lights met the V flats through filters.aliases."""

import json

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table
from conftest import run_snakemake

from ccdreduce import layout, simulate

NIGHT = simulate.MATCHING_NIGHT
#: where each camera's masters are: the main camera (most frames) keeps the
#: plain names, the CMOS gets a sub-folder named for its INSTRUME
FOLDER = {"Simulated CCD": f"calib/{NIGHT}/", "Simulated CMOS": f"calib/{NIGHT}/simulated_cmos/"}


@pytest.fixture(scope="module")
def matched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cameras")
    simulate.simulate_matching(folder)
    results = folder / "results"
    settings = folder / "cameras.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "raw_dir": str(folder / "raw"),
                "results_dir": str(results),
                "trim_section": None,  # two frame sizes, no overscan
                "filters": {"aliases": {"Johnson V": "V"}},
            }
        )
    )
    run_snakemake("calibration", "--configfile", settings)
    truth = json.loads((folder / "truth" / "truth.json").read_text())
    lights = {}
    for record in truth["frames"]:
        if record["kind"] == "light":
            path = layout.calibrated(results, NIGHT, record["stem"])
            lights[record["stem"]] = (record, fits.getheader(path), fits.getdata(path))
    table = Table.read(layout.calib(results, NIGHT, "frames.ecsv"), format="ascii.ecsv")
    return {"results": results, "truth": truth, "lights": lights, "table": table}


def test_each_frame_is_calibrated_with_its_own_cameras_masters(matched):
    assert len(matched["lights"]) == 8
    for stem, (record, header, data) in matched["lights"].items():
        assert header["INSTRUME"] == record["instrument"]
        folder = FOLDER[record["instrument"]]
        for card in ("BIASFILE", "DARKFILE", "FLATFILE"):
            name = header[card]
            assert name.startswith(folder) and "/" not in name[len(folder) :], (stem, card)
        # the pixels agree: the CMOS bias is 500 ADU below the CCD's, so a
        # frame given the other camera's bias would be 500 ADU off its sky
        sky = record["sky_adu"]
        assert abs(np.nanmedian(data) - sky) < 0.1 * sky + 10, (stem, np.nanmedian(data), sky)
    results = matched["results"]
    for name in ("bias", "dark_300s", "flat_R", "simulated_cmos/bias", "simulated_cmos/flat_V"):
        assert (results / "calib" / NIGHT / f"{name}.fits").exists(), name


def test_a_300_1_s_light_takes_the_300_s_dark_as_its_exposure(matched):
    for record, header, _ in matched["lights"].values():
        if record["exposure"] != 300.1:
            continue
        assert header["DARKFILE"] == f"calib/{NIGHT}/dark_300s.fits"
        assert header["DARKSCAL"] == pytest.approx(300.1 / 300.0, rel=1e-6)
        assert "dark 300 s: own night, exposure matches (300.1 s" in header["CALPOL"]
        assert header["EXPTIME"] == 300.1  # the true exposure is kept


def test_darks_of_another_set_point_are_passed_over_in_words(matched):
    # the 60 s darks were taken at -10 C: their own master, not for -20 C lights
    assert (matched["results"] / "calib" / NIGHT / "t-10c" / "dark_60s.fits").exists()
    sixty = [h for r, h, _ in matched["lights"].values() if r["exposure"] == 60.0]
    assert len(sixty) == 2
    for header in sixty:
        assert header["DARKFILE"] == f"calib/{NIGHT}/dark_300s.fits"
        assert header["DARKSCAL"] == pytest.approx(0.2)
        assert (
            "dark 60 s at -10 C (this night) not used for lights at -20 C (tolerance 2 C)"
            in header["CALPOL"]
        )


def test_a_filter_alias_meets_the_flats_and_says_so(matched):
    cmos = [h for r, h, _ in matched["lights"].values() if r["camera"] == "cmos"]
    assert len(cmos) == 3
    for header in cmos:
        assert header["FILTER"] == "Johnson V"  # the raw header's spelling is kept
        assert header["FLATFILE"] == f"calib/{NIGHT}/simulated_cmos/flat_V.fits"
        assert "filter 'Johnson V' read as 'V': filters.aliases" in header["CALPOL"]
    rows = [row for row in matched["table"] if "cmos_light" in row["file"]]
    assert {row["filter"] for row in rows} == {"V"}
    assert all("filters.aliases" in row["policy"] for row in rows)
