"""Latent interpolations between test images and their PNG grid."""

import numpy as np
import pytest
from PIL import Image

from vae_balance.evaluation import interpolation


def test_latents_move_linearly_between_the_ends():
    z = interpolation.interpolate_latents([[0.0, 2.0]], [[4.0, -2.0]], steps=5)
    np.testing.assert_allclose(
        z[0], [[0, 2], [1, 1], [2, 0], [3, -1], [4, -2]], atol=1e-6
    )
    with pytest.raises(ValueError, match="steps"):
        interpolation.interpolate_latents([[0.0]], [[1.0]], steps=1)


def test_rows_hold_the_images_and_the_decoded_path(two_stages, images):
    vae, _ = two_stages
    rows = interpolation.interpolations(vae, images, num_pairs=3, steps=4)
    assert rows.shape == (3, 6, 8, 8, 1)
    np.testing.assert_array_equal(rows[:, 0], images[0:6:2])
    np.testing.assert_array_equal(rows[:, -1], images[1:6:2])
    z_mean, _ = vae.encoder.predict(images[:6], verbose=0)
    reconstructions = vae.decoder.predict(z_mean, verbose=0)
    np.testing.assert_allclose(rows[:, 1], reconstructions[0::2], atol=1e-5)
    np.testing.assert_allclose(rows[:, 4], reconstructions[1::2], atol=1e-5)
    third = vae.decoder.predict((2 * z_mean[0:1] + z_mean[1:2]) / 3, verbose=0)
    np.testing.assert_allclose(rows[0, 2], third[0], atol=1e-5)  # t = 1/3
    with pytest.raises(ValueError, match="need 40 images"):
        interpolation.interpolations(vae, images, num_pairs=20)


def test_the_grid_png_has_a_row_per_pair_at_the_native_size(
    two_stages, images, tmp_path
):
    vae, _ = two_stages
    path = tmp_path / "images" / "interpolations.png"
    interpolation.save_interpolations(vae, images, path, num_pairs=2, steps=3, pad=1)
    grid = np.asarray(Image.open(path))
    assert grid.shape[:2] == (2 * 6, 5 * 6)  # 6x6 after cropping 1 pixel
