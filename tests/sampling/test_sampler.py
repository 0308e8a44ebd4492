"""Latent codes for stage 2 and the two-stage sampler (sampling.two_stage)."""

import numpy as np
import pytest
import tensorflow as tf

from vae_balance import (
    TwoStageSampler,
    build_second_stage,
    encode_dataset,
    latent_dataset,
)


def test_sampler_draws_images_of_the_first_stage_shape_in_unit_range(two_stages):
    vae, vae2 = two_stages
    sampler = TwoStageSampler(vae.decoder, vae2.decoder)
    samples = sampler.sample(7, seed=0, batch_size=4)
    assert samples.shape == (7, 8, 8, 1)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    # Same seed, same images (up to the batching of predict's float sums).
    np.testing.assert_allclose(samples, sampler.sample(7, seed=0), atol=1e-6)
    assert not np.array_equal(samples, sampler.sample(7, seed=1))


def test_sampler_refuses_decoders_that_do_not_chain(two_stages):
    vae, _ = two_stages
    other = build_second_stage("tiny", latent_dim=5)
    with pytest.raises(ValueError, match=r"\(5,\).*\(4,\)"):
        TwoStageSampler(vae.decoder, other.decoder)


def test_encode_dataset_gives_the_same_codes_from_arrays_and_tf_data(
    two_stages, images
):
    vae, _ = two_stages
    from_array = encode_dataset(vae, images, batch_size=5, verbose=0)
    labelled = tf.data.Dataset.from_tensor_slices((images, np.arange(16))).batch(6)
    from_dataset = encode_dataset(vae.encoder, labelled, verbose=0)
    from_uint8 = encode_dataset(vae, np.round(images * 255).astype("uint8"), verbose=0)
    z_mean, z_log_sigma = vae.encoder(images, training=False)
    for codes in (from_array, from_dataset):
        assert codes[0].shape == codes[1].shape == (16, 4)
        assert codes[0].dtype == codes[1].dtype == np.float32
        np.testing.assert_allclose(codes[0], z_mean, atol=1e-6)
        np.testing.assert_allclose(codes[1], z_log_sigma, atol=1e-6)
    np.testing.assert_allclose(from_uint8[0], z_mean, atol=1e-2)


def test_latent_dataset_draws_fresh_noise_and_reshuffles_every_epoch():
    z_mean = np.repeat(np.arange(12, dtype="float32")[:, None] * 10, 3, axis=1)
    z_log_sigma = np.full((12, 3), np.log(0.1), "float32")
    dataset = latent_dataset(z_mean, z_log_sigma, batch_size=5, seed=0)
    epochs = [np.concatenate(list(dataset.as_numpy_iterator())) for _ in range(2)]
    for z in epochs:
        assert z.shape == (10, 3)  # two full batches, remainder dropped
        rows = np.round(z[:, 0] / 10).astype(int)  # which code each z came from
        assert len(set(rows)) == 10
        noise = z - z_mean[rows]
        assert np.abs(noise).max() < 0.6  # sigma 0.1
        assert 0.03 < noise.std() < 0.2
    rows = [np.round(z[:, 0] / 10).astype(int) for z in epochs]
    assert not np.array_equal(rows[0], rows[1])  # reshuffled
    # One batch holding every code: each epoch is the same set, new noise.
    fixed = latent_dataset(z_mean[:5], z_log_sigma[:5], batch_size=5, seed=0)
    first, second = (np.sort(next(iter(fixed)).numpy(), axis=0) for _ in range(2))
    assert not np.allclose(first, second)


def test_latent_dataset_refuses_mismatched_codes():
    with pytest.raises(ValueError, match="same"):
        latent_dataset(np.zeros((10, 4)), np.zeros((10, 3)), batch_size=2)
    with pytest.raises(ValueError, match="fewer than one batch"):
        latent_dataset(np.zeros((3, 4)), np.zeros((3, 4)), batch_size=5)


# export_sampler (overwrite, reloading without vae_balance, signatures and
# metadata, `python -m vae_balance sample`): tests/test_export.py.
