"""Issue 15's colour targets, end to end against the simulator's truth.

One night of a GRBG colour camera (simulate.colour_nights(): 8 dithered
lights of 30 s, stars of many colours, channel responses in the flats, a
warm flat lamp), reduced once with a trim that starts at an odd column, so
the calibrated mosaic's pattern is not the raw one's (GRBG -> RGGB): a
wrong pattern would swap channels and fail the photometry. Measured:

(a) each channel's stack (noise-weighted average): aperture photometry of
    isolated, unsaturated stars bright enough in that channel (predicted
    error < 0.3 %) against their true flux in that channel, scatter of the
    ratio (normalised by its median) <= 0.5 %;
(b) the R, G and B stacks registered to each other: median centroid offset
    between channels <= 0.05 px;
(c) demosaicing adds no pattern: over the star-free sky of every
    calibrated channel, the amplitude at the Nyquist frequencies
    (|mean(plane (-1)^x)|, (-1)^y, (-1)^(x+y)), averaged over the frames,
    below 1 % of the pixel noise;
(d) the products: channel files open with CCDData (unit, mask, uncertainty),
    the catalogue is one per frame, the colour preview is an RGB PNG.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import Table
from conftest import Truth, run_snakemake

from ccdreduce import layout, simulate
from ccdreduce.scaling import aperture_photometry

GROUP = "NGC_2362/L"
CHANNELS = ("R", "G", "B")
METHOD = "sigclip"
#: Photometry on the noise-weighted average: sigma clipping of 16 frames
#: whose seeing differs by +-10 % clips bright stars' cores unevenly (0.4-0.5 %
#: scatter measured on the G stack where the average gives 0.2 %).
PHOTOMETRY_METHOD = "average"
APERTURE_FWHM = 2.0  # aperture radius, in the reference's FWHM
PREDICTED_ERROR = 0.003  # photometry stars: predicted error below this
EXPOSURE = 30.0  # s, of every light of colour_nights()
TRIM_X0 = 1  # 0-based first column kept: odd, so the pattern moves
#: Stars closer than this to a frame edge, or to a star of 1 % of their
#: flux, are not measured (px).
EDGE, ISOLATION = 16.0, 14.0


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colour")
    camera = simulate.colour_camera()
    simulate.simulate(folder, nights=simulate.colour_nights(), camera=camera)
    results = folder / "results"
    settings = folder / "colour.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "raw_dir": str(folder / "raw"),
                "results_dir": str(results),
                "trim_section": f"[{TRIM_X0 + 1}:{camera.nx},1:{camera.ny}]",
                "colour": {"demosaic": "bilinear"},
            }
        )
    )
    run_snakemake("--configfile", settings)
    truth = Truth(folder / "truth")
    table = Table.read(layout.stack(results, f"{GROUP}/G", "frames.ecsv"), format="ascii.ecsv")
    night, stem = layout.split_frame_id(table.meta["reference"])
    (reference,) = truth.frames_of(night=night, stem=stem)
    return {"results": results, "truth": truth, "reference": reference, "table": table}


def stack(results, channel, method=METHOD):
    return fits.getdata(layout.stack(results, f"{GROUP}/{channel}", f"{method}.fits"))


def calibrated_xy(truth, record):
    """True (x, y) of every star in a frame's calibrated (trimmed) pixels."""
    x, y = simulate.true_positions(truth.data, record)
    return x - TRIM_X0, y


def isolated_stars(truth, reference, shape):
    """Indices of stars unsaturated in every raw frame, isolated and well
    inside the reference's frame."""
    colour = truth.data["colour"]
    x, y = calibrated_xy(truth, reference)
    camera = truth.camera
    fluxes = np.array([np.asarray(colour["stars"][c]) * colour["response"][c] for c in CHANNELS])
    brightest = fluxes.max(axis=0)
    fwhm = min(f["fwhm"] for f in truth.frames if f["kind"] == "light")
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / 3) - 1))
    peak_adu = brightest * EXPOSURE * 2 / (np.pi * alpha**2) / camera["gain"]
    unsaturated = peak_adu < 0.6 * (camera["saturation"] - camera["bias_level"])
    ny, nx = shape
    inside = (x > EDGE) & (x < nx - 1 - EDGE) & (y > EDGE) & (y < ny - 1 - EDGE)
    distance = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(distance, np.inf)
    crowded = ((distance < ISOLATION) & (brightest[None, :] > 0.01 * brightest[:, None])).any(1)
    return np.flatnonzero(unsaturated & inside & ~crowded)


def predicted_error(truth, channel, radius):
    """Each star's relative photometric error in a channel's stack of all
    lights (transparency 0.87 on average): Poisson of the light the
    channel's pixels collect (a quarter of it for R and B, half for G,
    interpolation multiplying the variance of the aperture sum by 4 or 2)
    and the sky and read noise of the aperture."""
    colour = truth.data["colour"]
    share = {"R": 4, "G": 2, "B": 4}[channel]  # pixels per sample of the channel
    lights = [f for f in truth.frames if f["kind"] == "light"]
    collected = np.asarray(colour["stars"][channel]) * colour["response"][channel]
    electrons = collected * EXPOSURE * 0.87 * len(lights)
    sky = colour["sky_rate"][channel] * colour["response"][channel] * EXPOSURE
    per_frame = sky + truth.camera["read_noise"] ** 2
    variance = share * electrons + share * np.pi * radius**2 * per_frame * len(lights)
    return np.sqrt(variance) / electrons


def photometry_stars(truth, reference, shape, channel, radius):
    """The isolated, unsaturated stars bright enough in ``channel`` for
    photometry to PREDICTED_ERROR."""
    chosen = isolated_stars(truth, reference, shape)
    return chosen[predicted_error(truth, channel, radius)[chosen] < PREDICTED_ERROR]


def test_photometry_per_channel_against_truth(colour):
    truth, reference = colour["truth"], colour["reference"]
    shape = stack(colour["results"], "G").shape
    x, y = calibrated_xy(truth, reference)
    radius = APERTURE_FWHM * reference["fwhm"]
    scatter = {}
    for channel in CHANNELS:
        chosen = photometry_stars(truth, reference, shape, channel, radius)
        image = stack(colour["results"], channel, PHOTOMETRY_METHOD)
        fluxes, _ = aperture_photometry(image, x[chosen], y[chosen], radius)
        ratio = fluxes / np.asarray(truth.data["colour"]["stars"][channel])[chosen]
        ratio = ratio[np.isfinite(ratio)]
        assert ratio.size >= 8, f"{channel}: only {ratio.size} photometry stars"
        scatter[channel] = (ratio.size, float(np.std(ratio / np.median(ratio))))
    print("photometry (stars, scatter) per channel:", scatter)
    assert max(s for _, s in scatter.values()) <= 0.005, scatter


def centroids(image, xs, ys, radius):
    """First-moment centroids in a box of +-radius around (xs, ys), the
    box's median subtracted."""
    out = []
    offsets = np.arange(-radius, radius + 1)
    for x0, y0 in zip(xs, ys, strict=True):
        ix, iy = int(round(x0)), int(round(y0))
        box = image[iy - radius : iy + radius + 1, ix - radius : ix + radius + 1].astype(float)
        box = np.clip(box - np.nanmedian(box), 0, None)
        total = np.nansum(box)
        out.append(
            (
                ix + np.nansum(box.sum(axis=0) * offsets) / total,
                iy + np.nansum(box.sum(axis=1) * offsets) / total,
            )
        )
    return np.array(out)


def test_channels_registered_to_each_other(colour):
    truth, reference = colour["truth"], colour["reference"]
    shape = stack(colour["results"], "G").shape
    chosen = photometry_stars(truth, reference, shape, "G", APERTURE_FWHM * reference["fwhm"])
    x, y = calibrated_xy(truth, reference)
    radius = int(round(2 * reference["fwhm"]))
    found = {
        c: centroids(stack(colour["results"], c), x[chosen], y[chosen], radius) for c in CHANNELS
    }
    offsets = {}
    for a, b in (("R", "G"), ("B", "G"), ("R", "B")):
        dx, dy = np.median(found[a] - found[b], axis=0)
        offsets[f"{a}-{b}"] = float(np.hypot(dx, dy))
    print("median centroid offsets between channel stacks (px):", offsets)
    assert max(offsets.values()) <= 0.05, offsets


def test_demosaicing_adds_no_pattern(colour):
    truth, results = colour["truth"], colour["results"]
    lights = [f for f in truth.frames if f["kind"] == "light"]
    amplitude = {c: [] for c in CHANNELS}
    noise = {c: [] for c in CHANNELS}
    for record in lights:
        for channel in CHANNELS:
            path = layout.calibrated_channel(results, record["night"], record["stem"], channel)
            data, mask = fits.getdata(path), fits.getdata(path, "MASK")
            ny, nx = data.shape
            sigma = record["sky_sigma_adu"]
            free = simulate.star_free(truth.data, record, (ny, nx + TRIM_X0), sigma)[:, TRIM_X0:]
            free &= (mask == 0) & np.isfinite(data)
            yy, xx = np.mgrid[0:ny, 0:nx]
            sky = data - np.median(data[free])
            waves = ((-1.0) ** xx, (-1.0) ** yy, (-1.0) ** (xx + yy))
            amplitude[channel].append([np.mean(sky[free] * w[free]) for w in waves])
            noise[channel].append(np.std(sky[free]))
    relative = {
        c: float(np.max(np.abs(np.mean(amplitude[c], axis=0))) / np.mean(noise[c]))
        for c in CHANNELS
    }
    print("Nyquist amplitude / pixel noise per channel:", relative)
    assert max(relative.values()) < 0.01, relative


def test_products_open_naturally(colour):
    results, reference = colour["results"], colour["reference"]
    night, stem = reference["night"], reference["stem"]
    mosaic = fits.getheader(layout.calibrated(results, night, stem))
    assert mosaic["BAYERPAT"] == "RGGB"  # GRBG moved one column by the trim
    for channel in CHANNELS:
        path = layout.calibrated_channel(results, night, stem, channel)
        ccd = CCDData.read(path)
        assert ccd.unit is not None and ccd.mask is not None and ccd.uncertainty is not None
        assert ccd.header["CHANNEL"] == channel and "BAYERPAT" not in ccd.header
        stacked = CCDData.read(layout.stack(results, f"{GROUP}/{channel}", f"{METHOD}.fits"))
        assert stacked.uncertainty is not None
    catalogues = sorted(Path(layout.catalogs_dir(results, night)).glob("*.ecsv"))
    assert len(catalogues) == len([f for f in colour["truth"].frames if f["kind"] == "light"])
    refs = {
        Table.read(layout.stack(results, f"{GROUP}/{c}", "frames.ecsv"), format="ascii.ecsv").meta[
            "reference"
        ]
        for c in CHANNELS
    }
    assert len(refs) == 1  # one reference for the three channels
    from PIL import Image

    with Image.open(layout.stack(results, GROUP, f"{METHOD}.png")) as png:
        assert png.mode in ("RGB", "RGBA")


def test_every_frame_moves_alike_in_its_three_channels(colour):
    results = colour["results"]
    tables = {
        c: Table.read(layout.stack(results, f"{GROUP}/{c}", "frames.ecsv"), format="ascii.ecsv")
        for c in CHANNELS
    }
    for column in ("dx_measured", "dy_measured"):
        for c in ("R", "B"):
            np.testing.assert_array_equal(tables[c][column], tables["G"][column])
    # what was moved is a channel, never the mosaic
    for c in CHANNELS:
        for row in tables[c]:
            frame_id = layout.frame_id(row["night"], row["stem"])
            registered = fits.getheader(layout.registered(results, f"{GROUP}/{c}", frame_id))
            assert registered["CHANNEL"] == c and "BAYERPAT" not in registered
