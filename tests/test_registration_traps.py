"""Registration traps on a simulated night with known truth: a frame shifted
off the field and full of artefacts (more 'stars' than any good frame), a
frame turned by 180 deg (meridian flip) and frames turned by 0.8 deg (the
camera put back on). None may become the reference; the turned ones are
brought onto it at their measured angle, and none is stacked on a wrong
transform."""

from datetime import datetime, timedelta

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import run_snakemake

from ccdreduce.simulate import (
    Camera,
    NightSpec,
    Sky,
    _header,
    _rng,
    expose,
    simulate,
    write_frame,
)

NIGHT = "2025-04-01"
GOOD = 5
ROTATION = 0.8  # deg, counter-clockwise in (x, y)


def turned_sky(sky, degrees):
    """The same sky with its stars turned about the frame's centre."""
    c = sky.camera
    cx, cy = (c.nx - 1) / 2, (c.ny - 1) / 2
    t = np.radians(degrees)
    x, y = sky.stars["x"] - cx, sky.stars["y"] - cy
    turned = Sky(c, sky.seed)
    turned.stars = dict(sky.stars)
    turned.stars["x"] = cx + np.cos(t) * x - np.sin(t) * y
    turned.stars["y"] = cy + np.sin(t) * x + np.cos(t) * y
    return turned


def artefacts(rng, shape, count=150):
    """Star-like blobs (ADU) that the detection counts as stars."""
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    image = np.zeros(shape)
    for x, y, amp in zip(
        rng.uniform(20, nx - 20, count),
        rng.uniform(20, ny - 20, count),
        rng.uniform(500, 5000, count),
        strict=True,
    ):
        box = (slice(int(y) - 8, int(y) + 9), slice(int(x) - 8, int(x) + 9))
        image[box] += amp * np.exp(-((xx[box] - x) ** 2 + (yy[box] - y) ** 2) / (2 * 1.2**2))
    return image


def make_trap_night(folder):
    """Five good R frames, then the traps; returns (raw folder, trap stems)."""
    spec = NightSpec(
        NIGHT,
        "maxim",
        "2025-04-02T01:00:00",
        (0.0, 0.0),
        n_bias=3,
        darks={30.0: 3},
        flats={"R": (2.0, 3)},
        lights={("R", 30.0): GOOD},
    )
    simulate(folder, nights=[spec])
    raw = folder / "raw"
    camera = Camera()
    sky = Sky(camera)
    clock = datetime.fromisoformat("2025-04-02T02:00:00")
    traps = {
        "shifted": (sky, (200.0, 0.0), True),  # and sharp: the best frame by its looks
        "flipped": (turned_sky(sky, 180.0), (0.0, 0.0), False),
        "turned_a": (turned_sky(sky, ROTATION), (1.5, -2.0), False),
        "turned_b": (turned_sky(sky, ROTATION), (-2.0, 1.0), False),
    }
    stems = {}
    for index, (name, (field, pointing, junk)) in enumerate(traps.items(), start=101):
        rng = _rng(sky.seed, "trap", name)
        fwhm = 2.9 if junk else 3.4
        data, _ = expose(
            field, rng, "light", 30.0, "R", pointing=pointing, transparency=0.95, fwhm=fwhm
        )
        if junk:
            data = data.astype(float)
            data[:, : camera.nx] += artefacts(rng, (camera.ny, camera.nx))
            data = np.clip(data, 0, camera.saturation).astype(np.uint16)
        header = _header(spec, "light", 30.0, "R", clock, index, camera)
        stems[name] = f"light_R_30s_{index:03d}"
        write_frame(raw / NIGHT / "NGC2362" / "R" / f"{stems[name]}.fits", data, header)
        clock += timedelta(seconds=60)
    return raw, stems


@pytest.fixture(scope="module")
def trap_night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traps")
    raw, stems = make_trap_night(folder)
    results = folder / "results"
    run = run_snakemake("--config", f"raw_dir={raw}", f"results_dir={results}", check=False)
    stack = results / "stacks" / "NGC_2362" / "R"
    table = Table.read(stack / "frames.ecsv")
    return {
        "run": run,
        "table": table,
        "rows": {r["stem"]: r for r in table},
        "stems": stems,
        "stack": stack,
        "results": results,
    }


def good_stems(trap_night):
    return sorted(set(trap_night["rows"]) - set(trap_night["stems"].values()))


def test_a_shifted_frame_full_of_artefacts_is_not_the_reference(trap_night):
    rows, stems = trap_night["rows"], trap_night["stems"]
    catalog = Table.read(trap_night["results"] / "catalogs" / NIGHT / f"{stems['shifted']}.ecsv")
    good = [
        len(Table.read(trap_night["results"] / "catalogs" / NIGHT / f"{s}.ecsv"))
        for s in good_stems(trap_night)
    ]
    assert len(catalog) > max(good)  # the trap: artefacts counted as stars
    night, stem = trap_night["table"].meta["reference"].split("/")
    assert stem in good_stems(trap_night)
    # pointed 200 px off: used only on the right transform, else left out with a reason
    shifted = rows[stems["shifted"]]
    if shifted["used"]:
        # 200 px, give or take the reference frame's own dither (a few px)
        assert abs(shifted["dx_measured"]) == pytest.approx(200.0, abs=5)
        assert shifted["dy_measured"] == pytest.approx(0.0, abs=5)
    else:
        assert shifted["reason"]


def test_every_good_frame_is_stacked(trap_night):
    assert trap_night["run"].returncode == 0, trap_night["run"].stderr[-3000:]
    rows = trap_night["rows"]
    assert len(good_stems(trap_night)) == GOOD
    assert all(rows[s]["used"] for s in good_stems(trap_night))
    header = fits.getheader(trap_night["stack"] / "average.fits")
    assert header["NCOMBINE"] == int(trap_night["table"]["used"].sum()) >= GOOD + 3


def test_a_frame_turned_180_deg_is_brought_onto_the_reference(trap_night):
    row = trap_night["rows"][trap_night["stems"]["flipped"]]
    assert row["used"], row["reason"]
    assert abs(row["rotation_deg"]) == pytest.approx(180.0, abs=0.02)
    assert trap_night["table"].meta["reference"] != f"{NIGHT}/{row['stem']}"


def test_frames_turned_by_a_degree_are_brought_on_at_the_measured_angle(trap_night):
    for name in ("turned_a", "turned_b"):
        row = trap_night["rows"][trap_night["stems"][name]]
        assert row["used"], row["reason"]
        assert abs(row["rotation_deg"]) == pytest.approx(ROTATION, abs=0.02)
        assert abs(row["transform"][0][1]) == pytest.approx(np.sin(np.radians(ROTATION)), abs=4e-4)
