"""Images held in memory as tf.data datasets: a NumPy array (`from_arrays`)
or a folder of image files read into one (`from_folder`), zero-padded
centrally to a network's shape (`fit_to_shape`) and delivered as float32 in
[0, 1] (`to_float`). `vae_balance.datasets.pipeline` builds every split's
dataset from these.
"""

import numpy as np
import tensorflow as tf

from vae_balance.datasets.formats import read_image_folder
from vae_balance.datasets.registry import DataError

__all__ = ["array_dataset", "fit_to_shape", "from_arrays", "from_folder", "to_float"]

# Arrays up to this size become one in-memory tensor; larger ones (CelebA
# train, 2 GB) are streamed from the memory-mapped cache in chunks.
_IN_MEMORY_BYTES = 1 << 30


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
        images = fit_to_shape(images, image_shape, "images")
        return array_dataset(images).map(to_float)
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
    images = fit_to_shape(images.astype(np.float32), image_shape, "images")
    return array_dataset(images)


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
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"Unknown dtype {dtype!r}; choose from float32, uint8.")
    images = read_image_folder(path, image_shape, limit, skip_bad)
    if len(images) == 0:
        raise DataError(f"No usable images in {path}.")
    images = fit_to_shape(images, image_shape, str(path))
    dataset = array_dataset(images)
    return dataset.map(to_float) if dtype == "float32" else dataset


def fit_to_shape(images, image_shape, what):
    """Zero-pads smaller images centrally to image_shape; checks the rest
    (a `DataError` naming ``what``)."""
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


def array_dataset(images):
    """An unbatched dataset over a (possibly memory-mapped) array, of its
    dtype."""
    if images.nbytes <= _IN_MEMORY_BYTES:
        return tf.data.Dataset.from_tensor_slices(np.ascontiguousarray(images))
    count, chunk = len(images), 1024

    def chunks():
        for start in range(0, count, chunk):
            yield np.asarray(images[start : start + chunk])

    spec = tf.TensorSpec((None,) + tuple(images.shape[1:]), tf.as_dtype(images.dtype))
    dataset = tf.data.Dataset.from_generator(chunks, output_signature=spec)
    return dataset.unbatch().apply(tf.data.experimental.assert_cardinality(count))


def to_float(images):
    """uint8 images to float32 in [0, 1]; float images as they are."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return images
