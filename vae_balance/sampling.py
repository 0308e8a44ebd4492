"""Second stage and sampling: latent codes, the two-stage sampler, export."""

import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from vae_balance.model import BalancedVAE


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
        self.built = True

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
        """Draws ``num_samples`` images (NumPy, in [0, 1])."""
        u = keras.random.normal((num_samples, self.latent_dim), seed=seed)
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


def _as_sampler(sampler_or_models):
    if isinstance(sampler_or_models, TwoStageSampler):
        return sampler_or_models
    if isinstance(sampler_or_models, (tuple, list)) and len(sampler_or_models) == 2:
        first, second = sampler_or_models
        if isinstance(first, BalancedVAE) and isinstance(second, BalancedVAE):
            return TwoStageSampler(first.decoder, second.decoder, first.encoder)
    raise TypeError(
        "export_sampler needs a TwoStageSampler or a pair (first_stage_vae, "
        f"second_stage_vae) of BalancedVAE models, got {type(sampler_or_models)}."
    )


def export_sampler(sampler_or_models, path, overwrite=False):
    """Writes a TF SavedModel for sampling, loadable without vae_balance.

    Endpoints (all float32, images in [0, 1]):

    - ``sample(u)``: stage-2 noise (n, latent_dim) -> images. Also the
      ``serving_default`` signature for TF Serving.
    - ``decode(z)``: stage-1 latents -> images (GEN-1 with z ~ N(0, I)).
    - ``encode(x)``: images -> ``{"z_mean", "z_log_sigma"}``.
    - ``reconstruct(x)``: images -> decode(z_mean).

    ``encode`` and ``reconstruct`` need the stage-1 encoder (given by a
    pair of models, or ``TwoStageSampler(..., first_encoder=...)``).

    The SavedModel is written to a temporary folder beside ``path`` and renamed
    into place, so an interrupted export never leaves a partial one; a killed
    replacement leaves the previous export complete, put back in place by the
    next export (see `restore_interrupted_export`).

    Args:
        sampler_or_models: a `TwoStageSampler`, or ``(vae, vae2)``.
        path: the SavedModel directory to create.
        overwrite: replace an existing ``path``; otherwise refuse.

    Example:

    >>> export_sampler((vae, vae2), "sampler")
    >>> loaded = tf.saved_model.load("sampler")  # no vae_balance needed
    >>> images = loaded.sample(tf.random.normal((16, 64)))
    """
    sampler = _as_sampler(sampler_or_models)
    path = os.fspath(path)
    restore_interrupted_export(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"Export path {path!r} already exists; pass overwrite=True (CLI: "
            "--overwrite) to replace it, or choose another path."
        )
    archive = keras.export.ExportArchive()
    archive.track(sampler)
    latent = tf.TensorSpec((None, sampler.latent_dim), tf.float32, name="u")
    first_latent_dim = int(sampler.first_decoder.inputs[0].shape[-1])
    z_spec = tf.TensorSpec((None, first_latent_dim), tf.float32, name="z")
    archive.add_endpoint(
        "sample", lambda u: sampler(u, training=False), input_signature=[latent]
    )
    archive.add_endpoint(
        "decode",
        lambda z: sampler.first_decoder(z, training=False),
        input_signature=[z_spec],
    )
    encoder = sampler.first_encoder
    if encoder is not None:
        image_spec = tf.TensorSpec(
            (None, *sampler.image_shape), tf.float32, name="images"
        )

        def encode(x):
            z_mean, z_log_sigma = encoder(x, training=False)
            return {"z_mean": z_mean, "z_log_sigma": z_log_sigma}

        def reconstruct(x):
            z_mean, _ = encoder(x, training=False)
            return sampler.first_decoder(z_mean, training=False)

        archive.add_endpoint("encode", encode, input_signature=[image_spec])
        archive.add_endpoint("reconstruct", reconstruct, input_signature=[image_spec])

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(os.path.abspath(path))
    staging = tempfile.mkdtemp(prefix=f".{name}.export-{os.getpid()}-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        if os.path.exists(path):
            # Two renames: a kill between them leaves the previous export
            # complete under `old`, which restore_interrupted_export puts back.
            old = _previous_export(path)
            os.rename(path, old)
            os.rename(staging, path)
            shutil.rmtree(old)
        else:
            os.rename(staging, path)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return path


def _previous_export(path):
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f".{name}.previous")


def restore_interrupted_export(path):
    """Repairs what a killed `export_sampler` may have left beside ``path``.

    `export_sampler` writes to a hidden staging folder and renames it into
    place; replacing an export takes two renames (the old one aside, the new
    one in). A process killed in between leaves no ``path`` but the complete
    previous export under ``.NAME.previous``: it is renamed back. A previous
    export left next to a complete new one is deleted, and so are the staging
    folders of dead processes. `export_sampler` calls this first.

    Returns:
        True when a previous export was put back in place.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    restored = False
    old = _previous_export(path)
    if os.path.isdir(old):
        if os.path.exists(path):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, path)
            restored = True
    prefix = f".{name}.export-"
    if os.path.isdir(parent):
        for entry in os.listdir(parent):
            if not entry.startswith(prefix):
                continue
            pid = entry[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and not _process_alive(int(pid)):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    return restored


def _process_alive(pid):
    if pid == os.getpid():
        return False  # this process is not exporting while it cleans up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
