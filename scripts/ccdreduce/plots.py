"""Plots of a stack's frames: shifts, rotations, scale factors and seeing."""

import numpy as np

from .layout import frame_id


def frames_plot(table, path, title):
    from .preview import figure, save_figure

    n = len(table)
    index = np.arange(n)
    used = np.asarray(table["used"], dtype=bool)
    labels = [
        frame_id(night, stem) for night, stem in zip(table["night"], table["stem"], strict=True)
    ]
    width, height = max(7.0, 0.35 * n + 2), 10.5
    fig = figure(width, height)
    axes = fig.subplots(4, 1, sharex=True)
    panels = (
        (("dx_measured", "dx"), ("dy_measured", "dy")),
        (("rotation_deg", None),),
        (("scale", None),),
        (("fwhm", None),),
    )
    names = (
        "shift to the reference (px)",
        "rotation to the reference (deg)",
        "scale factor (x frame = reference)",
        "FWHM in the stack (px)",
    )
    for ax, panel, name in zip(axes, panels, names, strict=True):
        for column, applied in panel:
            values = np.asarray(table[column], dtype=float)
            ax.plot(index[used], values[used], "o", label=column)
            ax.plot(
                index[~used],
                values[~used],
                "x",
                color="red",
                label=f"{column} (excluded)" if (~used).any() else None,
            )
            if applied:
                ax.plot(
                    index,
                    np.asarray(table[applied], dtype=float),
                    "_",
                    color="k",
                    markersize=12,
                    label=f"{applied} applied",
                )
        if name.startswith("scale"):
            ax.errorbar(
                index,
                np.asarray(table["scale"], dtype=float),
                yerr=np.asarray(table["scale_err"], dtype=float),
                fmt="none",
                ecolor="grey",
            )
        ax.set_ylabel(name, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1].set_xticks(index, labels, rotation=90, fontsize=7)
    axes[0].set_title(title, fontsize=9)
    # fixed margins in inches, the bottom one for the longest frame name
    # (7 pt, turned): tight_layout drew the whole figure once more to find them
    longest = max((len(label) for label in labels), default=0)
    fig.subplots_adjust(
        left=0.9 / width,
        right=1 - 0.2 / width,
        top=1 - 0.35 / height,
        bottom=min(0.5, (0.25 + longest * 7 * 0.62 / 72) / height),
        hspace=0.08,
    )
    save_figure(fig, path)
