"""The whole job on your own images: ``vae_balance.train(data, workdir)``.

>>> import vae_balance
>>> result = vae_balance.train("faces/", "runs/faces", epochs=20, epochs2=40)
>>> result.sampler_path
'runs/faces/sampler'

``data`` is a folder of images, an ``.npz`` / ``.npy`` file, ``tfds:NAME``
or a NumPy array (`vae_balance.datasets.user_data`). `config_for_data` makes
the `VAEConfig`: a preset's (default `DEFAULT_PRESET`) schedule and widths,
the network fitted to the images (padded to the size it needs; the export
crops the border back), and the ``data`` block that a resume, ``evaluate``
and ``export`` read the same images with. ``python -m vae_balance train
--data PATH`` is the same call (`for_command_line`).
"""

import dataclasses
import os
import re

from vae_balance.config import VAEConfig, get_preset
from vae_balance.datasets import data_source, image_shapes, user_data
from vae_balance.datasets.image_folder import BadImageError
from vae_balance.datasets.registry import DataError, pad_box
from vae_balance.model.builders import build_second_stage, build_vae
from vae_balance.training import job
from vae_balance.workdir import Workdir

# Without a preset: the README's CPU-sized job (narrow ResNet, 4 + 8 epochs),
# or Dai & Wipf's Infogan network for --network infogan.
DEFAULT_PRESET = "fashion_mnist"
DEFAULT_INFOGAN_PRESET = "fashion_mnist_infogan"
_CONFIG_FIELDS = {field.name for field in dataclasses.fields(VAEConfig)}


def config_for_data(
    data, preset=None, *, network=None, latent_dim=None, base_filters=None, name=None
):
    """The `VAEConfig` of a preset fitted to a `user_data.UserData`.

    Args:
        data: the `user_data.UserData` (its image shape and ``data`` block).
        preset: a preset name or `VAEConfig` giving the schedule, widths and
            balancing; None: `DEFAULT_PRESET` (`DEFAULT_INFOGAN_PRESET` for
            ``network="infogan"``).
        network: "resnet" (padded to the next power-of-two square) or
            "infogan" (padded to multiples of 4); None: the preset's.
        latent_dim, base_filters: overrides of the preset's.
        name: the run's name; None: the folder's or file's name.

    Returns:
        A `VAEConfig` whose ``image_shape`` is the network's, ``pad`` the
        ``(top, bottom, left, right)`` border and ``data`` the block.
    """
    base = get_preset(preset or default_preset(network))
    network = network or base.network
    shape = image_shapes.network_shape(data.image_shape, network)
    overrides = {
        "name": name or _run_name(data.block["path"]),
        "dataset": data.block["kind"],
        "image_shape": shape,
        "pad": image_shapes.centre_pad(data.image_shape, shape),
        "network": network,
        "data": data.block,
    }
    if latent_dim is not None:
        overrides["latent_dim"] = int(latent_dim)
    if base_filters is not None:
        overrides["base_filters"] = int(base_filters)
    return dataclasses.replace(base, **overrides)


def _run_name(path):
    stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.") or "images"


def parameter_counts(config):
    """``{"encoder", "decoder", "stage2"}`` parameter counts of a config."""
    vae, second = build_vae(config), build_second_stage(config)
    return {
        "encoder": vae.encoder.count_params(),
        "decoder": vae.decoder.count_params(),
        "stage2": second.encoder.count_params() + second.decoder.count_params(),
    }


def describe(config, data):
    """The lines printed at the start: the data, the shapes, the parameters."""
    block = config.data
    height, width, channels = data.image_shape
    counts = parameter_counts(config)
    top, bottom, left, right = pad_box(config.pad)
    if block["split"] == "test":
        split = "its test split"
    else:
        split = f"val_fraction {block['val_fraction']:g}"
    network_shape = "x".join(map(str, config.image_shape))
    stage1 = counts["encoder"] + counts["decoder"]
    return [
        f"[data] {block['kind']} {block['path']}: {block['num_train']} training "
        f"and {block['num_held_out']} held-out images ({split}), "
        f"{height}x{width}x{channels}",
        f"[model] {config.network} at {network_shape} (zero padding top, "
        f"bottom, left, right: {top}, {bottom}, {left}, {right}; cropped back "
        f"on export); latent_dim {config.latent_dim}, base_filters "
        f"{config.base_filters}",
        f"[model] parameters: stage 1 {stage1:,} (encoder {counts['encoder']:,}, "
        f"decoder {counts['decoder']:,}); stage 2 {counts['stage2']:,}",
    ]


def default_preset(network=None):
    """The preset used without ``--preset``: `DEFAULT_PRESET`, or
    `DEFAULT_INFOGAN_PRESET` for the Infogan network."""
    return DEFAULT_INFOGAN_PRESET if network == "infogan" else DEFAULT_PRESET


def prepare(
    data,
    workdir,
    preset=None,
    *,
    image_size=None,
    center_crop=False,
    val_fraction=data_source.DEFAULT_VAL_FRACTION,
    network=None,
    latent_dim=None,
    base_filters=None,
    skip_bad=False,
    allow_config_change=False,
    overrides=None,
    log=print,
):
    """``(config, UserData)``: the images read and split, the config made,
    and a changed source refused against ``workdir``'s ``config.json``."""
    base = get_preset(preset or default_preset(network), **(overrides or {}))
    images = user_data.read_source(
        data,
        image_size=image_size,
        center_crop=center_crop,
        val_fraction=val_fraction,
        batch_size=base.batch_size,
        skip_bad=skip_bad,
        log=log,
    )
    config = config_for_data(
        images,
        base,
        network=network,
        latent_dim=latent_dim,
        base_filters=base_filters,
    )
    previous = Workdir(workdir).read_config() if workdir else None
    if previous and previous.get("data") and not allow_config_change:
        user_data.check_unchanged(previous["data"], images.block, workdir)
    return config, images


def train(data, workdir, preset=None, **options):
    """Trains both stages on your own images and exports the sampler.

    Args:
        data: a folder of images, an ``.npz`` / ``.npy`` path, ``tfds:NAME``
            or a NumPy array ``(N, H, W[, C])`` (uint8, or floats in [0, 1]).
        workdir: the output directory; the same call resumes.
        preset: the preset whose schedule and widths are used (default
            `DEFAULT_PRESET`).
        **options: `VAEConfig` fields (``epochs=20``, ``batch_size=64``...),
            the data options of `prepare` (``image_size``, ``center_crop``,
            ``val_fraction``, ``network``, ``latent_dim``, ``base_filters``,
            ``skip_bad``, ``allow_config_change``) and the options of
            `vae_balance.training.job.train` (``limit``, ``grid_every``,
            ``checkpoint_minutes``...).

    Returns:
        The `vae_balance.training.job.RunResult`; ``result.sampler_path`` is
        the exported sampler.
    """
    fields = {k: options.pop(k) for k in list(options) if k in _CONFIG_FIELDS}
    data_options = {
        k: options.pop(k)
        for k in list(options)
        if k
        in (
            "image_size",
            "center_crop",
            "val_fraction",
            "network",
            "latent_dim",
            "base_filters",
        )
    }
    for key in ("latent_dim", "base_filters", "network"):
        if key in fields:
            data_options[key] = fields.pop(key)
    config, images = prepare(
        data,
        workdir,
        preset,
        skip_bad=options.get("skip_bad", False),
        allow_config_change=options.get("allow_config_change", False),
        overrides=fields,
        **data_options,
    )
    for line in describe(config, images):
        print(line)
    box = image_shapes.centre_pad(images.image_shape, config.image_shape)
    return job.train(
        config,
        workdir,
        train_data=image_shapes.pad_images(images.train, box),
        test_images=image_shapes.pad_images(images.held_out, box),
        **options,
    )


def for_command_line(args, base):
    """``train --data PATH``: ``(config, job.train keywords)`` of the command
    line, ``base`` being the preset's config with the flags applied; the data
    summary and parameter counts are printed."""
    try:
        if args.val_fraction is not None and not 0 < args.val_fraction < 1:
            raise ValueError(
                f"--val-fraction must be in (0, 1), got {args.val_fraction}"
            )
        config, images = prepare(
            args.data,
            args.workdir,
            base,
            image_size=args.image_size,
            center_crop=args.center_crop,
            val_fraction=args.val_fraction or data_source.DEFAULT_VAL_FRACTION,
            network=args.network,
            latent_dim=args.latent_dim,
            base_filters=args.width,
            skip_bad=args.skip_bad,
            allow_config_change=args.allow_config_change,
        )
    except (DataError, FileNotFoundError, ValueError) as error:
        hint = " (--skip-bad skips bad image files)" * (
            isinstance(error, BadImageError) and not args.skip_bad
        )
        raise SystemExit(f"error: {error}{hint}") from None
    for line in describe(config, images):
        print(line, flush=True)
    box = image_shapes.centre_pad(images.image_shape, config.image_shape)
    return config, {
        "train_data": image_shapes.pad_images(images.train, box),
        "test_images": image_shapes.pad_images(images.held_out, box),
    }
