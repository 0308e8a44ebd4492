"""What an exported sampler says about itself: the metadata and signatures.

`sampler_metadata` is the JSON `vae_balance.export.savedmodel.export_sampler` stores in
the SavedModel (``metadata`` signature and ``assets.extra/vae_balance.json``);
`read_sampler_metadata` and `describe_signatures` read an export back.
"""

import datetime
import json
import os
import platform
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from vae_balance._version import __version__
from vae_balance.config import VAEConfig
from vae_balance.datasets.registry import pad_box, pad_value
from vae_balance.model.vae import BalancedVAE
from vae_balance.sampling.gmm import GMM_NOISE
from vae_balance.sampling.noise import SECOND_STAGE_NOISE
from vae_balance.sampling.two_stage import TwoStageSampler

METADATA_FORMAT_VERSION = 1
METADATA_SIGNATURE = "metadata"
METADATA_FILE = os.path.join("assets.extra", "vae_balance.json")
# How `generate(num_samples, seed)` draws its noise (also in the metadata):
# `vae_balance.sampling.noise.second_stage_noise`, as every GEN-2 sampler.
GENERATE_NOISE = SECOND_STAGE_NOISE


def sampler_and_stages(sampler_or_models):
    """``(sampler, stages)`` of what `export_sampler` takes.

    Args:
        sampler_or_models: a `TwoStageSampler`, or ``(vae, vae2)``.

    Returns:
        The sampler, and the ``(vae, vae2)`` pair or None.

    Raises:
        TypeError: for anything else.
    """
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


def first_latent_dim(sampler):
    """The stage-1 latent size (the first decoder's input)."""
    return int(sampler.first_decoder.inputs[0].shape[-1])


def _resolve_pad(config, pad, sampler):
    """The border the export crops: ``pad``, else the config's, else 0."""
    if config is not None:
        found = {
            "image_shape": (tuple(config.image_shape), sampler.image_shape),
            "latent_dim": (config.latent_dim, first_latent_dim(sampler)),
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
        if pad is not None and pad_value(pad) != config.pad:
            raise ValueError(f"pad={pad} disagrees with the config's pad={config.pad}.")
    if pad is None:
        pad = 0 if config is None else config.pad
    top, bottom, left, right = pad_box(pad)
    height, width = sampler.image_shape[:2]
    if (
        min(top, bottom, left, right) < 0
        or top + bottom >= height
        or (left + right >= width)
    ):
        raise ValueError(
            f"pad={pad} must be >= 0 and leave pixels of the {height}x{width} images."
        )
    return pad_value(pad)


def native_shape(image_shape, pad):
    """``[height, width, channels]`` of ``image_shape`` without ``pad``."""
    top, bottom, left, right = pad_box(pad)
    height, width, channels = image_shape
    return [height - top - bottom, width - left - right, channels]


def _json_pad(pad):
    """``pad`` as JSON: an int, or ``[top, bottom, left, right]``."""
    return list(pad) if isinstance(pad, tuple) else pad


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


def _signature_table(sampler, pad, gmm=None, matched=None):
    """What each signature takes and returns, in the metadata's terms."""
    native = [None, *native_shape(sampler.image_shape, pad)]
    images = {"images": _spec("float32", native)}
    z_dim = first_latent_dim(sampler)
    table = {
        "sample": {"inputs": {"u": _spec("float32", [None, sampler.latent_dim])}},
        "generate": {
            "inputs": {"num_samples": _spec("int64", []), "seed": _spec("int64", [])}
        },
        "decode": {"inputs": {"z": _spec("float32", [None, z_dim])}},
    }
    if gmm is not None:
        table["generate_gmm"] = dict(table["generate"])
    if matched is not None:
        table["generate_matched"] = dict(table["generate"])
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
    ``network_image_shape``, ``pad`` (an int, or ``[top, bottom, left,
    right]``), ``data`` (your own images: ``kind``, ``path``,
    ``native_shape`` of the files, ``image_size`` and ``center_crop``; null
    for the presets' datasets), ``pixel_range``, ``stages`` (per stage:
    ``balance``, ``running_rule``, ``kl_weight``, the final ``gamma_squared``
    and ``running_mse``, ``steps`` = optimizer iterations; null for a
    `TwoStageSampler`), ``signatures`` (inputs and outputs of each),
    ``generate_noise``, ``gmm`` (null without a mixture, else its
    ``num_components``, ``latent_dim``, ``noise`` = how ``generate_gmm``
    draws, and ``fit``: how it was fitted), ``matched`` (null without
    ``generate_matched``, else its map's ``center``, ``scale`` and
    ``target_variances`` per dimension, and the ``reference`` draws it was
    measured on), ``versions`` (vae_balance,
    tensorflow, keras, python) and ``exported_at`` (UTC).
    """
    sampler, stages = sampler_and_stages(sampler_or_models)
    return build_metadata(sampler, stages, config, pad)


def _data_metadata(config):
    """Your own images: the source and the files' native size; else null."""
    if config is None or not config.data:
        return None
    keys = ("kind", "path", "native_shape", "image_size", "center_crop")
    return {key: config.data.get(key) for key in keys}


def _gmm_metadata(gmm):
    if gmm is None:
        return None
    return {
        "num_components": gmm.num_components,
        "latent_dim": gmm.latent_dim,
        "covariance_type": "full",
        "noise": GMM_NOISE,
        "fit": gmm.info,
    }


def build_metadata(sampler, stages, config, pad, gmm=None, matched=None):
    """`sampler_metadata` of a resolved ``(sampler, stages)`` pair."""
    config = _as_config(config)
    pad = _resolve_pad(config, pad, sampler)
    return {
        "format": "vae_balance.sampler",
        "format_version": METADATA_FORMAT_VERSION,
        "preset": None if config is None else config.name,
        "config": None if config is None else config.to_dict(),
        "latent_dim": first_latent_dim(sampler),
        "u_dim": sampler.latent_dim,
        "image_shape": native_shape(sampler.image_shape, pad),
        "network_image_shape": list(sampler.image_shape),
        "pad": _json_pad(pad),
        "data": _data_metadata(config),
        "pixel_range": [0.0, 1.0],
        "stages": {
            name: None if stages is None else _stage_metadata(vae)
            for name, vae in zip(("stage1", "stage2"), stages or (None, None))
        },
        "signatures": _signature_table(sampler, pad, gmm, matched),
        "generate_noise": GENERATE_NOISE,
        "gmm": _gmm_metadata(gmm),
        "matched": None if matched is None else matched.metadata(),
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
