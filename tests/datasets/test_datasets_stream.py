"""The resumable data stream: one order per (seed, epoch), any start step."""

import numpy as np
import pytest
import tensorflow as tf

from vae_balance.datasets import arrays, stream


@pytest.fixture
def numbered():
    """40 uint8 images of 2x2x1 whose pixels are their index."""
    values = np.repeat(np.arange(40, dtype=np.uint8), 4).reshape(40, 2, 2, 1)
    return arrays.from_arrays(values).map(lambda x: tf.cast(x * 255.0, tf.uint8))


def _indices(dataset):
    return [np.rint(b[:, 0, 0, 0] * 255).astype(int).tolist() for b in dataset]


def test_an_epoch_is_a_function_of_seed_and_epoch_only(numbered):
    first = _indices(stream.image_epoch(numbered, 8, seed=0, epoch=3))
    again = _indices(stream.image_epoch(numbered, 8, seed=0, epoch=3))
    assert first == again == _indices(stream.image_epoch(numbered, 8, 0, 3))
    assert len(first) == 5 and sorted(sum(first, [])) == list(range(40))
    assert first != _indices(stream.image_epoch(numbered, 8, seed=0, epoch=4))
    assert first != _indices(stream.image_epoch(numbered, 8, seed=1, epoch=3))


def test_a_resumed_epoch_is_the_tail_of_the_full_one(numbered):
    full = _indices(stream.image_epoch(numbered, 8, seed=5, epoch=2))
    for start in (1, 3, 4):
        tail = _indices(stream.image_epoch(numbered, 8, 5, 2, start_step=start))
        assert tail == full[start:]


def test_epoch_seeds_differ_and_fit_in_31_bits():
    seeds = {stream.epoch_seed(s, e) for s in range(3) for e in range(100)}
    assert len(seeds) == 300 and all(0 <= s < 2**31 for s in seeds)
    assert stream.epoch_seed(0, 7) == stream.epoch_seed(0, 7)


def test_latent_epochs_draw_the_same_noise_for_the_same_step():
    rng = np.random.default_rng(0)
    z_mean = rng.standard_normal((20, 3)).astype("float32")
    z_log_sigma = np.full((20, 3), -1.0, "float32")
    full = [b.numpy() for b in stream.latent_epoch(z_mean, z_log_sigma, 4, 0, 1)]
    tail = [b.numpy() for b in stream.latent_epoch(z_mean, z_log_sigma, 4, 0, 1, 2)]
    assert len(full) == 5 and len(tail) == 3
    for a, b in zip(full[2:], tail, strict=True):
        np.testing.assert_array_equal(a, b)
    other = [b.numpy() for b in stream.latent_epoch(z_mean, z_log_sigma, 4, 0, 2)]
    assert not np.array_equal(np.concatenate(full), np.concatenate(other))
    # z = mu + sigma * eps with sigma = e^-1: every code's noise is fresh.
    assert np.abs(np.concatenate(full)).max() < 10
    with pytest.raises(ValueError, match="fewer than one batch"):
        stream.latent_epoch(z_mean[:3], z_log_sigma[:3], 4, 0, 0)
