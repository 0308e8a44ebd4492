"""The second stage's data and the two-stage sampler.

`encode_dataset` encodes the training images once with the frozen stage-1
encoder, `latent_dataset` turns the codes into fresh ``z = mu + sigma *
epsilon`` batches for the second stage, and `TwoStageSampler` chains the two
decoders; its noise u is `vae_balance.sampling.noise.second_stage_noise`.
Export to a SavedModel: `vae_balance.export.savedmodel`.
"""

import keras
import numpy as np
import tensorflow as tf

from vae_balance.datasets.stream import check_latent_codes
from vae_balance.model import _keras_compat
from vae_balance.model.vae import BalancedVAE
from vae_balance.sampling.noise import second_stage_noise


def encode_dataset(encoder, data, batch_size=100, verbose="auto"):
    """Encodes a dataset once with a frozen first-stage encoder.

    BatchNormalization runs in inference mode. The second stage then trains on
    fresh ``z = mu + sigma * epsilon`` per batch (see `latent_dataset`).

    Args:
        encoder: the first-stage encoder, or a BalancedVAE (its encoder).
        data: images as a NumPy array or a `tf.data.Dataset` of images or of
            ``(images, ...)`` tuples, floats in [0, 1].
        batch_size: batch size for arrays.
        verbose: Keras progress bar setting.

    Returns:
        ``(z_mean, z_log_sigma)``, two float32 NumPy arrays (n, latent_dim).
    """
    if isinstance(encoder, BalancedVAE):
        encoder = encoder.encoder
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        data = data.astype("float32") / 255.0
    if isinstance(data, tf.data.Dataset):
        data = data.map(lambda *x: x[0])
        batch_size = None
    z_mean, z_log_sigma = encoder.predict(data, batch_size=batch_size, verbose=verbose)
    return z_mean.astype("float32"), z_log_sigma.astype("float32")


def latent_dataset(z_mean, z_log_sigma, batch_size=100, seed=0):
    """A dataset of fresh ``z = mu + sigma * epsilon``, reshuffled each epoch.

    Args:
        z_mean, z_log_sigma: arrays from `encode_dataset`.
        batch_size: batches are full (the remainder is dropped).
        seed: seeds the shuffling and the noise; each epoch draws anew.
    """
    z_mean, z_log_sigma = check_latent_codes(z_mean, z_log_sigma, batch_size)
    pairs = tf.data.Dataset.from_tensor_slices((z_mean, z_log_sigma))
    pairs = pairs.shuffle(len(z_mean), seed=seed, reshuffle_each_iteration=True)
    pairs = pairs.batch(batch_size, drop_remainder=True)
    noise_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def draw(pair, noise_seed):
        mean, log_sigma = pair
        epsilon = tf.random.stateless_normal(
            tf.shape(mean), seed=tf.stack([noise_seed, tf.constant(0, tf.int64)])
        )
        return mean + tf.exp(log_sigma) * epsilon

    return tf.data.Dataset.zip(pairs, noise_seeds).map(draw).prefetch(2)


@keras.saving.register_keras_serializable(package="vae_balance")
class TwoStageSampler(keras.Model):
    """Dai & Wipf's sampler: u ~ N(0, I) -> decoder 2 -> decoder 1 -> image.

    No gamma_z noise is added to decoder 2's output (as in Asperti &
    Trentin's code).

    Args:
        first_decoder: the stage-1 decoder (z -> image).
        second_decoder: the stage-2 decoder (u -> z).
        first_encoder: optional stage-1 encoder, needed only to export the
            ``encode`` and ``reconstruct`` endpoints.

    Example:

    >>> sampler = TwoStageSampler(vae.decoder, vae2.decoder, vae.encoder)
    >>> images = sampler.sample(16, seed=0)  # (16, H, W, C) in [0, 1]
    """

    def __init__(self, first_decoder, second_decoder, first_encoder=None, **kwargs):
        super().__init__(**kwargs)
        first_in = tuple(first_decoder.inputs[0].shape[1:])
        second_out = tuple(second_decoder.outputs[0].shape[1:])
        if first_in != second_out:
            raise ValueError(
                f"Second decoder output shape {second_out} does not match the "
                f"first decoder input shape {first_in}."
            )
        self.first_decoder = first_decoder
        self.second_decoder = second_decoder
        self.first_encoder = first_encoder
        _keras_compat.mark_built(self)

    @property
    def latent_dim(self):
        """Dimension of the stage-2 noise u."""
        return int(self.second_decoder.inputs[0].shape[-1])

    @property
    def image_shape(self):
        return tuple(self.first_decoder.outputs[0].shape[1:])

    def call(self, u, training=False):
        z = self.second_decoder(u, training=training)
        return self.first_decoder(z, training=training)

    def sample(self, num_samples, seed=None, batch_size=500):
        """Draws ``num_samples`` images (NumPy, in [0, 1], network size).

        Args:
            num_samples: number of images.
            seed: an int (the images of the export's ``generate(num_samples,
                seed)``, before its crop of the padding), None (fresh noise)
                or a ``np.random.Generator`` (see `second_stage_noise`).
            batch_size: batch size of the decoders' pass.
        """
        u = second_stage_noise(num_samples, self.latent_dim, seed)
        return self.predict(u, batch_size=batch_size, verbose=0)

    def get_config(self):
        config = super().get_config()
        for key in ("first_decoder", "second_decoder", "first_encoder"):
            value = getattr(self, key)
            config[key] = (
                None if value is None else keras.saving.serialize_keras_object(value)
            )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("first_decoder", "second_decoder", "first_encoder"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
