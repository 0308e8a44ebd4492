"""Latent interpolations between test images, and their PNG grid.

Each row of the grid goes from one test image to another: the two images
at the ends, and between them the decodings of ``(1 - t) z_a + t z_b`` for
``steps`` evenly spaced t in [0, 1], where z_a and z_b are the encoder's
z_mean (BatchNorm in inference mode) of the two images. The first and last
decodings are thus the reconstructions of the end images. Pairs are
consecutive test images (0 with 1, 2 with 3, ...), so the grid is the same
for every run of one dataset. `vae_balance.evaluation.protocol` writes it to
``images/interpolations.png``.
"""

import os

import numpy as np

from vae_balance.plots import save_grid


def interpolate_latents(z_start, z_end, steps):
    """``(n, steps, d)``: ``(1 - t) z_start + t z_end``, t = linspace(0, 1)."""
    z_start = np.asarray(z_start, np.float32)
    z_end = np.asarray(z_end, np.float32)
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (both ends), got {steps}.")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    return (1 - t) * z_start[:, None, :] + t * z_end[:, None, :]


def interpolations(vae, images, num_pairs=8, steps=10, batch_size=100):
    """Rows of ``[image a, steps decodings from z_a to z_b, image b]``.

    Args:
        vae: the first-stage `BalancedVAE`.
        images: at least ``2 * num_pairs`` images at the network's shape
            (uint8 or floats in [0, 1]); pair i is images 2i and 2i + 1.
        num_pairs: rows.
        steps: decodings per row, ends included.
        batch_size: of the encoder and decoder passes.

    Returns:
        (num_pairs, steps + 2, H, W, C) float32 images in [0, 1].
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    if len(images) < 2 * num_pairs:
        raise ValueError(
            f"{num_pairs} pairs need {2 * num_pairs} images, got {len(images)}."
        )
    x = images[: 2 * num_pairs].astype(np.float32)
    z_mean, _ = vae.encoder.predict(x, batch_size=batch_size, verbose=0)
    z = interpolate_latents(z_mean[0::2], z_mean[1::2], steps)
    decoded = vae.decoder.predict(
        z.reshape(num_pairs * steps, -1), batch_size=batch_size, verbose=0
    ).reshape(num_pairs, steps, *x.shape[1:])
    return np.concatenate([x[0::2, None], decoded, x[1::2, None]], axis=1)


def save_interpolations(
    vae, images, path, num_pairs=8, steps=10, pad=0, batch_size=100
):
    """Writes the interpolation grid as a PNG (one row per pair).

    Args:
        vae, images, num_pairs, steps, batch_size: as `interpolations`.
        path: the PNG to write (atomically); its folder is created.
        pad: the loader's border, cropped for display.

    Returns:
        ``path``.
    """
    rows = interpolations(vae, images, num_pairs, steps, batch_size)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    flat = rows.reshape(-1, *rows.shape[2:])
    save_grid(flat, path, columns=steps + 2, pad=pad)
    return path
