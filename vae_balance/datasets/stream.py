"""The training job's data as a function of (epoch, step), so a run resumes exactly.

A ``tf.data`` pipeline reshuffled every epoch (`pipeline.make_train_dataset`)
gives its k-th order on its k-th iteration: a run resumed in epoch 7 by a
new process would replay epoch 0's order. Here every epoch is its own
dataset, shuffled once with a seed derived from ``(seed, epoch)``
(`epoch_seed`), and a resumed epoch skips the batches already trained on.
The latent codes of stage 2 also draw their noise from ``(seed, epoch,
step)``. The same ``(seed, epoch, step)`` thus always gives the same batch,
in any process.
"""

import numpy as np
import tensorflow as tf

from vae_balance.datasets import pipeline


def check_latent_codes(z_mean, z_log_sigma, batch_size):
    """The codes as float32 arrays, checked: one (n, latent_dim) shape, at
    least one batch. Raises a ValueError naming the problem."""
    z_mean = np.asarray(z_mean, "float32")
    z_log_sigma = np.asarray(z_log_sigma, "float32")
    if z_mean.shape != z_log_sigma.shape or z_mean.ndim != 2:
        raise ValueError(
            f"z_mean {z_mean.shape} and z_log_sigma {z_log_sigma.shape} must be "
            "two arrays of the same (n, latent_dim) shape."
        )
    if len(z_mean) < batch_size:
        raise ValueError(
            f"{len(z_mean)} latent codes are fewer than one batch of {batch_size}."
        )
    return z_mean, z_log_sigma


def epoch_seed(seed, epoch):
    """A 31-bit shuffle seed for one epoch of a run seeded with ``seed``.

    NumPy's `SeedSequence` mixes the pair, so nearby seeds and epochs give
    unrelated orders.
    """
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)
    return int(state[0] >> 1)


def image_epoch(images, batch_size, seed, epoch, start_step=0):
    """The batches of one epoch of training images, from ``start_step`` on.

    Args:
        images: an unbatched dataset of images with a deterministic order
            (`pipeline.load_split`, `arrays.from_arrays`).
        batch_size: images per (full) batch.
        seed: the run's seed.
        epoch: the epoch (0-based): its order is seeded by `epoch_seed`.
        start_step: batches of this epoch already trained on (skipped).

    Returns:
        A batched `tf.data.Dataset` of float32 images in [0, 1] with
        ``n // batch_size - start_step`` batches.
    """
    batches = pipeline.make_train_dataset(
        images,
        batch_size,
        epoch_seed(seed, epoch),
        reshuffle_each_iteration=False,
    )
    return batches.skip(start_step) if start_step else batches


def latent_epoch(z_mean, z_log_sigma, batch_size, seed, epoch, start_step=0):
    """One epoch of stage 2's data: fresh ``z = mu + sigma * epsilon`` batches.

    The codes are shuffled with `epoch_seed` and batch ``s`` of epoch ``e``
    draws its epsilon from the stateless seed ``(epoch_seed(seed, e), s)``.

    Args:
        z_mean, z_log_sigma: ``(n, latent_dim)`` arrays of stage 1's codes.
        batch_size: codes per (full) batch.
        seed: the run's seed.
        epoch: the epoch (0-based).
        start_step: batches of this epoch already trained on (skipped).

    Returns:
        A batched `tf.data.Dataset` of float32 latent vectors.
    """
    z_mean, z_log_sigma = check_latent_codes(z_mean, z_log_sigma, batch_size)
    this_seed = epoch_seed(seed, epoch)
    pairs = tf.data.Dataset.from_tensor_slices((z_mean, z_log_sigma))
    pairs = pairs.shuffle(len(z_mean), seed=this_seed, reshuffle_each_iteration=False)
    pairs = pairs.batch(batch_size, drop_remainder=True)
    numbered = tf.data.Dataset.zip(pairs, tf.data.Dataset.range(len(z_mean)))

    def draw(pair, step):
        mean, log_sigma = pair
        epsilon = tf.random.stateless_normal(
            tf.shape(mean), seed=tf.stack([tf.constant(this_seed, tf.int64), step])
        )
        return mean + tf.exp(log_sigma) * epsilon

    if start_step:
        numbered = numbered.skip(start_step)
    return numbered.map(draw).prefetch(2)
