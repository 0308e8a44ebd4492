"""PNG image grids and training curves (matplotlib, no display needed)."""

import csv
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vae_balance.datasets.pipeline import remove_padding  # noqa: E402
from vae_balance.files import atomic_write  # noqa: E402
from vae_balance.workdir import STAGES, Workdir  # noqa: E402


def image_grid(images, columns=None, pad=0):
    """Tiles (n, H, W, C) images in [0, 1] into one (rows*H, cols*W, C) array.

    Args:
        images: the images.
        columns: images per row; default the square root of n.
        pad: pixels to crop from each border first (the loader's padding,
            cropped by `remove_padding`).

    Returns:
        The grid, float32 in [0, 1]; blank cells are white.
    """
    images = np.clip(np.asarray(images, dtype="float32"), 0.0, 1.0)
    images = remove_padding(images, pad)
    n, height, width, channels = images.shape
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    grid = np.ones((rows * height, columns * width, channels), "float32")
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = image
    return grid


def save_grid(images, path, columns=None, pad=0):
    """Writes an image grid as a PNG (atomically) and returns the grid."""
    grid = image_grid(images, columns, pad)
    if grid.shape[-1] == 1:
        pixels, options = grid[..., 0], {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    else:
        pixels, options = grid, {}
    atomic_write(
        path, write=lambda tmp: plt.imsave(tmp, pixels, **options), suffix=".png"
    )
    return grid


def write_grids(grids, directory, tag, config, writer=None, step=0):
    """Saves each named batch of images as ``directory/{name}-{tag}.png``.

    Also writes them to TensorBoard through ``writer`` when given.
    """
    os.makedirs(directory, exist_ok=True)
    for name, images in grids.items():
        grid = save_grid(
            images, os.path.join(directory, f"{name}-{tag}.png"), pad=config.pad
        )
        if writer is not None:
            with writer.as_default():
                tf.summary.image(name, grid[None], step=step)
            writer.flush()


def _read_steps(path):
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def plot_curves(workdir, path):
    """mse and gamma^2 (log scale), KL and loss over steps, for both stages."""
    run = Workdir(workdir)
    stages = {stage: _read_steps(run.steps_csv(stage)) for stage in STAGES}
    stages = {k: v for k, v in stages.items() if v is not None}
    if not stages:
        return None
    fig, axes = plt.subplots(
        len(stages), 3, figsize=(13, 3.6 * len(stages)), squeeze=False
    )
    for row, (stage, steps) in zip(axes, stages.items()):
        x = steps["step"]
        row[0].semilogy(x, steps["mse"], lw=0.6, alpha=0.6, label="batch MSE")
        row[0].semilogy(x, steps["gamma"] ** 2, lw=1.2, label="gamma^2 (used)")
        row[0].set_title(f"{stage}: MSE and gamma^2")
        row[0].legend()
        row[1].plot(x, steps["kl_loss"], lw=0.8)
        row[1].set_title(f"{stage}: KL (per sample, summed)")
        row[2].plot(x, steps["loss"], lw=0.8)
        row[2].set_title(f"{stage}: loss")
        for ax in row:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, write=lambda tmp: fig.savefig(tmp, dpi=90), suffix=".png")
    plt.close(fig)
    return path
