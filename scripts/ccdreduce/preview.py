"""PNG previews of images, zscale-stretched, for people and for the report.

Images are drawn with Pillow (``image_png``): the picture, pixel axes with
ticks, a title and a grey-scale bar, laid out in fixed pixels. matplotlib
drew the same in ~0.11 s a preview, almost all of it spent walking its
artists (a night draws a preview per master, per stack and per bad-pixel
map: ~2.5 s of the demo's ~12 s of work); Pillow takes ~0.015 s. Plots with
data points (ccdreduce.plots) stay with matplotlib (``figure``).
"""

import functools
import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np

#: zlib level of the PNGs: level 1 writes a preview ~5x faster than the
#: default 6, for files ~20 % larger (a night draws tens of previews)
PNG_OPTIONS = {"compress_level": 1}


def figure(width, height):
    """A matplotlib figure drawn with Agg, outside pyplot: nothing global is
    kept between the jobs a worker process runs (ccdreduce.workers)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def save_figure(fig, path):
    fig.savefig(path, pil_kwargs=PNG_OPTIONS)


#: Pixels of the layout (as matplotlib's at 100 dpi): the longer side of
#: the image, the margins around it, the colour bar's gap and width.
IMAGE_SIDE = 520
MARGINS = {"left": 75, "right": 25, "bottom": 55, "top": 55}
BAR_GAP, BAR_WIDTH, BAR_LABELS = 12, 15, 80
TICK = 5


@functools.cache
def _font(size):
    """DejaVu Sans, the font matplotlib ships (found without importing it)."""
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), size)


def nice_ticks(low, high, most=6, smallest=0.0):
    """Round tick values (steps of 1, 2, 2.5 or 5 x 10^k, at least
    ``smallest``) within [low, high], at most about ``most`` of them; and
    the decimals their labels need (None: a single value, labelled in full)."""
    span = high - low
    if not (math.isfinite(span) and span > 0):
        return [low], None
    raw = max(span / max(most, 1), smallest)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9) * step
    ticks = [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]
    quarter = step / magnitude == 2.5 and magnitude < 10  # 0.25, 2.5; not 25 or 250
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if quarter else 0)
    return ticks, decimals


def _label(value, decimals):
    text = f"{value:.4g}" if decimals is None else f"{value:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text


def _fitting(labels, font, room):
    """``labels``, or the same values in 3 significant digits when one is
    wider than ``room`` px (a range of 1e-6 or of 1e30)."""
    if max(font.getlength(label) for label in labels) <= room:
        return labels
    return [f"{float(label):.3g}" for label in labels]


def grey_levels(image, vmin, vmax):
    """0-255 grey levels of ``image`` between ``vmin`` (black) and ``vmax``
    (white); NaN drawn white, as matplotlib leaves it (no data)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (np.asarray(image, dtype=np.float64) - vmin) / ((vmax - vmin) or 1.0)
    levels = np.clip(np.nan_to_num(scaled, nan=1.0) * 255 + 0.5, 0, 255)
    return levels.astype(np.uint8)


def image_png(pixels, path, title, extent, bar=None):
    """Write a PNG of ``pixels`` (2-D uint8 grey levels, or (ny, nx, 3) uint8
    RGB; row 0 at the bottom, as FITS) covering ``extent`` = (nx, ny) image
    pixels: the picture with its longer side IMAGE_SIDE px, a frame with
    ticks in image pixels, axis labels, ``title`` (lines) above, and with
    ``bar`` = (vmin, vmax) a grey-scale bar at the right."""
    from PIL import Image, ImageDraw

    nx, ny = extent
    width = max(1, round(nx * IMAGE_SIDE / max(nx, ny)))
    height = max(1, round(ny * IMAGE_SIDE / max(nx, ny)))
    right = BAR_GAP + BAR_WIDTH + BAR_LABELS if bar else MARGINS["right"]
    left, top = MARGINS["left"], MARGINS["top"]
    # room for the title and labels beside a narrow strip
    room = max(width + right, 400)
    canvas = Image.new("RGB", (left + room, top + height + MARGINS["bottom"]), "white")
    centre = left + width / 2 if width >= 300 else canvas.width / 2
    picture = Image.fromarray(np.ascontiguousarray(pixels[::-1]))
    canvas.paste(
        picture.resize((width, height), Image.Resampling.NEAREST).convert("RGB"), (left, top)
    )
    draw = ImageDraw.Draw(canvas)
    small, text = _font(12), _font(14)
    box = (left - 1, top - 1, left + width, top + height)
    draw.rectangle(box, outline="black")
    bottom = top + height
    for value, position, axis in _axis_ticks(nx, width, left) + _axis_ticks(ny, height, bottom, -1):
        label = _label(*value)
        if axis == "x":
            draw.line((position, bottom, position, bottom + TICK), fill="black")
            draw.text((position, bottom + TICK + 2), label, fill="black", font=text, anchor="mt")
        else:
            draw.line((left - 1 - TICK, position, left - 1, position), fill="black")
            draw.text((left - TICK - 4, position), label, fill="black", font=text, anchor="rm")
    draw.text(
        (centre, canvas.height - 6),
        "x (FITS axis 1)",
        fill="black",
        font=text,
        anchor="md",
    )
    _vertical_text(canvas, "y (FITS axis 2)", text, (6, top + height / 2))
    draw.multiline_text(
        (centre, top - 8), title, fill="black", font=small, anchor="md", align="center"
    )
    if bar:
        _grey_bar(canvas, draw, bar, (left + width + BAR_GAP, top, BAR_WIDTH, height), text)
    canvas.save(path, **PNG_OPTIONS)


def _axis_ticks(size, length, origin, direction=1):
    """[((value, decimals), pixel position, axis)] of an axis ``size`` image
    pixels long drawn over ``length`` px from ``origin``: whole pixels, a
    label every 70 px or more."""
    ticks, decimals = nice_ticks(0, size, most=max(1, length // 70), smallest=1)
    axis = "x" if direction == 1 else "y"
    return [((v, decimals), origin + direction * v / size * length, axis) for v in ticks]


def _vertical_text(canvas, words, font, centre_left):
    """``words`` turned 90 degrees, its left edge at x, centred on y."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(words)
    label = Image.new("RGB", (right + 2, bottom + 2), "white")
    ImageDraw.Draw(label).text((1, 1), words, fill="black", font=font)
    turned = label.rotate(90, expand=True)
    x, y = centre_left
    canvas.paste(turned, (int(x), int(y - turned.height / 2)))


def _grey_bar(canvas, draw, limits, place, font):
    """The grey scale from ``limits`` (vmin at the bottom) with its ticks."""
    from PIL import Image

    vmin, vmax = limits
    x, y, width, height = place
    ramp = np.linspace(255, 0, height)[:, None].repeat(width, axis=1).round().astype(np.uint8)
    canvas.paste(Image.fromarray(ramp).convert("RGB"), (x, y))
    draw.rectangle((x - 1, y - 1, x + width, y + height), outline="black")
    ticks, decimals = nice_ticks(vmin, vmax, most=max(1, min(6, height // 40)))
    labels = _fitting([_label(v, decimals) for v in ticks], font, BAR_LABELS - TICK - 5)
    for value, label in zip(ticks, labels, strict=True):
        position = y + height - (value - vmin) / ((vmax - vmin) or 1.0) * height
        draw.line((x + width, position, x + width + TICK, position), fill="black")
        draw.text((x + width + TICK + 3, position), label, fill="black", font=font, anchor="lm")


#: A preview draws at most this many image pixels a side: the picture is
#: 520 px wide, and drawing a whole 4096 x 4096 stack took 5 s a preview.
MAX_DRAWN = 1024


def binned(image, factor):
    """Mean of factor x factor blocks (NaN left out; edge rows and columns
    that do not fill a block dropped)."""
    if factor <= 1:
        return image
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)
    with warnings.catch_warnings():  # an all-NaN block stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(blocks, axis=(1, 3))


def stack_title(group, method, header):
    """A stack preview's title: group and method, and from the stack's
    header its frames, total exposure and when the light was collected."""
    title = f"{group} / {method}"
    if header.get("NCOMBINE"):
        title += f" ({header['NCOMBINE']} frames, {header.get('TOTEXP', 0):g} s"
        if "DATE-BEG" in header:  # when the light was collected, on TT
            start, end = (header[key][:16].replace("T", " ") for key in ("DATE-BEG", "DATE-END"))
            title += f", {start} to {end} TT"
        title += ")"
    return title


def save_preview(image, path, title):
    """The zscale-stretched PNG of ``image`` with its median and limits."""
    from astropy.visualization import ZScaleInterval

    ny, nx = image.shape
    # binned to at most MAX_DRAWN a side, but never to nothing across (a strip)
    factor = max(1, min(int(np.ceil(max(ny, nx) / MAX_DRAWN)), ny, nx))
    drawn = binned(image, factor)
    finite = np.isfinite(drawn)
    vmin, vmax = ZScaleInterval().get_limits(drawn[finite]) if finite.any() else (0, 1)
    median = float(np.nanmedian(image)) if finite.any() else float("nan")
    title = f"{title}\nmedian {median:.4g}, zscale [{vmin:.4g}, {vmax:.4g}]"
    if factor > 1:
        title += f", shown binned {factor}x{factor}"
    extent = (drawn.shape[1] * factor, drawn.shape[0] * factor)
    image_png(grey_levels(drawn, vmin, vmax), path, title, extent, bar=(vmin, vmax))
