"""Image sets for FID: arrays, ``.npz`` / ``.npy`` files and image folders.

`load_images` reads a set, `check_images` validates an array (uint8, or
floats in [0, 1]) and `fid_from_sources` computes the FID between two sets
(``python -m vae_balance fid REAL FAKE``, in `vae_balance.evaluation.protocol`).
"""

import os

import numpy as np
from PIL import Image

from vae_balance.datasets import pipeline
from vae_balance.evaluation import metrics
from vae_balance.fid.inception import get_feature_extractor

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def load_images(source):
    """Images of an ``.npz`` / ``.npy`` file or a folder, as (n, h, w, c).

    An ``.npz`` gives its ``"images"`` array, else its first array. Arrays
    must be uint8 in [0, 255] or floats in [0, 1]; a folder's images (PNG,
    JPEG, ...; sorted by path, searched recursively) must all have the same
    size and are read as grayscale if they all are, else RGB (uint8).
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        return _load_folder(source)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"No such image file or folder: {source!r}.")
    if source.endswith(".npz"):
        with np.load(source) as archive:
            if not archive.files:
                raise ValueError(f"{source} holds no arrays.")
            key = "images" if "images" in archive.files else archive.files[0]
            images = archive[key]
    elif source.endswith(".npy"):
        images = np.load(source)
    else:
        raise ValueError(
            f"Cannot read images from {source!r}: give an .npz / .npy file or a "
            "folder of images."
        )
    return check_images(images, source)


def _load_folder(folder):
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {folder!r}.")
    opened = [Image.open(path) for path in paths]
    mode = "L" if all(image.mode in ("L", "1", "I;16") for image in opened) else "RGB"
    arrays = []
    for path, image in zip(paths, opened):
        with image:
            array = np.asarray(image.convert(mode), dtype=np.uint8)
        if arrays and array.shape != arrays[0].shape:
            raise ValueError(
                f"{path} is {array.shape[1]}x{array.shape[0]}, unlike "
                f"{paths[0]} ({arrays[0].shape[1]}x{arrays[0].shape[0]}); FID "
                "needs images of one size per set."
            )
        arrays.append(array)
    images = np.stack(arrays)
    return images[..., None] if images.ndim == 3 else images


def check_images(images, what):
    images = np.asarray(images)
    if images.ndim == 3:  # (n, h, w) grayscale
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{what}: expected images (n, h, w) or (n, h, w, 1 or 3), got shape "
            f"{images.shape}."
        )
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"{what}: images must be uint8 (0-255) or floats in [0, 1], got "
            f"{images.dtype}."
        )
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{what}: images contain NaN or Inf.")
    low, high = float(images.min()), float(images.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"{what}: float images must be in [0, 1], found [{low:.3g}, "
            f"{high:.3g}]; divide 0-255 images by 255."
        )
    return images.astype(np.float32)


def fid_from_sources(real, fake, feature_extractor=None, batch_size=50, verbose=1):
    """FID between two image sets: arrays, ``.npz`` / ``.npy`` files, folders.

    Args:
        real, fake: (n, h, w, c) arrays (uint8 or floats in [0, 1]) or paths
            (see `load_images`). Sizes may differ between the two sets: every
            image is resized to the network's input.
        feature_extractor: callable images -> features; None: the standard FID
            Inception network (weights converted once on first use, docs/fid.md).
        batch_size: images per forward pass.
        verbose: progress bars.

    Returns:
        The FID, a Python float.
    """
    if feature_extractor is None:
        feature_extractor = get_feature_extractor()
    sets = []
    for name, source in (("real", real), ("fake", fake)):
        if isinstance(source, np.ndarray):
            images = check_images(source, name)
        else:
            images = load_images(source)
        sets.append(
            metrics.extract_features(
                images, feature_extractor, batch_size=batch_size, verbose=verbose
            )
        )
    return metrics.fid_from_features(*sets)


def minmax_stretch(images, pad=0):
    """Dai & Wipf's per-image min-max stretch of generated images.

    Their ``fid_score.py`` maps every generated image to the full range
    before FID (``(x - min) / (max - min)``, per image, all channels
    together), which raises the contrast of blurry samples: FIDs measured
    with it are comparable with their Table 1, not with the standard
    protocol. A constant image stays as it is.

    Args:
        images: (n, h, w, c) floats in [0, 1] (or uint8).
        pad: the loader's border (see `pipeline.remove_padding`): the minimum
            and maximum are those of the native region, which the scores
            keep; the border is carried along.

    Returns:
        (n, h, w, c) float32, the native region in [0, 1].
    """
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    native = pipeline.remove_padding(x, pad)
    low = native.min(axis=(1, 2, 3), keepdims=True)
    span = native.max(axis=(1, 2, 3), keepdims=True) - low
    return np.where(span > 0, (x - low) / np.maximum(span, 1e-12), x)
