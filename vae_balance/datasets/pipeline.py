"""The data pipeline: image datasets as tf.data pipelines of float32 in [0, 1].

One entry point for the training code, two steps:

>>> train_images = load_split("cifar10", "train")       # unbatched, (32, 32, 3)
>>> train = make_train_dataset(train_images, batch_size=100, seed=0)
>>> test = make_eval_dataset(load_split("cifar10", "test"), batch_size=100)

or both at once from a preset, ``train, test = load_dataset(config)``.

Every split is first read into a uint8 NumPy array ``(n, H, W, C)`` (or a
memory-mapped one for CelebA), so each dataset has a known cardinality
(`num_examples`) and a deterministic order. Sources, per `VAEConfig.dataset`:

- ``"cifar10"``: the official python batches (``cifar-10-batches-py/``, read
  with a restricted unpickler that only rebuilds dicts, lists, bytes and uint8
  NumPy arrays), else tensorflow-datasets ``cifar10``. ``jpeg_roundtrip=True``
  reproduces the reference code, which saved every image as a quality-75 JPEG
  (Pillow, like imageio) and read it back before training and FID.
- ``"celeb_a"``: a local ``img_align_celeba/`` folder with the official
  ``list_eval_partition.txt`` (or Kaggle's ``.csv``), else tfds ``celeb_a``.
  Both get the paper's crop (rows 45:173, cols 25:153, 128x128) and an
  antialiased bilinear resize to the preset's side (64), rounded to uint8 and
  cached as a ``.npy`` file (see `default_cache_dir`), so the 202,599 JPEGs
  are decoded once. The reference code split an unsorted directory listing;
  we use the official partition (162,770 / 19,867 / 19,962).
- ``"fashion_mnist"`` and ``"mnist"``: IDX files (``.gz`` or raw; Debian's
  ``/usr/share/datasets/fashion-mnist`` and Keras's ``~/.keras/datasets`` are
  found without a ``data_dir``), Keras's ``mnist.npz``, else tfds. The 28x28
  images are zero-padded by `config_padding` pixels per side to the preset's
  32x32 (the decoder needs a power-of-two side); `remove_padding` crops back.
- ``"folder"``: ``data_dir`` is a folder of PNG / JPEG / BMP images, all of
  one size (``data_dir/<split>/`` when present); see
  `vae_balance.datasets.arrays.from_folder`.
- NumPy arrays: `vae_balance.datasets.arrays.from_arrays`.

A dataset that is missing raises `DatasetNotFoundError` listing where it was
looked for and how to get it. tfds is only asked to download when the split
is not prepared and a 3-second connection probe to the download host
succeeds, so an offline machine fails in seconds instead of hanging.
Unreadable or inconsistent data raises `DataError` naming the file, or, with
``skip_bad=True``, is skipped with a logged count.
"""

import numpy as np
import tensorflow as tf

from vae_balance.config import PRESETS
from vae_balance.datasets import sources
from vae_balance.datasets.arrays import array_dataset, fit_to_shape, to_float
from vae_balance.datasets.formats import jpeg_roundtrip_images
from vae_balance.datasets.registry import (
    DATASETS,
    SPLITS,
    DataError,
    canonical_name,
    pad_box,
    padding,
)

# make_train_dataset shuffles the whole split when it fits in this buffer.
_SHUFFLE_BUFFER_BYTES = 4 << 30


def load_split(
    config_or_name,
    split="train",
    data_dir=None,
    *,
    source="auto",
    limit=None,
    dtype="float32",
    jpeg_roundtrip=False,
    cache_dir=None,
    skip_bad=False,
    download=True,
):
    """One split of a dataset as an unbatched `tf.data.Dataset` of images.

    Args:
        config_or_name: a `VAEConfig` (its ``dataset`` and ``image_shape``), a
            preset name, or a dataset name: "cifar10", "celeb_a",
            "fashion_mnist", "mnist" or "folder".
        split: "train", "validation" (CelebA and folders) or "test".
        data_dir: the local layout (see the module docstring) or a tfds data
            directory; None searches the dataset's `DatasetSpec.local_dirs`,
            then tfds's default directory. Required for "folder".
        source: "auto" (local files first, then tfds), "local" or "tfds".
        limit: keep only the first ``limit`` images (smoke runs). CelebA
            decodes only those and writes no cache.
        dtype: "float32" (images / 255, in [0, 1]) or "uint8" (0-255, four
            times less memory; `make_train_dataset` converts after shuffling).
        jpeg_roundtrip: CIFAR-10 only: re-encode every image as a quality-75
            JPEG and decode it, as the reference code did (default off).
        cache_dir: where CelebA's cropped and resized ``.npy`` cache goes.
            None: `default_cache_dir`.
        skip_bad: skip unreadable, missing or wrongly shaped images (logging
            how many) instead of raising `DataError`.
        download: let tfds download and prepare the dataset when it is not
            prepared yet and its host is reachable.

    Returns:
        A `tf.data.Dataset` of ``image_shape`` images (float32 in [0, 1] or
        uint8), in the dataset's order, with a known cardinality.

    Raises:
        DatasetNotFoundError: the data is neither on disk nor downloadable;
            the message lists where it looked and how to get it.
        DataError: a bad file (named), an empty split, a shape mismatch.
        ValueError: an unknown dataset, split, source or dtype.
    """
    request = _split_request(
        config_or_name,
        split,
        data_dir,
        source=source,
        limit=limit,
        skip_bad=skip_bad,
        cache_dir=cache_dir,
        download=download,
        dtype=dtype,
        jpeg_roundtrip=jpeg_roundtrip,
    )
    return _read_dataset(request, dtype, jpeg_roundtrip)


def _read_dataset(request, dtype, jpeg_roundtrip):
    """The `tf.data.Dataset` of a checked `sources.SplitRequest` (`load_split`)."""
    split = request.split
    images = sources.read_split(request)
    if len(images) == 0:
        raise DataError(f"The {split!r} split of {request.name} is empty (0 images).")
    if jpeg_roundtrip:
        images = jpeg_roundtrip_images(images)
    images = fit_to_shape(images, request.image_shape, f"{request.name} {split}")
    dataset = array_dataset(images)
    if dtype == "float32":
        dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset


def _split_request(
    config_or_name, split, data_dir, *, source, limit, dtype, jpeg_roundtrip, **options
):
    """The `sources.SplitRequest` of `load_split`'s arguments, all checked."""
    spec, image_shape = _resolve(config_or_name)
    _check_choice("split", split, SPLITS)
    _check_choice("source", source, ("auto", "local", "tfds"))
    _check_choice("dtype", dtype, ("float32", "uint8"))
    if split not in spec.splits:
        raise ValueError(
            f"{spec.name} has no {split!r} split; its splits are "
            f"{', '.join(spec.splits)}."
        )
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}.")
    if jpeg_roundtrip and spec.name != "cifar10":
        raise ValueError("jpeg_roundtrip reproduces the reference CIFAR-10 only.")
    if spec.name == "folder" and data_dir is None:
        raise ValueError('The "folder" dataset needs data_dir=<folder of images>.')
    return sources.SplitRequest(
        spec,
        split,
        data_dir,
        image_shape,
        source=source,
        limit=limit,
        **options,
    )


def load_dataset(
    config,
    data_dir=None,
    *,
    batch_size=None,
    seed=None,
    limit=None,
    eval_split="test",
    **load_options,
):
    """The training and evaluation pipelines of a preset, ready for ``fit``.

    Args:
        config: a `VAEConfig`, a preset name or a dataset name.
        data_dir: see `load_split`.
        batch_size: None: the config's ``batch_size`` (100 for a name).
        seed: the shuffling seed; None: the config's ``seed`` (0 for a name).
        limit: the first ``limit`` images of each split (smoke runs).
        eval_split: "test" (the FID protocol's real set) or "validation".
        **load_options: `load_split` keywords (source, jpeg_roundtrip, ...).

    Returns:
        ``(train, evaluation)``: `make_train_dataset` of the train split (full
        shuffled batches of float32 images) and `make_eval_dataset` of
        ``eval_split`` (in order, the last batch may be smaller). Their sizes:
        `num_examples` of the `load_split` datasets.
    """
    defaults = getattr(config, "batch_size", 100), getattr(config, "seed", 0)
    batch_size = defaults[0] if batch_size is None else batch_size
    seed = defaults[1] if seed is None else seed
    load_options.setdefault("dtype", "uint8")  # shuffled as uint8: 4x less memory
    train = load_split(config, "train", data_dir, limit=limit, **load_options)
    evaluation = load_split(config, eval_split, data_dir, limit=limit, **load_options)
    return (
        make_train_dataset(train, batch_size, seed),
        make_eval_dataset(evaluation, batch_size),
    )


def make_train_dataset(
    images,
    batch_size,
    seed,
    *,
    shuffle=True,
    shuffle_buffer=None,
    drop_remainder=True,
    reshuffle_each_iteration=True,
):
    """Shuffled (seeded, reshuffled every epoch) full batches, prefetched.

    Args:
        images: an unbatched dataset of uint8 or float32 images (a
            `load_split` or `from_arrays` dataset). uint8 is converted to
            float32 / 255 after batching.
        batch_size: images per batch.
        seed: the shuffle seed: the same seed gives the same epochs.
        shuffle: False keeps the order (every epoch alike).
        shuffle_buffer: None: the whole dataset when it fits in 4 GiB (a
            perfect shuffle, like Keras on arrays), else as many as fit.
        drop_remainder: full batches only (the paper's batch of 100).
        reshuffle_each_iteration: False gives every iteration the order of
            the first (one epoch of a resumable stream,
            `vae_balance.datasets.stream`).

    Returns:
        A batched `tf.data.Dataset` of float32 images in [0, 1].
    """
    spec = _image_spec(images)
    count = int(images.cardinality())
    if drop_remainder and 0 <= count < batch_size:
        raise DataError(
            f"{count} images are fewer than one batch of {batch_size}; lower "
            "batch_size or raise limit."
        )
    if shuffle:
        if shuffle_buffer is None:
            per_image = int(np.prod(spec.shape)) * spec.dtype.size
            shuffle_buffer = max(1, _SHUFFLE_BUFFER_BYTES // per_image)
            if count >= 0:
                shuffle_buffer = min(shuffle_buffer, count)
        images = images.shuffle(
            shuffle_buffer,
            seed=seed,
            reshuffle_each_iteration=reshuffle_each_iteration,
        )
    batches = images.batch(batch_size, drop_remainder=drop_remainder)
    if spec.dtype == tf.uint8:
        batches = batches.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(images, batch_size):
    """Batches in order (the last one may be smaller) of float32 images."""
    spec = _image_spec(images)
    batches = images.batch(batch_size)
    if spec.dtype == tf.uint8:
        batches = batches.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def num_examples(dataset):
    """The number of elements of a dataset with a known, finite cardinality."""
    count = int(dataset.cardinality())
    if count < 0:
        raise ValueError(
            "The dataset's size is unknown or infinite; use a load_split or "
            "from_arrays dataset before repeat() or filter()."
        )
    return count


def config_padding(config_or_name):
    """Zero pixels the loader adds on each side of a config's or name's images.

    Args:
        config_or_name: a `VAEConfig`, a preset name or a dataset name.

    Returns:
        2 for MNIST-like 28x28 at 32x32, else 0 (`registry.padding`).
    """
    spec, image_shape = _resolve(config_or_name)
    return padding(spec.name, image_shape) or 0


def remove_padding(images, config_or_padding):
    """Crops the loader's zero border off ``(..., H, W, C)`` images.

    The one crop of the package (display, evaluation and FID at the native
    size, e.g. 28x28): NumPy arrays and tensors alike.

    Args:
        images: ``(..., H, W, C)`` images as the network sees them.
        config_or_padding: pixels per side (an int), ``(top, bottom, left,
            right)``, or a `VAEConfig`, preset name or dataset name (see
            `config_padding`).

    Returns:
        The images without the border (the same object when it is 0).
    """
    if isinstance(config_or_padding, (int, np.integer, tuple, list)):
        box = pad_box(config_or_padding)
    elif hasattr(config_or_padding, "pad"):  # a VAEConfig: its checked pad
        box = pad_box(config_or_padding.pad)
    else:
        box = pad_box(config_padding(config_or_padding))
    if not any(box):
        return images
    top, bottom, left, right = box
    height, width = images.shape[-3], images.shape[-2]
    return images[..., top : height - bottom, left : width - right, :]


def _resolve(config_or_name):
    """(dataset spec, image shape or None) from a config, preset or name."""
    if isinstance(config_or_name, str):
        spec = DATASETS.get(canonical_name(config_or_name))
        if spec is not None:
            return spec, spec.image_shape
        if config_or_name not in PRESETS:
            raise ValueError(
                f"Unknown dataset {config_or_name!r}. Valid: "
                f"{', '.join(DATASETS)}, or a preset name ({', '.join(PRESETS)})."
            )
        config_or_name = PRESETS[config_or_name]
    name = canonical_name(config_or_name.dataset)
    if name not in DATASETS:
        raise ValueError(
            f"Config {config_or_name.name!r} has dataset {name!r}, which has no "
            f"loader (valid: {', '.join(DATASETS)}); use from_arrays instead."
        )
    return DATASETS[name], tuple(config_or_name.image_shape)


def _check_choice(what, value, choices):
    if value not in choices:
        raise ValueError(f"Unknown {what} {value!r}; choose from {', '.join(choices)}.")


def _image_spec(dataset):
    spec = dataset.element_spec
    if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 3:
        raise ValueError(
            f"Expected an unbatched dataset of (H, W, C) images, got {spec}."
        )
    return spec
