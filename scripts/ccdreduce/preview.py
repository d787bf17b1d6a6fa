"""PNG previews of images, zscale-stretched, for people and for the report."""

import warnings

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


def image_figure(ny, nx, title, colour_bar=False):
    """A figure for an ny x nx image with fixed margins in inches (axis
    labels left and below, the colour bar right, a two-line title above):
    tight_layout cost as much as drawing the image. Returns (fig, ax, bar
    axes or None); the longer side of the image is 5.2 in."""
    left, right, bottom, top = 0.75, (1.05 if colour_bar else 0.25), 0.55, 0.55
    shown_width = 5.2 * min(1.0, nx / ny)
    shown_height = shown_width * ny / nx
    width, height = shown_width + left + right, shown_height + bottom + top
    fig = figure(width, height)
    ax = fig.add_axes((left / width, bottom / height, shown_width / width, shown_height / height))
    bar = None
    if colour_bar:
        place = (left + shown_width + 0.12) / width, bottom / height
        bar = fig.add_axes((*place, 0.15 / width, shown_height / height))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (FITS axis 1)")
    ax.set_ylabel("y (FITS axis 2)")
    return fig, ax, bar


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


def save_preview(image, path, title):
    from astropy.visualization import ZScaleInterval

    ny, nx = image.shape
    factor = int(np.ceil(max(ny, nx) / MAX_DRAWN))
    drawn = binned(image, factor)
    finite = np.isfinite(drawn)
    vmin, vmax = ZScaleInterval().get_limits(drawn[finite]) if finite.any() else (0, 1)
    median = float(np.nanmedian(image)) if finite.any() else float("nan")
    title = f"{title}\nmedian {median:.4g}, zscale [{vmin:.4g}, {vmax:.4g}]"
    if factor > 1:
        title += f", shown binned {factor}x{factor}"
    fig, ax, bar = image_figure(ny, nx, title, colour_bar=True)
    extent = (0, drawn.shape[1] * factor, 0, drawn.shape[0] * factor)
    shown = ax.imshow(
        drawn,
        origin="lower",
        cmap="gray",
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        extent=extent,
    )
    fig.colorbar(shown, cax=bar)
    save_figure(fig, path)
