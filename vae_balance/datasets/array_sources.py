"""Your own images that come as whole arrays: a NumPy file or a tfds dataset.

- `read_array`: an ``.npz`` (the key ``x``, or its only array) or ``.npy``
  file holding ``(N, H, W)`` or ``(N, H, W, C)`` images, uint8 or floats in
  [0, 1]; its ``data`` block records the key and the array's sha256.
- `read_tfds`: ``tfds:NAME``, a tensorflow-datasets image dataset
  (`tfds_splits`, `tfds_images`), with its own ``test`` split when it has one.

Every array, an in-memory one too, passes `check_array` (shape, dtype and
range, or a `DataError` saying the fix); `array_sha256` is its digest.
"""

import hashlib

import numpy as np

from vae_balance.datasets.registry import DataError


# -------------------------------------------------------------- arrays
def read_array(source, skip_bad, log):
    """``({"all": images}, block, None)`` of an .npz / .npy `DataSource`."""
    path = source.path
    try:
        if path.lower().endswith(".npy"):
            images = np.load(path, allow_pickle=False)
            key = None
        else:
            with np.load(path, allow_pickle=False) as arrays:
                keys = list(arrays)
                if "x" in keys:
                    key = "x"
                elif len(keys) == 1:
                    key = keys[0]
                else:
                    raise DataError(
                        f"{path}: no array named 'x' among its keys {keys}; "
                        "save the images as x (np.savez(path, x=images)) or "
                        "alone."
                    )
                images = arrays[key]
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable NumPy file ({error}).") from None
    images = check_array(images, path)
    block = {"key": key, "sha256": array_sha256(images)}
    return {"all": images}, block, None


def check_array(images, what):
    """``(n, H, W, C)`` uint8, or float32 in [0, 1]; DataError otherwise."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(
            f"{what}: images must be (N, H, W) or (N, H, W, C) with C 1 or 3, "
            f"got shape {images.shape}."
        )
    if len(images) == 0:
        raise DataError(f"{what}: holds 0 images.")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(
            f"{what}: dtype {images.dtype}; give uint8 (0-255) or floats in [0, 1]."
        )
    low, high = float(np.min(images)), float(np.max(images))
    if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= 1):
        raise DataError(
            f"{what}: float values from {low:g} to {high:g}; floats must be "
            "in [0, 1] (divide 0-255 images by 255)."
        )
    return images.astype(np.float32)


def array_sha256(images):
    """The sha256 of an array's shape, dtype and bytes."""
    digest = hashlib.sha256(str((images.shape, images.dtype.str)).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- tfds
def tfds_splits(name):
    """The split names of a tfds dataset (prepared, or downloaded now)."""
    import tensorflow_datasets as tfds  # optional; hangs offline: never in tests

    builder = tfds.builder(name)
    if not builder.is_prepared():
        builder.download_and_prepare()
    return list(builder.info.splits)


def tfds_images(name, split):
    """A tfds split's ``image`` feature as one uint8 array."""
    import tensorflow_datasets as tfds

    dataset = tfds.load(name, split=split, shuffle_files=False)
    batches = dataset.map(lambda example: example["image"]).batch(4096)
    return np.concatenate(list(batches.as_numpy_iterator()))


def read_tfds(source, skip_bad, log):
    """``(arrays, block, None)`` of a tfds `DataSource`: its train and test
    splits, or ``{"all": train}`` without a test split."""
    splits = tfds_splits(source.path)
    if "train" not in splits:
        raise DataError(f"tfds:{source.path} has no 'train' split (splits: {splits}).")
    wanted = ("train", "test") if "test" in splits else ("train",)
    arrays = {
        split: check_array(tfds_images(source.path, split), f"tfds:{source.path}")
        for split in wanted
    }
    if "test" not in arrays:
        arrays = {"all": arrays["train"]}
    return arrays, {"splits": splits}, None
