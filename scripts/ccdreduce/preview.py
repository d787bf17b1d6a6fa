"""PNG previews of images, zscale-stretched, for people and for the report."""

import numpy as np


def save_preview(image, path, title, mask=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.visualization import ZScaleInterval

    finite = np.isfinite(image)
    vmin, vmax = ZScaleInterval().get_limits(image[finite]) if finite.any() else (0, 1)
    ny, nx = image.shape
    fig, ax = plt.subplots(figsize=(7.0, 7.0 * ny / nx + 0.6), dpi=100)
    shown = ax.imshow(
        image, origin="lower", cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest"
    )
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, shrink=min(1.0, ny / nx))
    median = float(np.nanmedian(image)) if finite.any() else float("nan")
    ax.set_title(f"{title}\nmedian {median:.4g}, zscale [{vmin:.4g}, {vmax:.4g}]", fontsize=9)
    ax.set_xlabel("x (FITS axis 1)")
    ax.set_ylabel("y (FITS axis 2)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
