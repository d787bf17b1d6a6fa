"""The colour PNG of a colour group's stacks: three channel images, each
sky-subtracted and white-balanced, drawn with one common stretch. A module
of its own so that the masters' previews (preview.py) do not depend on star
finding (codedeps: editing stars.py reruns only what uses it)."""

import numpy as np

#: Pixels a channel balance needs; fewer and the channels keep their scale.
MIN_BALANCE_PIXELS = 50


def colour_balance(channels):
    """Sky-neutral, white-balanced channels: from each channel its sky
    (star-clipped median) subtracted, then each divided by the median of its
    ratio to G over the pixels bright (above 10 sigma of the sky) in all
    three, so that the typical star, whatever the sensor's and the flat
    lamp's colours, comes out white. Returns ({channel: image}, {channel:
    (sky, factor)}, the luminance's sky noise)."""
    from .stars import background

    levels = {c: background(image) for c, image in channels.items()}
    flat = {c: np.nan_to_num(image - levels[c].level, nan=0.0) for c, image in channels.items()}
    bright = np.ones(flat["G"].shape, bool)
    for c, image in flat.items():
        bright &= image > 10 * levels[c].noise
    factors = {c: 1.0 for c in flat}
    if bright.sum() >= MIN_BALANCE_PIXELS:
        for c in flat:
            factors[c] = float(np.median(flat[c][bright] / flat["G"][bright]))
    balanced = {c: flat[c] / factors[c] for c in flat}
    noise = float(np.sqrt(sum((levels[c].noise / factors[c]) ** 2 for c in flat)) / 3)
    return balanced, {c: (levels[c].level, factors[c]) for c in flat}, noise


def colour_stretch(balanced, noise, top_percentile=99.95):
    """One asinh stretch for the three channels (Lupton et al. 2004): the
    luminance I is stretched and each channel scaled by the same f(I)/I, so
    a star keeps its colour however bright. Softening 2 sigma of the sky;
    white at the luminance's ``top_percentile``. Returns (ny, nx, 3) in 0-1."""
    r, g, b = balanced["R"], balanced["G"], balanced["B"]
    lum = (r + g + b) / 3
    soft = max(2 * noise, 1e-6)
    top = max(float(np.percentile(lum, top_percentile)), 10 * soft)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.arcsinh(lum / soft) / np.arcsinh(top / soft) / lum
    scale = np.where(lum > 0, scale, 0.0)
    rgb = np.stack([r * scale, g * scale, b * scale], axis=-1)
    return np.clip(np.nan_to_num(rgb, nan=0.0), 0.0, 1.0)


def save_colour_preview(channels, path, title):
    """A PNG of three channel images ({"R": ..., "G": ..., "B": ...}): sky
    subtracted, white-balanced (colour_balance), one common stretch
    (colour_stretch). Returns the balance, {channel: (sky, factor)}."""
    from .preview import image_png

    balanced, balance, noise = colour_balance(channels)
    rgb = colour_stretch(balanced, noise)
    factors = ", ".join(f"{c} x{1 / balance[c][1]:.3f}" for c in ("R", "G", "B"))
    title = f"{title}\nsky subtracted, balanced {factors}, asinh stretch"
    pixels = (rgb * 255 + 0.5).astype(np.uint8)
    image_png(pixels, path, title, (rgb.shape[1], rgb.shape[0]))
    return balance
