"""Figures shared by the viewers and the demo report (matplotlib only, no Scipion objects)."""
import matplotlib.pyplot as plt
import numpy as np
from scipy import ndimage


def display_range(image, low=1.0, high=99.0):
    """Grey levels clipped to percentiles, so a few gold beads do not wash out the slice."""
    lo, hi = np.percentile(image, [low, high])
    return (lo, hi) if hi > lo else (lo, lo + 1)


def orthogonal_slices(volume, centre_zyx=None, smooth=1.0):
    """The xy, xz and yz slices through ``centre_zyx`` (default: the volume centre)."""
    centre = [s // 2 for s in volume.shape] if centre_zyx is None else [int(c) for c in centre_zyx]
    cuts = (np.asarray(volume[centre[0]], np.float32), np.asarray(volume[:, centre[1]], np.float32),
            np.asarray(volume[:, :, centre[2]], np.float32))
    return [ndimage.gaussian_filter(c, smooth) if smooth else c for c in cuts]


def plot_slice_with_points(ax, image, points_xy=(), labels=None, title='', mask=None, colors=None):
    """A grey slice with optional mask outline and circles at (x, y) points."""
    ax.imshow(image, cmap='gray', vmin=display_range(image)[0], vmax=display_range(image)[1],
              origin='lower')
    if mask is not None and np.any(mask) and not np.all(mask):
        ax.contour(mask.astype(float), levels=[0.5], colors='yellow', linewidths=0.8)
    points_xy = np.asarray(points_xy, float).reshape(-1, 2)
    if len(points_xy):
        ax.scatter(points_xy[:, 0], points_xy[:, 1], s=40, facecolors='none',
                   edgecolors=colors if colors is not None else 'cyan', linewidths=0.9, label=labels)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def mask_overview_figure(entries, table_header=(), table_rows=()):
    """One row per ``(title, volume, mask)`` entry: the central xy, xz and yz slices with the mask
    outlined (volumes may be memory maps: only the three slices are read); then an optional table."""
    heights = [1.0] * len(entries) + ([0.12 * (len(table_rows) + 1)] if table_rows else [])
    fig, axes = plt.subplots(len(heights), 3, figsize=(12, 3.6 * sum(heights)), squeeze=False,
                             gridspec_kw={'height_ratios': heights})
    for row, (title, volume, mask) in zip(axes, entries):
        centre = [s // 2 for s in volume.shape]
        images = orthogonal_slices(volume, centre)
        outlines = orthogonal_slices(mask, centre, smooth=0)
        for ax, image, outline, plane in zip(row, images, outlines, ('xy', 'xz', 'yz')):
            plot_slice_with_points(ax, image, mask=outline > 0, title=f'{title}: {plane} central slice')
    if table_rows:  # one axes across the last row, so that tight_layout can place the table
        grid = axes[-1][0].get_gridspec()
        for ax in axes[-1]:
            ax.remove()
        table_ax = fig.add_subplot(grid[-1, :])
        table_ax.axis('off')
        table = table_ax.table(cellText=[list(map(str, r)) for r in table_rows], colLabels=list(table_header),
                               loc='upper left', bbox=[0, 0, 1, 1])
        table.auto_set_font_size(False)
        table.set_fontsize(9)
    return fig
