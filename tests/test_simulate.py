"""The simulator's mounts and cameras (issue 13) against its own truth: stars
land where the truth's transform says in turned, flipped and binned frames,
a binned frame keeps each star's flux and quadruples the sky per pixel, its
calibration frames are binned alike, PIERSIDE flips with the mount, and the
demo nights are the same bytes as before these existed."""

import hashlib
import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std

from ccdreduce.simulate import (
    BadColumn,
    Camera,
    Sky,
    _rng,
    bin_image,
    expose,
    mount_nights,
    noise_camera,
    noise_nights,
    relative_transform,
    simulate,
    true_positions,
)
from ccdreduce.simulate import star_free as simulate_star_free
from ccdreduce.stars import measure_at


@pytest.fixture(scope="module")
def mount(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mount")
    truth = simulate(folder, nights=mount_nights())
    return folder, truth


def lights(truth, **match):
    return [
        f
        for f in truth["frames"]
        if f["kind"] == "light" and all(f[k] == v for k, v in match.items())
    ]


def truth_image(folder, name):
    return fits.getdata(folder / "truth" / f"{name}.fits").astype(np.float64)


def electrons(folder, truth, record):
    """A raw frame calibrated with the true bias, dark and flat, binned as
    the frame is: electrons of stars and sky per pixel."""
    b = record["binning"]
    raw = fits.getdata(folder / "raw" / record["file"]).astype(np.float64)
    flat = bin_image(truth_image(folder, f"flat_{record['filter']}"), b) / b**2
    ny, nx = flat.shape
    dark = bin_image(truth_image(folder, "dark_current") * record["exposure"], b)
    bias = truth_image(folder, "bias")[::b, ::b]
    return ((raw - bias)[:, :nx] * truth["camera"]["gain"] - dark) / flat


def measurable(x, y, flux, shape, margin=20, isolation=24.0, faintest=2e4):
    """Bright, unsaturated stars well inside the frame, with no catalogue
    neighbour within ``isolation`` pixels (a neighbour pulls a centroid)."""
    ny, nx = shape
    inside = (x > margin) & (x < nx - margin - 1) & (y > margin) & (y < ny - margin - 1)
    distance = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(x.size) * 1e9
    return inside & (distance.min(axis=1) > isolation) & (flux > faintest) & (flux < 1.5e5)


def test_stars_land_where_the_truth_transform_puts_them(mount):
    folder, truth = mount
    kinds = set()
    for record in lights(truth):
        image = electrons(folder, truth, record)
        x, y = true_positions(truth, record)
        b = record["binning"]
        flux = np.asarray(truth["stars"][record["filter"]]) * record["exposure"]
        # bright enough that photon noise moves centroids by < 0.01 px
        chosen = measurable(x, y, flux, image.shape, 20 // b, 24.0 / b, faintest=4e4)
        assert chosen.sum() >= 8, record["file"]
        # a window of 3.5 px: narrower ones pull undersampled binned stars
        # towards pixel centres by a few hundredths
        found = measure_at(image, x[chosen], y[chosen], fwhm_guess=3.5)
        errors = np.hypot(found["x"] - x[chosen], found["y"] - y[chosen])
        assert np.median(errors) < 0.03 and errors.max() < 0.1, (record["file"], errors)
        kinds.add((record["rotation"], b))
    assert kinds == {(0.0, 1), (180.0, 1), (0.8, 1), (90.0, 1), (0.0, 2)}


def test_every_mount_frame_overlaps_the_first_by_far_more_than_30_percent(mount):
    folder, truth = mount
    reference = lights(truth)[0]
    size = truth["camera"]["nx"]
    for record in lights(truth):
        n = size // record["binning"]
        y, x = np.mgrid[0:n:4, 0:n:4].astype(float)
        to_reference = relative_transform(reference, record)
        rx, ry = to_reference @ np.vstack([x.ravel(), y.ravel(), np.ones(x.size)])
        overlap = np.mean((rx >= 0) & (rx <= size - 1) & (ry >= 0) & (ry <= size - 1))
        assert overlap > 0.8, (record["file"], overlap)


def test_relative_transforms_carry_true_positions_between_frames(mount):
    _, truth = mount
    reference = lights(truth)[0]
    ref_x, ref_y = true_positions(truth, reference)
    for record in lights(truth):
        x, y = true_positions(truth, record)
        rx, ry = relative_transform(reference, record) @ np.vstack([x, y, np.ones(x.size)])
        assert np.allclose(rx, ref_x, atol=1e-9) and np.allclose(ry, ref_y, atol=1e-9)


def test_the_mount_flips_halfway_and_pierside_says_so(mount):
    folder, truth = mount
    flipped_night = mount_nights()[0].name
    for record in truth["frames"]:
        header = fits.getheader(folder / "raw" / record["file"])
        assert header.get("PIERSIDE") == record.get("pier_side"), record["file"]
    sides = [(r["pier_side"], r["rotation"]) for r in lights(truth, night=flipped_night)]
    assert sides == [("EAST", 0.0), ("EAST", 0.0), ("WEST", 180.0), ("WEST", 180.0)]
    others = [r for r in lights(truth) if r["night"] != flipped_night]
    assert others and all(r["pier_side"] is None for r in others)


def test_a_binned_night_is_binned_through_its_calibration(mount):
    folder, truth = mount
    night = next(s for s in mount_nights() if s.binning == 2).name
    frames = [f for f in truth["frames"] if f["night"] == night]
    assert {f["kind"] for f in frames} == {"bias", "dark", "flat", "light"}
    gain, read_noise = truth["camera"]["gain"], truth["camera"]["read_noise"]
    bias = truth_image(folder, "bias")[::2, ::2]
    for record in frames:
        data, header = fits.getdata(folder / "raw" / record["file"], header=True)
        assert data.shape == (256, 264) and header["XBINNING"] == header["YBINNING"] == 2
        assert record["binning"] == 2
        active = (data.astype(np.float64) - bias)[:, :256]
        if record["kind"] == "bias":  # the readout's bias, read noise once
            assert abs(np.median(active)) < 0.5
            assert np.std(active) == pytest.approx(read_noise / gain, rel=0.05)
        elif record["kind"] == "dark":  # four pixels' dark current
            want = bin_image(truth_image(folder, "dark_current"), 2) * record["exposure"]
            assert np.median(active * gain) == pytest.approx(np.median(want), rel=0.05)
        elif record["kind"] == "flat":  # the same level per pixel, the binned pattern
            pattern = bin_image(truth_image(folder, f"flat_{record['filter']}"), 2) / 4
            ratio = active / pattern
            assert np.median(ratio) == pytest.approx(record["level_adu"], rel=0.01)
            assert np.std(ratio / np.median(ratio)) < 0.01


def test_mount_nights_without_overscan_need_no_trim_section(tmp_path):
    """The camera for one workflow run over both binnings, trim_section null."""
    camera = Camera(overscan=0)
    binned = next(s for s in mount_nights() if s.binning == 2)
    truth = simulate(tmp_path, nights=[binned], camera=camera)
    assert truth["overscan_section"] is None
    for record in truth["frames"]:
        assert fits.getdata(tmp_path / "raw" / record["file"]).shape == (256, 256)


def test_a_binned_frame_keeps_star_fluxes_and_has_four_times_the_sky_per_pixel():
    camera = Camera()
    sky = Sky(camera)
    gain = camera.gain
    shot = {"pointing": (6.0, -4.0), "transparency": 0.9, "fwhm": 3.4}
    calibrated = {}
    for b in (1, 2):
        raw, record = expose(
            sky, _rng(sky.seed, "binning test", b), "light", 30.0, "R", **shot, binning=b
        )
        n = camera.nx // b
        flat = bin_image(sky.flats["R"].astype(np.float64), b) / b**2
        dark = bin_image(sky.dark_current.astype(np.float64) * 30.0, b)
        e = ((raw - sky.bias[::b, ::b].astype(np.float64))[:, :n] * gain - dark) / flat
        calibrated[b] = e
        level = np.median(e)
        assert level == pytest.approx(record["sky_adu"] * gain, rel=0.01)
    assert np.median(calibrated[2]) == pytest.approx(4 * np.median(calibrated[1]), rel=0.01)
    # boxes of 24 unbinned pixels on even bounds hold the same light binned
    x = sky.stars["x"] - shot["pointing"][0]
    y = sky.stars["y"] - shot["pointing"][1]
    flux = sky.stars["R"] * 30.0 * shot["transparency"]
    chosen = np.flatnonzero(measurable(x, y, flux, (camera.ny, camera.nx), faintest=4e4))
    assert chosen.size >= 8
    ratios = []
    for i in chosen:
        x0, y0 = 2 * (int(x[i]) // 2) - 12, 2 * (int(y[i]) // 2) - 12
        sums = []
        for b, image in calibrated.items():
            box = image[y0 // b : (y0 + 24) // b, x0 // b : (x0 + 24) // b]
            sums.append(box.sum() - box.size * np.median(image))
        ratios.append(sums[1] / sums[0])
    # a star's ratio has about 1 % of noise (the median much less); the odd
    # box is hit by a cosmic ray in one frame and not the other
    assert np.median(ratios) == pytest.approx(1.0, abs=0.004), ratios
    assert np.mean(np.abs(np.array(ratios) - 1) < 0.03) >= 0.8, ratios


# --- the demo, as it was before mounts and cameras could vary -----------

# computed with the simulator of commit 82a2aeb (before issue 13)
DEMO_FINGERPRINTS = {
    ("2025-03-01", "light_R_30s_037"): ("499315d8edcd502f", "56dba0d71a1aa8a9", "013d61dbea876823"),
    ("2025-03-02", "light_V_30s_025"): ("d7de54b261ff14e1", "3ea328e19d260e15", "303ea43e7f9b73bf"),
}
FRAME_KEYS_BEFORE = {
    "cosmic_rays", "date_obs", "exposure", "file", "filter", "fwhm", "kind", "night",
    "pointing", "sky_adu", "stem", "transparency",
}  # fmt: skip


def fingerprint(path, record):
    """Short digests of a frame's pixels, its header cards, and its truth
    record as it was before issue 13. N.I.N.A.'s GAIN card (the camera's gain
    setting, issue 14) is left out: the one card added since."""
    with fits.open(path) as hdul:
        hdu = hdul[-1]  # the image: primary, or the compressed extension
        data = np.ascontiguousarray(hdu.data, dtype=">u2").tobytes()
        kept = [card for card in hdu.header.cards if card.keyword != "GAIN"]
        cards = "\n".join(str(card) for card in kept).encode()
    before = json.dumps({k: record[k] for k in FRAME_KEYS_BEFORE}, sort_keys=True).encode()
    return tuple(hashlib.sha256(b).hexdigest()[:16] for b in (data, cards, before))


def test_the_demo_is_the_same_bytes_and_truth_as_before(demo, truth):
    for (night, stem), expected in DEMO_FINGERPRINTS.items():
        (record,) = truth.frames_of(night=night, stem=stem)
        assert fingerprint(demo / "raw" / record["file"], record) == expected
    for record in truth.frames:
        assert record["binning"] == 1
        if record["kind"] == "light":
            px, py = record["pointing"]
            assert record["rotation"] == 0.0 and record["pier_side"] is None
            assert record["transform"] == [[1.0, 0.0, px], [0.0, 1.0, py]]


# --- noise and data quality (issue 14) -------------------------------------


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noise")
    truth = simulate(folder, nights=noise_nights(), camera=noise_camera())
    return folder, truth


def star_free(truth, record, shape, sigma):
    """Sky away from stars (simulate.star_free) and from cosmic-ray hits."""
    free = simulate_star_free(truth, record, shape, sigma)
    for cx, cy in record.get("cosmic_rays", []):
        free[max(cy - 3, 0) : cy + 4, max(cx - 3, 0) : cx + 4] = False
    return free


def test_noise_truth_is_the_scatter_of_a_truly_calibrated_sky(noisy):
    """sky_sigma_adu against the robust scatter of the star-free sky of the
    light calibrated with the true bias, dark and flat, away from bad
    pixels, in the central quarter of the frame (the vignetting makes the
    corners' noise ~8 % larger): within 4 % for every light, 2 % on average."""
    folder, truth = noisy
    hot = truth_image(folder, "hot_pixels").astype(bool)
    bad = hot | (truth_image(folder, "flat_R") < 0.5)  # the dead segment
    ratios = []
    for record in lights(truth):
        image = electrons(folder, truth, record) / truth["camera"]["gain"]
        sigma = record["sky_sigma_adu"]
        free = star_free(truth, record, image.shape, sigma) & ~bad
        hot_column = truth["camera"]["bad_columns"][1]["x"]
        free[:, hot_column - 1 : hot_column + 2] = False
        ny, nx = image.shape
        centre = np.zeros_like(free)
        centre[ny // 4 : 3 * ny // 4, nx // 4 : 3 * nx // 4] = True
        free &= centre
        assert free.sum() > 5000, record["file"]
        ratios.append(mad_std(image[free]) / sigma)
        assert record["gain"] == 1.5 and record["read_noise"] == 6.0
    assert np.allclose(ratios, 1.0, atol=0.04), ratios
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.02), ratios


def test_noise_nights_differ_twofold_in_noise_on_the_reference_scale(noisy):
    """Transparency 0.55-1.0 and exposures of 30 and 60 s: a frame scaled
    onto the best one (by exposure x transparency) has up to ~2x its noise."""
    folder, truth = noisy
    records = lights(truth)
    assert len(records) == 12
    assert {r["exposure"] for r in records} == {30.0, 60.0}
    assert all(0.55 <= r["transparency"] <= 1.0 for r in records)
    throughput = np.array([r["exposure"] * r["transparency"] for r in records])
    scaled = np.array([r["sky_sigma_adu"] for r in records]) * throughput.max() / throughput
    assert scaled.max() / scaled.min() > 1.8, scaled
    by_night = {
        n: np.mean([r["pointing"][0] for r in records if r["night"] == n])
        for n in {r["night"] for r in records}
    }
    assert abs(np.diff(sorted(by_night.values()))[0] - 44.0) < 4.0
    # 4.5 hits per second on 512^2: ~34 in 30 s on 256^2, ~68 in 60 s
    hits = {
        t: np.mean([len(r["cosmic_rays"]) for r in records if r["exposure"] == t]) for t in (30, 60)
    }
    assert 25 < hits[30.0] < 43 and 55 < hits[60.0] < 81, hits


def test_cosmic_rays_are_where_the_truth_says(noisy):
    """Every planted hit stands out of its truly calibrated light: the
    brightest pixel within 1 px of each recorded hit is above 10 sigma."""
    folder, truth = noisy
    for record in lights(truth):
        image = electrons(folder, truth, record) / truth["camera"]["gain"]
        sky = np.median(image)
        for x, y in record["cosmic_rays"]:
            box = image[y - 1 : y + 2, x - 1 : x + 2]
            assert box.max() - sky > 10 * record["sky_sigma_adu"], (record["file"], x, y)


def test_bad_columns_and_hot_pixels_are_in_the_truth_and_the_frames(noisy):
    folder, truth = noisy
    camera = truth["camera"]
    dead, hot = (BadColumn(**c) for c in camera["bad_columns"])
    assert dead.response < 1 and dead.trap > 0 and hot.dark > 0
    flat = truth_image(folder, "flat_R")
    assert np.median(flat[dead.y0 : dead.y1, dead.x]) == pytest.approx(dead.response, rel=0.1)
    # hot pixels: the truth's list is the truth image's, and dark current
    hot_map = truth_image(folder, "hot_pixels").astype(bool)
    listed = np.zeros_like(hot_map)
    xs, ys = np.array(truth["hot_pixels"]).T
    listed[ys, xs] = True
    assert (listed == hot_map).all() and hot_map.sum() > 100
    dark_current = truth_image(folder, "dark_current")
    assert dark_current[hot_map].min() >= 2.0
    assert np.median(dark_current[:, hot.x]) > hot.dark
    # a light calibrated with the true masters still shows the dead segment
    # (the trap is not in the flat) and, for the hot column, only more noise
    record = lights(truth)[0]
    image = electrons(folder, truth, record) / camera["gain"]
    sky, sigma = np.median(image), record["sky_sigma_adu"]
    segment = image[dead.y0 : dead.y1, dead.x]
    assert np.median(segment) - sky < -10 * sigma
    column = image[:, hot.x]
    assert abs(np.median(column) - sky) < sigma and mad_std(column) > 1.5 * sigma
    # and a raw dark shows the hot column
    darks = [r for r in truth["frames"] if r["kind"] == "dark" and r["night"] == record["night"]]
    raw = fits.getdata(folder / "raw" / darks[0]["file"]).astype(np.float64)
    bias = truth_image(folder, "bias")
    excess = np.median((raw - bias)[:, hot.x]) * camera["gain"] / darks[0]["exposure"]
    assert excess == pytest.approx(hot.dark, rel=0.1)


def test_each_dialect_writes_the_noise_cards_its_software_writes(noisy, demo, truth):
    folder, noise_truth = noisy
    runs = [(folder, noise_truth["frames"], noise_truth["nights"])]
    runs.append((demo, truth.frames, truth.data["nights"]))
    seen = set()
    for where, frames, nights in runs:
        dialect = {n["name"]: n["dialect"] for n in nights}
        for record in frames:
            header = fits.getheader(where / "raw" / record["file"], -1)
            cards = {k: header[k] for k in ("GAIN", "EGAIN", "RDNOISE") if k in header}
            kind = dialect[record["night"]]
            want = {
                "maxim": {"EGAIN": 1.5},
                "nina": {"GAIN": 120, "EGAIN": 1.5},  # GAIN: the camera's setting
                "iraf": {"GAIN": 1.5, "RDNOISE": 6.0},
                "lab": {},
            }[kind]
            assert cards == want, (record["file"], cards)
            seen.add(kind)
    assert seen == {"maxim", "nina", "iraf", "lab"}
