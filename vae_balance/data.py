"""Image datasets as tf.data pipelines of float32 images in [0, 1].

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
  images are zero-padded by `get_padding` pixels per side to the preset's
  32x32 (the decoder needs a power-of-two side); `remove_padding` crops back.
- ``"folder"``: ``data_dir`` is a folder of PNG / JPEG / BMP images, all of
  one size (``data_dir/<split>/`` when present); see `from_folder`.
- NumPy arrays: `from_arrays`.

A dataset that is missing raises `DatasetNotFoundError` listing where it was
looked for and how to get it. tfds is only asked to download when the split
is not prepared and a 3-second connection probe to the download host
succeeds, so an offline machine fails in seconds instead of hanging.
Unreadable or inconsistent data raises `DataError` naming the file, or, with
``skip_bad=True``, is skipped with a logged count.
"""

import concurrent.futures
import gzip
import hashlib
import io
import logging
import math
import os
import pickle
import socket
import threading
import zlib

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

# Per dataset: the native image shape, the splits, the shape the presets feed
# the networks, the tfds name and the host tfds downloads it from.
DATASETS = {
    "cifar10": {
        "native_shape": (32, 32, 3),
        "image_shape": (32, 32, 3),
        "splits": ("train", "test"),
        "tfds_name": "cifar10",
        "host": "www.cs.toronto.edu",
    },
    "celeb_a": {
        "native_shape": (218, 178, 3),
        "image_shape": (64, 64, 3),
        "splits": ("train", "validation", "test"),
        "tfds_name": "celeb_a",
        "host": "drive.google.com",
    },
    "fashion_mnist": {
        "native_shape": (28, 28, 1),
        "image_shape": (32, 32, 1),
        "splits": ("train", "test"),
        "tfds_name": "fashion_mnist",
        "host": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    },
    "mnist": {
        "native_shape": (28, 28, 1),
        "image_shape": (32, 32, 1),
        "splits": ("train", "test"),
        "tfds_name": "mnist",
        "host": "storage.googleapis.com",
    },
    "folder": {
        "native_shape": None,
        "image_shape": None,
        "splits": ("train", "validation", "test"),
        "tfds_name": None,
        "host": None,
    },
}
_ALIASES = {"celeba": "celeb_a", "cifar": "cifar10", "fashion": "fashion_mnist"}

# The paper's CelebA crop (paper-notes section 5): rows 45:173, cols 25:153.
CELEBA_CROP = (45, 173, 25, 153)
CELEBA_PARTITION = {"train": 0, "validation": 1, "test": 2}

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist#get-the-data"
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"

# Directories searched when no data_dir is given (after them, tfds's default).
LOCAL_DIRS = {
    "fashion_mnist": (
        "/usr/share/datasets/fashion-mnist",  # Debian: dataset-fashion-mnist
        "~/.keras/datasets/fashion-mnist",  # keras.datasets.fashion_mnist
    ),
    "mnist": ("/usr/share/datasets/mnist", "~/.keras/datasets"),
    "cifar10": ("~/.keras/datasets",),
    "celeb_a": (),
}

# Arrays up to this size become one in-memory tensor; larger ones (CelebA
# train, 2 GB) are streamed from the memory-mapped cache in chunks.
_IN_MEMORY_BYTES = 1 << 30
# make_train_dataset shuffles the whole split when it fits in this buffer.
_SHUFFLE_BUFFER_BYTES = 4 << 30
_CACHE_VERSION = "v1"


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not on disk and cannot be downloaded now."""


class DataError(ValueError):
    """A file or array holds something the loader cannot use."""


# ------------------------------------------------------------------ public API
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
        data_dir: where the data is: the local layout (see the module
            docstring), or a tfds data directory. None searches `LOCAL_DIRS`
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
    name, image_shape = _resolve(config_or_name)
    _check_choice("split", split, SPLITS)
    _check_choice("source", source, ("auto", "local", "tfds"))
    _check_choice("dtype", dtype, ("float32", "uint8"))
    if split not in DATASETS[name]["splits"]:
        raise ValueError(
            f"{name} has no {split!r} split; its splits are "
            f"{', '.join(DATASETS[name]['splits'])}."
        )
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}.")
    if jpeg_roundtrip and name != "cifar10":
        raise ValueError("jpeg_roundtrip reproduces the reference CIFAR-10 only.")

    options = {
        "name": name,
        "limit": limit,
        "skip_bad": skip_bad,
        "cache_dir": cache_dir,
    }
    if name == "folder":
        if data_dir is None:
            raise ValueError('The "folder" dataset needs data_dir=<folder of images>.')
        images = _folder_split(data_dir, split, image_shape, limit, skip_bad)
    else:
        images = _read_split(
            name, split, data_dir, source, download, image_shape, options
        )
    if len(images) == 0:
        raise DataError(f"The {split!r} split of {name} is empty (0 images).")
    if jpeg_roundtrip:
        images = jpeg_roundtrip_images(images)
    images = _fit_to_shape(images, image_shape, f"{name} {split}")
    dataset = _array_dataset(images)
    if dtype == "float32":
        dataset = dataset.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset


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
    images, batch_size, seed, *, shuffle=True, shuffle_buffer=None, drop_remainder=True
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
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    batches = images.batch(batch_size, drop_remainder=drop_remainder)
    if spec.dtype == tf.uint8:
        batches = batches.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(images, batch_size):
    """Batches in order (the last one may be smaller) of float32 images."""
    spec = _image_spec(images)
    batches = images.batch(batch_size)
    if spec.dtype == tf.uint8:
        batches = batches.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
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


def from_arrays(images, *, image_shape=None):
    """An unbatched dataset of float32 images in [0, 1] from a NumPy array.

    Args:
        images: ``(n, H, W)`` or ``(n, H, W, C)``; uint8 (divided by 255) or
            floats already in [0, 1].
        image_shape: the shape to deliver; smaller images are zero-padded
            centrally (like MNIST's 28 -> 32), others must match.

    Raises:
        DataError: NaN or values outside [0, 1] (naming the first bad image
            index), another dtype, a wrong shape or no images.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(
            f"images must be (n, H, W) or (n, H, W, C), got shape {images.shape}."
        )
    if len(images) == 0:
        raise DataError("images is empty (0 images).")
    if images.dtype == np.uint8:
        images = _fit_to_shape(images, image_shape, "images")
        return _array_dataset(images).map(_to_float)
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(
            f"images must be uint8 (0-255) or floats in [0, 1], got dtype "
            f"{images.dtype}; e.g. images.astype('float32') / 255."
        )
    flat = images.reshape(len(images), -1)
    bad = np.isnan(flat).any(axis=1)
    if bad.any():
        raise DataError(f"images[{int(np.argmax(bad))}] contains NaN values.")
    bad = (flat < 0).any(axis=1) | (flat > 1).any(axis=1)
    if bad.any():
        index = int(np.argmax(bad))
        raise DataError(
            f"images[{index}] has values outside [0, 1] (min "
            f"{flat[index].min():g}, max {flat[index].max():g}); float images "
            "must be in [0, 1] (divide 0-255 images by 255)."
        )
    images = _fit_to_shape(images.astype(np.float32), image_shape, "images")
    return _array_dataset(images)


def from_folder(path, *, image_shape=None, limit=None, skip_bad=False, dtype="float32"):
    """An unbatched dataset of the PNG / JPEG / BMP images under a folder.

    Files are found recursively and sorted by path; files with other
    extensions are ignored (their count is logged). All images must have one
    shape: ``image_shape`` if given (smaller images are zero-padded centrally),
    else the first image's.

    Raises:
        DataError: an unreadable or truncated image, or one of another size or
            channel count (naming the file), unless ``skip_bad``.
    """
    _check_choice("dtype", dtype, ("float32", "uint8"))
    files = _image_files(path)
    images = _decode_folder(files, image_shape, path, limit, skip_bad)
    if len(images) == 0:
        raise DataError(f"No usable images in {path}.")
    images = _fit_to_shape(images, image_shape, str(path))
    dataset = _array_dataset(images)
    return dataset.map(_to_float) if dtype == "float32" else dataset


def loader_padding(dataset, image_shape):
    """Zero pixels the loader adds on each side of a dataset's native images to
    reach ``image_shape``: 2 for 28x28 Fashion-MNIST / MNIST at 32x32, 0 for
    CIFAR-10 and CelebA (cropped and resized instead); None where the native
    size is not known in advance (folders, unknown names). `VAEConfig` checks
    its ``pad`` against this, so the two cannot disagree."""
    name = _ALIASES.get(dataset, dataset)
    native = DATASETS.get(name, {}).get("native_shape")
    if native is None or image_shape is None:
        return None
    if name == "celeb_a":
        return 0
    return max(0, (int(image_shape[0]) - native[0]) // 2)


def get_padding(config_or_name):
    """Zero pixels added on each side: 2 for MNIST-like 28x28 at 32x32, else 0."""
    name, image_shape = _resolve(config_or_name)
    return loader_padding(name, image_shape) or 0


def remove_padding(images, config_or_padding):
    """Crops the `get_padding` border off ``(..., H, W, C)`` images (for display
    and evaluation at the native 28x28). Accepts a config, a name or an int."""
    if isinstance(config_or_padding, (int, np.integer)):
        padding = int(config_or_padding)
    else:
        padding = get_padding(config_or_padding)
    if padding == 0:
        return images
    return images[..., padding:-padding, padding:-padding, :]


def default_cache_dir():
    """``$VAE_BALANCE_CACHE_DIR``, else ``$XDG_CACHE_HOME/vae_balance``, else
    ``~/.cache/vae_balance``."""
    if os.environ.get("VAE_BALANCE_CACHE_DIR"):
        return os.environ["VAE_BALANCE_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.join(os.path.expanduser(base), "vae_balance")


def celeba_crop_resize(images, side=64):
    """The paper's CelebA preprocessing of uint8 ``(n, 218, 178, 3)`` images.

    Crops rows 45:173, cols 25:153 (128x128), resizes to ``side`` with
    antialiased bilinear interpolation and rounds back to uint8.
    """
    top, bottom, left, right = CELEBA_CROP
    crops = tf.convert_to_tensor(images)[:, top:bottom, left:right, :]
    resized = tf.image.resize(
        tf.cast(crops, tf.float32), (side, side), method="bilinear", antialias=True
    )
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def jpeg_roundtrip_images(images, quality=75):
    """Each uint8 image saved as a JPEG (Pillow, ``quality``) and decoded back.

    The reference code's CIFAR-10 preprocessing (imageio's default quality 75).
    """
    from PIL import Image

    out = np.empty_like(images)
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
            buffer, format="JPEG", quality=quality
        )
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[index] = np.asarray(decoded).reshape(image.shape)
    return out


# -------------------------------------------------------------- file formats
class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds only the types a CIFAR-10 python batch holds.

    The batches are Python 2 pickles of a dict of bytes keys, lists, bytes and
    one uint8 NumPy array. Opcodes build dicts, lists, tuples, strings and
    numbers without any global; the only globals allowed are the ones NumPy's
    own pickles name (under NumPy 1 and 2 module paths) and Python 3's way of
    pickling bytes at protocol 2. Anything else raises before it can run.
    """

    def find_class(self, module, name):
        allowed = _allowed_pickle_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: not part of the CIFAR-10 "
                "batch format (possibly a malicious pickle)"
            )
        return allowed[(module, name)]

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id")


def _safe_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refused an object dtype")
    return dtype


def _safe_scalar(dtype, data=None):
    # NumPy pickles a scalar (np.int64(3), a label re-pickled by a user) as
    # multiarray.scalar(dtype, raw bytes); only non-object dtypes are rebuilt.
    from numpy._core import multiarray

    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("refused a NumPy scalar of an object dtype")
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("refused a NumPy scalar without raw bytes")
    return multiarray.scalar(dtype, data)


def _latin1_encode(text, encoding="latin1"):
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused _codecs.encode other than latin1")
    return text.encode("latin1")


def _allowed_pickle_globals():
    from numpy._core import multiarray, numeric

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _safe_dtype}
    for package in ("numpy.core", "numpy._core"):  # NumPy 1 and NumPy 2 names
        allowed[(package + ".multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(package + ".numeric", "_frombuffer")] = numeric._frombuffer
        allowed[(package + ".multiarray", "scalar")] = _safe_scalar
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


def read_cifar_batch(path):
    """Images and labels of one CIFAR-10 python batch, read safely.

    Returns:
        ``(images, labels)``: uint8 ``(n, 32, 32, 3)`` and int64 ``(n,)``.

    Raises:
        DataError: a pickle that is not a CIFAR-10 batch, is truncated, or
            names anything but the format's types (nothing in it is run).
    """
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read the CIFAR-10 batch: {error}") from None
    try:
        # From memory: a corrupt length field cannot make the unpickler ask
        # the file for gigabytes.
        batch = _RestrictedUnpickler(io.BytesIO(content), encoding="bytes").load()
    except Exception as error:  # any malformed pickle, whatever it raises
        raise DataError(
            f"{path}: not a readable CIFAR-10 batch: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: a CIFAR-10 batch is a dict, got {type(batch)}.")
    batch = {
        k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in batch.items()
    }
    data, labels = batch.get("data"), batch.get("labels")
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3072
        and isinstance(labels, list)
        and len(labels) == len(data)
        and all(_is_label(label) for label in labels)
    ):
        raise DataError(
            f"{path}: expected b'data' uint8 (n, 3072) and n b'labels' in 0-9, got "
            f"data {getattr(data, 'shape', type(data))} "
            f"{getattr(data, 'dtype', '')} and {type(labels).__name__} labels."
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel-major
    return np.ascontiguousarray(images), np.asarray(labels, np.int64)


def _is_label(value):
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, bool)
        and 0 <= value < 10
    )


def read_idx(path):
    """A NumPy uint8 array from an IDX file (MNIST format), gzipped or raw."""
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as file:
            content = file.read()
    except (OSError, EOFError, zlib.error) as error:  # zlib: corrupt .gz data
        raise DataError(f"{path}: cannot read the IDX file: {error}") from None
    if len(content) < 4 or content[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number).")
    if content[2] != 0x08:
        raise DataError(f"{path}: IDX type {content[2]:#x}, expected uint8 (0x08).")
    ndim = content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path}: truncated IDX header.")
    shape = tuple(
        int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = math.prod(shape)  # exact: np.prod would overflow on junk
    if len(content) - header != expected:
        raise DataError(
            f"{path}: IDX header says {shape} ({expected} bytes) but the file "
            f"holds {len(content) - header} bytes (truncated or corrupt)."
        )
    return np.frombuffer(content, np.uint8, offset=header).reshape(shape)


# ----------------------------------------------------------------- resolving
def _resolve(config_or_name):
    """(dataset name, image shape or None) from a config, preset or name."""
    if isinstance(config_or_name, str):
        key = _ALIASES.get(config_or_name, config_or_name)
        if key in DATASETS:
            shape = DATASETS[key]["image_shape"]
            return key, shape
        from vae_balance.presets import PRESETS

        if config_or_name not in PRESETS:
            raise ValueError(
                f"Unknown dataset {config_or_name!r}. Valid: "
                f"{', '.join(DATASETS)}, or a preset name ({', '.join(PRESETS)})."
            )
        config_or_name = PRESETS[config_or_name]
    name = _ALIASES.get(config_or_name.dataset, config_or_name.dataset)
    if name not in DATASETS:
        raise ValueError(
            f"Config {config_or_name.name!r} has dataset {name!r}, which has no "
            f"loader (valid: {', '.join(DATASETS)}); use from_arrays instead."
        )
    return name, tuple(config_or_name.image_shape)


def _check_choice(what, value, choices):
    if value not in choices:
        raise ValueError(f"Unknown {what} {value!r}; choose from {', '.join(choices)}.")


def _read_split(name, split, data_dir, source, download, image_shape, options):
    """The uint8 array of a split, from local files or tfds."""
    looked = []
    if source in ("auto", "local"):
        dirs = [data_dir] if data_dir is not None else list(LOCAL_DIRS[name])
        for directory in dirs:
            directory = os.path.expanduser(str(directory))
            images = _LOCAL_READERS[name](
                directory, split, image_shape, options, looked
            )
            if images is not None:
                return images
    if source in ("auto", "tfds"):
        return _tfds_split(
            name, split, data_dir, download, image_shape, options, looked
        )
    raise DatasetNotFoundError(_not_found_message(name, split, data_dir, looked))


def _not_found_message(name, split, data_dir, looked, extra=""):
    where = "\n".join(f"  - {line}" for line in looked) or "  (nowhere)"
    tfds_name = DATASETS[name]["tfds_name"]
    local = {
        "cifar10": f"download {CIFAR_URL} and extract it into DATA_DIR (giving "
        "DATA_DIR/cifar-10-batches-py/data_batch_1..5 and test_batch)",
        "celeb_a": f"download img_align_celeba.zip and Eval/list_eval_partition"
        f".txt from {CELEBA_URL} (or Kaggle's jessicali9530/celeba-dataset) and "
        "unzip them into DATA_DIR (giving DATA_DIR/img_align_celeba/*.jpg and "
        "DATA_DIR/list_eval_partition.txt)",
        "fashion_mnist": f"download the four IDX .gz files from {FASHION_MNIST_URL}"
        " into DATA_DIR (train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "...), or on Debian/Ubuntu `apt install dataset-fashion-mnist` (found "
        "without data_dir)",
        "mnist": f"download the IDX .gz files from {MNIST_URL} into DATA_DIR "
        "(train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz)",
    }[name]
    if data_dir is None:
        build = f"`tfds build {tfds_name}` (tfds's default data_dir is then found)"
    else:
        build = f"`tfds build {tfds_name} --data_dir {data_dir}`"
    note = " (its Google Drive download often fails on quota)" * (name == "celeb_a")
    return (
        f"Could not load the {split!r} split of {name}. Looked for:\n{where}\n"
        f"{extra}To get it, either {local} and pass data_dir=DATA_DIR; or, on a "
        f"machine with internet access, run {build}{note}."
    )


# --------------------------------------------------------------- tfds source
def _network_reachable(host, port=443, timeout=3.0):
    """Whether a TCP connection to host opens within timeout seconds.

    Runs in a daemon thread so that a stalled DNS lookup cannot hang us.
    """
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _tfds_split(name, split, data_dir, download, image_shape, options, looked):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        looked.append(
            "tensorflow-datasets: not installed (pip install tensorflow-datasets)"
        )
        raise DatasetNotFoundError(
            _not_found_message(name, split, data_dir, looked)
        ) from None
    tfds_name = DATASETS[name]["tfds_name"]
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        looked.append(f"tfds {tfds_name} in {builder.data_dir}: not prepared")
        host = DATASETS[name]["host"]
        if not download:
            raise DatasetNotFoundError(
                _not_found_message(name, split, data_dir, looked, "download=False. ")
            )
        if not _network_reachable(host):
            raise DatasetNotFoundError(
                _not_found_message(
                    name,
                    split,
                    data_dir,
                    looked,
                    f"{host} is unreachable (no network), so tfds cannot download "
                    "it here. ",
                )
            )
        logger.info(
            "Downloading and preparing tfds %s in %s", tfds_name, builder.data_dir
        )
        builder.download_and_prepare()
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    dataset = dataset.map(lambda example: example["image"])
    if options["limit"] is not None:
        dataset = dataset.take(options["limit"])
    if name == "celeb_a":
        return _celeba_from_tfds(builder, dataset, split, image_shape, options)
    chunks = [chunk for chunk in dataset.batch(4096).as_numpy_iterator()]
    if not chunks:
        return np.zeros((0,) + DATASETS[name]["native_shape"], np.uint8)
    return np.concatenate(chunks)


def _celeba_from_tfds(builder, dataset, split, image_shape, options):
    side = image_shape[0] if image_shape else 64
    cache = None
    if options["limit"] is None:
        key = _hash(str(builder.data_path), builder.version, split, side)
        cache = _cache_path(options["cache_dir"], f"celeb_a-tfds-{split}-{side}", key)
        if os.path.exists(cache):
            return np.load(cache, mmap_mode="r")
    chunks = (
        celeba_crop_resize(batch, side)
        for batch in dataset.batch(256).as_numpy_iterator()
    )
    max_count = None
    if builder.info.splits and split in builder.info.splits:
        max_count = builder.info.splits[split].num_examples
    return _collect(chunks, (side, side, 3), cache, max_count)


# -------------------------------------------------------------- local sources
def _cifar_local(directory, split, image_shape, options, looked):
    candidates = [os.path.join(directory, "cifar-10-batches-py"), directory]
    names = (
        ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    )
    for folder in candidates:
        present = [n for n in names if os.path.isfile(os.path.join(folder, n))]
        if not present:
            looked.append(
                f"CIFAR-10 python batches {', '.join(names)} in {folder}: none"
            )
            continue
        if len(present) < len(names):
            missing = sorted(set(names) - set(present))
            raise DatasetNotFoundError(
                f"Incomplete CIFAR-10 in {folder}: missing {', '.join(missing)}. "
                f"Re-extract {CIFAR_URL} there."
            )
        images = [read_cifar_batch(os.path.join(folder, n))[0] for n in names]
        images = np.concatenate(images)
        return images[: options["limit"]] if options["limit"] else images
    return None


def _mnist_local(directory, split, image_shape, options, looked):
    prefix = "t10k" if split == "test" else "train"
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"]
    folders = [directory]
    if options["name"] == "fashion_mnist":
        folders.append(os.path.join(directory, "fashion-mnist"))  # Keras's cache
    for folder in folders:
        for stem in stems:
            for suffix in (".gz", ""):
                path = os.path.join(folder, stem + suffix)
                if os.path.isfile(path):
                    images = read_idx(path)
                    if images.ndim != 3 or images.shape[1:] != (28, 28):
                        raise DataError(
                            f"{path}: expected (n, 28, 28) images, got {images.shape}."
                        )
                    if len(images) == 0:
                        raise DataError(f"{path}: holds 0 images (empty split).")
                    images = images[..., None]
                    return images[: options["limit"]] if options["limit"] else images
    looked.append(f"IDX file {stems[0]}[.gz] in {directory}: not found")
    npz = os.path.join(directory, "mnist.npz")
    if options["name"] == "mnist" and os.path.isfile(npz):  # Keras's cache
        with np.load(npz, allow_pickle=False) as arrays:
            key = "x_test" if split == "test" else "x_train"
            if key not in arrays:
                raise DataError(f"{npz}: no {key} array (keys: {list(arrays)}).")
            images = arrays[key][..., None]
        return images[: options["limit"]] if options["limit"] else images
    return None


def _celeba_local(directory, split, image_shape, options, looked):
    image_dir = _first_dir(
        directory,
        (
            "img_align_celeba/img_align_celeba",  # Kaggle's zip nests it
            "img_align_celeba",
            "Img/img_align_celeba",  # the official Google Drive layout
            "",
        ),
    )
    partition = _first_file(
        directory,
        (
            "list_eval_partition.txt",
            "list_eval_partition.csv",
            "Eval/list_eval_partition.txt",
            "../list_eval_partition.txt",
            "../list_eval_partition.csv",
        ),
    )
    if image_dir is None and partition is None:
        looked.append(
            f"CelebA {directory}/img_align_celeba/*.jpg and "
            f"{directory}/list_eval_partition.txt: not found"
        )
        return None
    if image_dir is None:
        raise DatasetNotFoundError(
            f"Found the CelebA partition file {partition} but no folder of "
            f"JPEGs: expected {directory}/img_align_celeba/000001.jpg ... "
            f"(unzip img_align_celeba.zip from {CELEBA_URL} there)."
        )
    if partition is None:
        raise DatasetNotFoundError(
            f"Found CelebA images in {image_dir} but no list_eval_partition.txt "
            f"(looked in {directory} and its Eval/ and parent folders); get "
            f"Eval/list_eval_partition.txt from {CELEBA_URL}."
        )
    side = image_shape[0] if image_shape else 64
    files = _read_partition(partition, split)
    cache = None
    if options["limit"] is None:
        stat = os.stat(partition)
        key = _hash(
            os.path.abspath(image_dir),
            os.stat(image_dir).st_mtime_ns,
            os.path.abspath(partition),
            stat.st_size,
            stat.st_mtime_ns,
            split,
            side,
        )
        cache = _cache_path(options["cache_dir"], f"celeb_a-{split}-{side}", key)
        if os.path.exists(cache):
            logger.info("Loading the CelebA %s cache %s", split, cache)
            return np.load(cache, mmap_mode="r")
    present = set(os.listdir(image_dir))
    missing = [f for f in files if f not in present]
    if missing:
        message = (
            f"{partition} lists {len(missing)} {split} file(s) missing from "
            f"{image_dir}, e.g. {os.path.join(image_dir, missing[0])}"
        )
        if not options["skip_bad"]:
            raise DataError(message + " (skip_bad=True skips them).")
        logger.warning("%s; skipping them.", message)
        files = [f for f in files if f in present]
    if options["limit"] is not None:
        files = files[: options["limit"]]
    paths = [os.path.join(image_dir, f) for f in files]
    logger.info(
        "Decoding %d CelebA %s JPEGs from %s (once)", len(paths), split, image_dir
    )

    def chunks():
        for start in range(0, len(paths), 1024):
            batch = _decode_many(
                paths[start : start + 1024],
                DATASETS["celeb_a"]["native_shape"],
                options["skip_bad"],
            )
            if len(batch):
                yield celeba_crop_resize(batch, side)

    return _collect(chunks(), (side, side, 3), cache, len(paths))


def _read_partition(path, split):
    """The file names of one split in list_eval_partition.txt / .csv."""
    wanted = CELEBA_PARTITION[split]
    files = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            line = line.strip()
            if not line or (number == 1 and line.lower().startswith("image_id")):
                continue
            fields = line.replace(",", " ").split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DataError(
                    f"{path}, line {number}: expected '<file.jpg> <0|1|2>', "
                    f"got {line!r}."
                )
            if int(fields[1]) == wanted:
                files.append(fields[0])
    return files


_LOCAL_READERS = {
    "cifar10": _cifar_local,
    "celeb_a": _celeba_local,
    "fashion_mnist": _mnist_local,
    "mnist": _mnist_local,
}


# ------------------------------------------------------------- image folders
def _folder_split(data_dir, split, image_shape, limit, skip_bad):
    root = os.path.join(data_dir, split)
    if not os.path.isdir(root):
        if split != "train":
            raise DatasetNotFoundError(
                f"No {split!r} subfolder in {data_dir}: put the evaluation images "
                f"in {root}/ (and the training ones in {data_dir}/train/), or use "
                "from_folder(path) directly."
            )
        root = data_dir
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"The image folder {root} does not exist.")
    files = _image_files(root)
    return _decode_folder(files, image_shape, root, limit, skip_bad)


def _image_files(root):
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"The image folder {root} does not exist.")
    images, ignored = [], 0
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                images.append(os.path.join(folder, name))
            else:
                ignored += 1
    if ignored:
        logger.warning("Ignored %d non-image file(s) under %s", ignored, root)
    if not images:
        raise DataError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {root} (empty split)."
        )
    return images


def _decode_folder(files, image_shape, root, limit, skip_bad):
    if limit is not None:
        files = files[:limit]
    # Any height and width (smaller ones get padded later), one channel count;
    # _decode_many then requires every image to match the first good one.
    channels = image_shape[-1] if image_shape is not None else None
    return _decode_many(files, (None, None, channels), skip_bad)


def _decode_image(path, shape):
    """One image as uint8 (H, W, C); DataError naming the file if bad."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            if image.mode not in ("L", "LA", "RGB", "RGBA"):
                raise DataError(f"{path}: unsupported image mode {image.mode}.")
            array = np.asarray(image)
    except DataError:
        raise
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError...
        raise DataError(f"{path}: unreadable or truncated image ({error}).") from None
    if array.ndim == 2:
        array = array[..., None]
    if shape is not None and any(
        want is not None and want != got for want, got in zip(shape, array.shape)
    ):
        raise DataError(
            f"{path}: image of shape {array.shape}, expected "
            f"{tuple('any' if s is None else s for s in shape)}."
        )
    return array


def _decode_many(paths, shape, skip_bad):
    """uint8 (n, H, W, C) of same-shaped images, decoded on a few threads."""

    def decode(path):
        try:
            return _decode_image(path, shape)
        except DataError as error:
            if not skip_bad:
                raise
            return error

    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(decode, paths))
    good = [r for r in results if not isinstance(r, DataError)]
    bad = [r for r in results if isinstance(r, DataError)]
    if good and None in shape:
        first = good[0].shape
        for path, result in zip(paths, results):
            if not isinstance(result, DataError) and result.shape != first:
                error = DataError(
                    f"{path}: image of shape {result.shape}, expected {first} "
                    "like the first image."
                )
                if not skip_bad:
                    raise error
                bad.append(error)
        good = [r for r in good if r.shape == first]
    if bad:
        logger.warning("Skipped %d bad image(s), e.g. %s", len(bad), bad[0])
    if not good:
        return np.zeros((0,) + tuple(s or 0 for s in shape), np.uint8)
    return np.stack(good)


# ------------------------------------------------------------------- caching
def _hash(*parts):
    text = "|".join(str(part) for part in (_CACHE_VERSION,) + parts)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _cache_path(cache_dir, stem, key):
    cache_dir = os.path.expanduser(cache_dir or default_cache_dir())
    return os.path.join(cache_dir, f"{stem}-{key}.npy")


def _collect(chunks, shape, cache, max_count=None):
    """The uint8 chunks as one array, saved atomically to ``cache`` if given.

    With a cache and a known ``max_count`` the chunks go straight into a
    memory-mapped ``.npy`` (CelebA train is 2 GB: no second copy in memory).
    """
    if cache is None or max_count is None:
        array = np.concatenate(list(chunks) or [np.zeros((0,) + shape, np.uint8)])
        if cache is None or len(array) == 0:
            return array
        max_count, chunks = len(array), [array]
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    partial = f"{cache}.{os.getpid()}.partial.npy"
    try:
        output = np.lib.format.open_memmap(
            partial, mode="w+", dtype=np.uint8, shape=(max_count,) + shape
        )
        count = 0
        for chunk in chunks:
            output[count : count + len(chunk)] = chunk
            count += len(chunk)
        output.flush()
        del output
        if count == 0:
            return np.zeros((0,) + shape, np.uint8)
        if count < max_count:  # skipped images: rewrite the used rows only
            used = np.load(partial, mmap_mode="r")[:count]
            np.save(partial + ".npy", used)
            del used
            os.replace(partial + ".npy", partial)
        os.replace(partial, cache)
    finally:
        for leftover in (partial, partial + ".npy"):
            if os.path.exists(leftover):
                os.remove(leftover)
    logger.info("Cached %d images in %s", count, cache)
    return np.load(cache, mmap_mode="r")


# -------------------------------------------------------------------- arrays
def _fit_to_shape(images, image_shape, what):
    """Zero-pads smaller images centrally to image_shape; checks the rest."""
    if image_shape is None:
        return images
    image_shape = tuple(image_shape)
    have = tuple(images.shape[1:])
    if have == image_shape:
        return images
    height, width = image_shape[0] - have[0], image_shape[1] - have[1]
    if (
        len(have) == 3
        and have[2] == image_shape[2]
        and min(height, width) >= 0
        and height % 2 == 0
        and width % 2 == 0
    ):
        pad = ((0, 0), (height // 2,) * 2, (width // 2,) * 2, (0, 0))
        return np.pad(images, pad)
    raise DataError(
        f"{what}: images of shape {have} do not fit the image_shape "
        f"{image_shape} (only a central zero padding is applied)."
    )


def _array_dataset(images):
    """An unbatched dataset over a (possibly memory-mapped) array."""
    if images.nbytes <= _IN_MEMORY_BYTES:
        return tf.data.Dataset.from_tensor_slices(np.ascontiguousarray(images))
    count, chunk = len(images), 1024

    def chunks():
        for start in range(0, count, chunk):
            yield np.asarray(images[start : start + chunk])

    spec = tf.TensorSpec((None,) + tuple(images.shape[1:]), tf.as_dtype(images.dtype))
    dataset = tf.data.Dataset.from_generator(chunks, output_signature=spec)
    return dataset.unbatch().apply(tf.data.experimental.assert_cardinality(count))


def _image_spec(dataset):
    spec = dataset.element_spec
    if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 3:
        raise ValueError(
            f"Expected an unbatched dataset of (H, W, C) images, got {spec}."
        )
    return spec


def _to_float(images):
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return images


def _first_dir(root, relatives):
    for relative in relatives:
        path = os.path.normpath(os.path.join(root, relative))
        if os.path.isdir(path) and any(
            name.lower().endswith(".jpg") for name in _listdir_head(path)
        ):
            return path
    return None


def _first_file(root, relatives):
    for relative in relatives:
        path = os.path.normpath(os.path.join(root, relative))
        if os.path.isfile(path):
            return path
    return None


def _listdir_head(path, count=50):
    with os.scandir(path) as entries:
        for index, entry in enumerate(entries):
            if index >= count:
                return
            yield entry.name
