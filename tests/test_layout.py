"""The results layout and the frame id (ccdreduce.layout)."""

import pytest

from ccdreduce import layout


def test_a_frame_id_is_night_and_stem_and_splits_back():
    name = layout.frame_id("2025-03-02", "light_R.0001")
    assert name == "2025-03-02/light_R.0001"
    assert layout.split_frame_id(name) == ("2025-03-02", "light_R.0001")
    for bad in ("no-slash", "/stem", "night/"):
        with pytest.raises(ValueError, match="not a frame id"):
            layout.split_frame_id(bad)


def test_products_sit_where_the_readme_says():
    assert layout.master("results", "n1", "bias") == "results/calib/n1/bias.fits"
    assert layout.master("results/", "n1", "dark", "30") == "results/calib/n1/dark_30s.fits"
    assert layout.master(None, "n1", "flat", "R") == "calib/n1/flat_R.fits"
    assert layout.calibrated(None, "n1", "a") == "calibrated/n1/a.fits"
    assert layout.catalog("r", "n1", "a") == "r/catalogs/n1/a.ecsv"
    assert layout.registered("r", "M42/R", "n1/a") == "r/registered/n1/M42/R/a.fits"
    assert layout.registered_dir("r", "n1", "M42/R") == "r/registered/n1/M42/R"
    assert layout.stack("r", "M42/R", "median.fits") == "r/stacks/M42/R/median.fits"
    assert layout.calib("r", "{night}", "frames.ecsv") == "r/calib/{night}/frames.ecsv"
    assert layout.log("r", "calib/n1/dark_30s.fits") == "r/logs/calib/n1/dark_30s.log"
    assert layout.log("r", "calibrated/n1") == "r/logs/calibrated/n1.log"
    assert layout.benchmark_of_log("r", layout.log("r", "stacks/M/R/median.fits", "preview")) == (
        "r/benchmarks/stacks/M/R/median_preview.tsv"
    )
    assert layout.benchmark_of_log(None, "logs/calibrated/n1.log") == "benchmarks/calibrated/n1.tsv"
    assert layout.master_preview("r", "n1", "dark", "30") == "r/calib/n1/dark_30s.png"
    assert layout.reference_lock("r/stacks/M/R/reference.json") == "r/stacks/M/R/reference.lock"
    assert layout.header_cache("r") == "r/.cache/headers"
    with pytest.raises(ValueError, match="no master of kind"):
        layout.master_file("sky")
