"""Second stage and sampling: latent codes, the two-stage sampler, export."""

import datetime
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from vae_balance.model import BalancedVAE
from vae_balance.presets import VAEConfig


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


# ------------------------------------------------------------------- export
METADATA_FORMAT_VERSION = 1
METADATA_SIGNATURE = "metadata"
METADATA_FILE = os.path.join("assets.extra", "vae_balance.json")
# How `generate(num_samples, seed)` draws its noise (also in the metadata).
GENERATE_NOISE = (
    "u = tf.random.stateless_normal([num_samples, u_dim], seed=[seed, 0], "
    'alg="philox"), an int64 seed pair'
)


def _as_sampler(sampler_or_models):
    """``(sampler, stages)``: stages is the ``(vae, vae2)`` pair, or None."""
    if isinstance(sampler_or_models, TwoStageSampler):
        return sampler_or_models, None
    if isinstance(sampler_or_models, (tuple, list)) and len(sampler_or_models) == 2:
        first, second = sampler_or_models
        if isinstance(first, BalancedVAE) and isinstance(second, BalancedVAE):
            sampler = TwoStageSampler(first.decoder, second.decoder, first.encoder)
            return sampler, (first, second)
    raise TypeError(
        "export_sampler needs a TwoStageSampler or a pair (first_stage_vae, "
        f"second_stage_vae) of BalancedVAE models, got {type(sampler_or_models)}."
    )


def _as_config(config):
    if config is None or isinstance(config, VAEConfig):
        return config
    if isinstance(config, Mapping):  # e.g. a run's config.json
        return VAEConfig.from_dict(config)
    raise TypeError(
        f"config must be a VAEConfig, a dict of its fields or None, got {type(config)}."
    )


def _first_latent_dim(sampler):
    return int(sampler.first_decoder.inputs[0].shape[-1])


def _resolve_pad(config, pad, sampler):
    """The border the export crops: ``pad``, else the config's, else 0."""
    if config is not None:
        found = {
            "image_shape": (tuple(config.image_shape), sampler.image_shape),
            "latent_dim": (config.latent_dim, _first_latent_dim(sampler)),
            "stage-2 latent_dim": (config.latent_dim, sampler.latent_dim),
        }
        wrong = [
            f"{name} {want} in the config, {got} in the models"
            for name, (want, got) in found.items()
            if want != got
        ]
        if wrong:
            raise ValueError(
                f"Config {config.name!r} does not describe these models: "
                f"{'; '.join(wrong)}."
            )
        if pad is not None and int(pad) != config.pad:
            raise ValueError(f"pad={pad} disagrees with the config's pad={config.pad}.")
    if pad is None:
        pad = 0 if config is None else config.pad
    pad = int(pad)
    height, width = sampler.image_shape[:2]
    if pad < 0 or 2 * pad >= min(height, width):
        raise ValueError(
            f"pad={pad} must be >= 0 and leave pixels of the {height}x{width} images."
        )
    return pad


def _number(value):
    """A JSON-safe float (null if not finite)."""
    value = float(keras.ops.convert_to_numpy(value))
    return value if np.isfinite(value) else None


def _stage_metadata(vae):
    optimizer = getattr(vae, "optimizer", None)
    steps = None
    if optimizer is not None:
        steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
    gamma = _number(vae.gamma)
    return {
        "balance": vae.balance,
        "running_rule": vae.running_rule,
        "kl_weight": vae.kl_weight,
        "gamma_squared": None if gamma is None else gamma**2,
        "running_mse": _number(vae.running_mse),
        "steps": steps,
    }


def _spec(dtype, shape):
    return {"dtype": dtype, "shape": list(shape)}


def _signature_table(sampler, pad):
    """What each signature takes and returns, in the metadata's terms."""
    height, width, channels = sampler.image_shape
    native = [None, height - 2 * pad, width - 2 * pad, channels]
    images = {"images": _spec("float32", native)}
    z_dim = _first_latent_dim(sampler)
    table = {
        "sample": {"inputs": {"u": _spec("float32", [None, sampler.latent_dim])}},
        "generate": {
            "inputs": {"num_samples": _spec("int64", []), "seed": _spec("int64", [])}
        },
        "decode": {"inputs": {"z": _spec("float32", [None, z_dim])}},
    }
    for entry in table.values():
        entry["outputs"] = images
    if sampler.first_encoder is not None:
        table["encode"] = {
            "inputs": images,
            "outputs": {
                "z_mean": _spec("float32", [None, z_dim]),
                "z_log_sigma": _spec("float32", [None, z_dim]),
            },
        }
        table["reconstruct"] = {"inputs": images, "outputs": images}
    table[METADATA_SIGNATURE] = {"inputs": {}, "outputs": {"json": _spec("string", [])}}
    table["serving_default"] = dict(table["sample"], same_as="sample")
    return table


def sampler_metadata(sampler_or_models, config=None, pad=None):
    """The JSON-ready description `export_sampler` stores in the SavedModel.

    Keys (``format_version`` 1): ``format``, ``format_version``, ``preset``
    and ``config`` (the full resolved `VAEConfig.to_dict`, null without a
    config), ``latent_dim`` (stage-1 z) and ``u_dim`` (stage-2 noise),
    ``image_shape`` (native: what the endpoints return and take),
    ``network_image_shape``, ``pad``, ``pixel_range``, ``stages`` (per stage:
    ``balance``, ``running_rule``, ``kl_weight``, the final ``gamma_squared``
    and ``running_mse``, ``steps`` = optimizer iterations; null for a
    `TwoStageSampler`), ``signatures`` (inputs and outputs of each),
    ``generate_noise``, ``versions`` (vae_balance, tensorflow, keras, python)
    and ``exported_at`` (UTC).
    """
    sampler, stages = _as_sampler(sampler_or_models)
    return _metadata(sampler, stages, config, pad)


def _metadata(sampler, stages, config, pad):
    config = _as_config(config)
    pad = _resolve_pad(config, pad, sampler)
    from vae_balance import __version__  # the package is loaded by now

    height, width, channels = sampler.image_shape
    return {
        "format": "vae_balance.sampler",
        "format_version": METADATA_FORMAT_VERSION,
        "preset": None if config is None else config.name,
        "config": None if config is None else config.to_dict(),
        "latent_dim": _first_latent_dim(sampler),
        "u_dim": sampler.latent_dim,
        "image_shape": [height - 2 * pad, width - 2 * pad, channels],
        "network_image_shape": [height, width, channels],
        "pad": pad,
        "pixel_range": [0.0, 1.0],
        "stages": {
            name: None if stages is None else _stage_metadata(vae)
            for name, vae in zip(("stage1", "stage2"), stages or (None, None))
        },
        "signatures": _signature_table(sampler, pad),
        "generate_noise": GENERATE_NOISE,
        "versions": {
            "vae_balance": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }


def export_sampler(sampler_or_models, path, overwrite=False, config=None, pad=None):
    """Writes a TF SavedModel for sampling, loadable without vae_balance.

    Signatures (images float32 in [0, 1] at the dataset's native size: the
    network's ``pad`` border is cropped off, and added back as zeros to the
    images ``encode`` and ``reconstruct`` take, as the data loader does). Each
    returns a dict, also when called from Python:

    - ``sample(u)``: stage-2 noise ``u`` (n, u_dim) -> ``{"images"}``. Also
      the ``serving_default`` signature (input ``u``, as before).
    - ``generate(num_samples, seed)``: two int64 scalars -> ``{"images"}``
      of ``num_samples`` images from ``u = tf.random.stateless_normal(
      [num_samples, u_dim], seed=[seed, 0], alg="philox")``: the same seed
      gives the same images in every process and any client language.
    - ``decode(z)``: stage-1 latents -> ``{"images"}`` (GEN-1 with z ~ N(0, I)).
    - ``encode(images)``: -> ``{"z_mean", "z_log_sigma"}``.
    - ``reconstruct(images)``: -> ``{"images"}``, decode(z_mean).
    - ``metadata()``: -> ``{"json"}``, a string scalar: `sampler_metadata`
      (config, latent sizes, shapes, pad, each stage's balance, final gamma^2
      and steps, versions). The same JSON is in ``assets.extra/vae_balance.json``;
      `read_sampler_metadata` reads either.

    ``encode`` and ``reconstruct`` need the stage-1 encoder (given by a
    pair of models, or ``TwoStageSampler(..., first_encoder=...)``).

    The SavedModel is written to a temporary folder beside ``path`` and renamed
    into place, so an interrupted export never leaves a partial one; a killed
    replacement leaves the previous export complete, put back in place by the
    next export (see `restore_interrupted_export`).

    Args:
        sampler_or_models: a `TwoStageSampler`, or ``(vae, vae2)`` (their
            balance state and optimizer steps go into the metadata).
        path: the SavedModel directory to create.
        overwrite: replace an existing ``path``; otherwise refuse.
        config: the run's `VAEConfig` (or its dict, e.g. ``config.json``):
            its ``pad`` is cropped and it is stored in the metadata. Without
            it, the metadata's ``config`` and ``preset`` are null and nothing
            is cropped unless ``pad`` is given.
        pad: pixels to crop per side; default ``config.pad``, else 0.

    Raises:
        ValueError: ``config`` does not match the models, or a bad ``pad``.
        FileExistsError: ``path`` exists and ``overwrite`` is False.

    Example:

    >>> export_sampler((vae, vae2), "sampler", config=config)
    >>> loaded = tf.saved_model.load("sampler")  # no vae_balance needed
    >>> images = loaded.generate(16, 0)["images"]  # (16, 28, 28, 1)
    >>> images = loaded.sample(tf.random.normal((16, 32)))["images"]
    >>> metadata = json.loads(loaded.metadata()["json"].numpy())
    """
    sampler, stages = _as_sampler(sampler_or_models)
    metadata = _metadata(sampler, stages, config, pad)
    text = json.dumps(metadata, indent=2, allow_nan=False) + "\n"
    pad = metadata["pad"]
    path = os.fspath(path)
    restore_interrupted_export(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"Export path {path!r} already exists; pass overwrite=True (CLI: "
            "--overwrite) to replace it, or choose another path."
        )

    def crop(images):
        images = tf.cast(images, tf.float32)
        if pad:
            images = images[:, pad:-pad, pad:-pad, :]
        return images

    def uncrop(images):  # the loader's zero border, on images in [0, 1]
        if pad:
            images = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return images

    def sample(u):
        return {"images": crop(sampler(u, training=False))}

    def generate(num_samples, seed):
        check = tf.debugging.assert_non_negative(
            num_samples, message="generate: num_samples must be >= 0"
        )
        with tf.control_dependencies([check]):
            shape = tf.stack([num_samples, tf.constant(sampler.latent_dim, tf.int64)])
        u = tf.random.stateless_normal(  # philox: the same on every device
            shape, seed=tf.stack([seed, tf.constant(0, tf.int64)]), alg="philox"
        )
        return sample(u)

    def decode(z):
        return {"images": crop(sampler.first_decoder(z, training=False))}

    archive = keras.export.ExportArchive()
    archive.track(sampler)
    u_spec = tf.TensorSpec((None, sampler.latent_dim), tf.float32, name="u")
    z_spec = tf.TensorSpec((None, _first_latent_dim(sampler)), tf.float32, name="z")
    # The first endpoint is also serving_default.
    archive.add_endpoint("sample", sample, input_signature=[u_spec])
    archive.add_endpoint(
        "generate",
        generate,
        input_signature=[
            tf.TensorSpec((), tf.int64, name="num_samples"),
            tf.TensorSpec((), tf.int64, name="seed"),
        ],
    )
    archive.add_endpoint("decode", decode, input_signature=[z_spec])
    encoder = sampler.first_encoder
    if encoder is not None:
        image_spec = tf.TensorSpec(
            (None, *metadata["image_shape"]), tf.float32, name="images"
        )

        def encode(images):
            z_mean, z_log_sigma = encoder(uncrop(images), training=False)
            return {
                "z_mean": tf.cast(z_mean, tf.float32),
                "z_log_sigma": tf.cast(z_log_sigma, tf.float32),
            }

        def reconstruct(images):
            z_mean, _ = encoder(uncrop(images), training=False)
            return decode(z_mean)

        archive.add_endpoint("encode", encode, input_signature=[image_spec])
        archive.add_endpoint("reconstruct", reconstruct, input_signature=[image_spec])
    archive.add_endpoint(
        METADATA_SIGNATURE, lambda: {"json": tf.constant(text)}, input_signature=[]
    )

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(os.path.abspath(path))
    staging = tempfile.mkdtemp(prefix=f".{name}.export-{os.getpid()}-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        os.makedirs(
            os.path.join(staging, os.path.dirname(METADATA_FILE)), exist_ok=True
        )
        with open(os.path.join(staging, METADATA_FILE), "w") as f:
            f.write(text)
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


def read_sampler_metadata(sampler):
    """The metadata dict of an exported sampler, or None for an older export.

    Args:
        sampler: a SavedModel directory (``assets.extra/vae_balance.json`` is
            read without loading the model; failing that, the model is loaded
            and its ``metadata`` signature called), or an object returned by
            ``tf.saved_model.load``.
    """
    if isinstance(sampler, (str, os.PathLike)):
        file = os.path.join(os.fspath(sampler), METADATA_FILE)
        if os.path.isfile(file):
            with open(file) as f:
                return json.load(f)
        sampler = tf.saved_model.load(os.fspath(sampler))
    signatures = getattr(sampler, "signatures", {})
    if METADATA_SIGNATURE not in signatures:
        return None
    text = signatures[METADATA_SIGNATURE]()["json"].numpy()
    return json.loads(text.decode("utf-8"))


def describe_signatures(loaded):
    """``{name: {"inputs": {...}, "outputs": {...}}}`` of a loaded SavedModel
    (dtype and shape of each tensor), for exports without metadata."""

    def describe(spec):
        shape = spec.shape.as_list() if spec.shape.rank is not None else None
        return _spec(spec.dtype.name, shape)

    table = {}
    for name, function in loaded.signatures.items():
        _, inputs = function.structured_input_signature
        table[name] = {
            "inputs": {key: describe(spec) for key, spec in sorted(inputs.items())},
            "outputs": {
                key: describe(spec)
                for key, spec in sorted(function.structured_outputs.items())
            },
        }
    return table


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
