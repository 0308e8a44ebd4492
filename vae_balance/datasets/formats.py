"""File formats: CIFAR-10 python batches, IDX, the CelebA partition, images.

Readers of one file (or one list of files) each, returning uint8 NumPy arrays
and raising `DataError` naming the file:

- `read_cifar_batch`: a CIFAR-10 python batch, read with a restricted
  unpickler that only rebuilds dicts, lists, bytes, uint8 NumPy arrays and
  NumPy integer scalars (labels re-pickled by NumPy); nothing in it is run.
- `read_idx`: an IDX file (MNIST, Fashion-MNIST), gzipped or raw.
- `read_celeba_partition`: the file names of one split in CelebA's
  ``list_eval_partition.txt`` (or Kaggle's ``.csv``).
- `image_files`, `read_image_folder`, `decode_images`: PNG / JPEG / BMP
  images (Pillow), decoded on a few threads, all of one shape.
- `celeba_crop_resize`: the paper's CelebA crop and resize;
  `jpeg_roundtrip_images`: the reference code's CIFAR-10 JPEG round trip.
"""

import gzip
import io
import logging
import math
import os
import pickle
import zlib

import numpy as np
import tensorflow as tf
from PIL import Image

from vae_balance.datasets.image_folder import decode_in_threads
from vae_balance.datasets.registry import DataError, DatasetNotFoundError

# The package's public logger name (callers attach handlers to it).
logger = logging.getLogger("vae_balance.data")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# The paper's CelebA crop (paper-notes section 5): rows 45:173, cols 25:153.
CELEBA_CROP = (45, 173, 25, 153)
CELEBA_PARTITION = {"train": 0, "validation": 1, "test": 2}


# ------------------------------------------------------ CIFAR-10 batches
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
    # Imported here: numpy._core is NumPy 2's private name, needed only when
    # a pickled CIFAR batch is read.
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
    # Imported here: NumPy 2's private module, needed only to read pickles.
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


# ------------------------------------------------------------------ IDX
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


# -------------------------------------------------------------- CelebA
def read_celeba_partition(path, split):
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


# -------------------------------------------------------------- images
def image_files(root):
    """The image files under ``root``, recursively, sorted by path.

    Files with other extensions (and hidden files) are ignored; their count
    is logged.

    Raises:
        DatasetNotFoundError: ``root`` is not a folder.
        DataError: there is no image under it.
    """
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


def read_image_folder(root, image_shape, limit, skip_bad):
    """The first ``limit`` images under ``root`` (sorted), of one shape.

    Any height and width (smaller ones get padded later), one channel count:
    ``image_shape``'s if given; every image must match the first good one.
    """
    files = image_files(root)
    if limit is not None:
        files = files[:limit]
    channels = image_shape[-1] if image_shape is not None else None
    return decode_images(files, (None, None, channels), skip_bad)


def decode_image(path, shape):
    """One image as uint8 (H, W, C); DataError naming the file if bad."""
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


def decode_images(paths, shape, skip_bad):
    """uint8 (n, H, W, C) of same-shaped images, decoded on a few threads."""

    results = decode_in_threads(lambda path: decode_image(path, shape), paths, skip_bad)
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
