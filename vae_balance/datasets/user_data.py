"""Your own images: a folder, an array file or a tfds name, split and padded.

`read_source` turns what ``train --data`` names into a `UserData`: the
images as one uint8 (or float32) array ``(n, H, W, C)`` at the size the
network trains on (native or ``image_size``), the held-out split, and the
``data`` block recorded in ``config.json`` (`UserData.block`), which a
resume, ``evaluate`` and ``export`` use to read the same images again
(`load_splits`, `held_out_images`) and to refuse a changed source.

Sources (`parse_source`):

- a folder of PNG / JPEG / BMP / WebP images, searched recursively and
  sorted by path; other files are ignored (and counted). A folder with
  ``train/`` and ``test/`` subfolders uses them as its two splits.
- an ``.npz`` (the key ``x``, or its only array) or ``.npy`` file holding
  ``(N, H, W)`` or ``(N, H, W, C)`` images, uint8 or floats in [0, 1].
- ``tfds:NAME``: a tensorflow-datasets image dataset, with its own ``test``
  split when it has one.

A source without a test split gets a deterministic held-out split: the
fraction ``val_fraction`` (default 0.1) of the images, chosen by a
permutation seeded with `SPLIT_SEED` (not the run's seed: changing ``--seed``
keeps the split). Every problem raises `DataError` naming the file and the
fix (mixed sizes, too few images, an empty folder, a corrupt image or one
over Pillow's decompression-bomb limit); ``skip_bad`` skips bad files.
"""

import concurrent.futures
import dataclasses
import hashlib
import os
import warnings

import numpy as np

from vae_balance.datasets.registry import DataError, DatasetNotFoundError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_VAL_FRACTION = 0.1
SPLIT_SEED = 0  # the held-out split stays when --seed changes
KINDS = ("folder", "array", "tfds")


class BadImageError(DataError):
    """An image file that cannot be used: unreadable, truncated, or over
    Pillow's decompression-bomb limit (``skip_bad`` skips these)."""


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where the images are: ``kind`` ("folder", "array" or "tfds") and
    ``path`` (an absolute path, or the tfds name)."""

    kind: str
    path: str

    @property
    def label(self):
        """How the source is written on the command line."""
        return f"tfds:{self.path}" if self.kind == "tfds" else self.path


def parse_source(text):
    """The `DataSource` of ``--data``: a folder, an .npz / .npy file or
    ``tfds:NAME``.

    Raises:
        DatasetNotFoundError: the path does not exist.
        DataError: a file that is neither .npz nor .npy, or an empty name.
    """
    text = os.fspath(text)
    if text.startswith("tfds:"):
        name = text[len("tfds:") :].strip()
        if not name:
            raise DataError("--data tfds:NAME needs a dataset name, e.g. tfds:mnist.")
        return DataSource("tfds", name)
    path = os.path.abspath(os.path.expanduser(text))
    if os.path.isdir(path):
        return DataSource("folder", path)
    if not os.path.exists(path):
        raise DatasetNotFoundError(
            f"--data {text}: no such folder or file (give a folder of images, "
            "an .npz or .npy array, or tfds:NAME)."
        )
    if path.lower().endswith((".npz", ".npy")):
        return DataSource("array", path)
    raise DataError(
        f"--data {text}: a file that is not .npz or .npy; give a folder of "
        "images, an .npz / .npy array, or tfds:NAME."
    )


@dataclasses.dataclass
class UserData:
    """The images of a source, split, and the ``data`` block describing them.

    Attributes:
        train: ``(n, H, W, C)`` uint8 or float32 training images.
        held_out: the held-out (or test) images, same shape.
        block: the JSON-ready description recorded in ``config.json``.
    """

    train: np.ndarray
    held_out: np.ndarray
    block: dict

    @property
    def image_shape(self):
        """``(H, W, C)`` of the images the network is fed (before padding)."""
        return tuple(int(d) for d in self.train.shape[1:])


# ------------------------------------------------------------- reading
def read_source(
    source,
    *,
    image_size=None,
    center_crop=False,
    val_fraction=DEFAULT_VAL_FRACTION,
    batch_size=1,
    skip_bad=False,
    log=print,
):
    """Reads, converts, resizes and splits a source's images.

    Args:
        source: a `DataSource`, a path, ``tfds:NAME``, or an array of images.
        image_size: None keeps the native size (all images must share it);
            else ``(height, width)`` (or one int) every image is resized to.
        center_crop: before resizing, crop the largest central region of the
            target's aspect ratio (like CelebA's crop) instead of stretching.
        val_fraction: the share held out when the source has no test split.
        batch_size: the training split must hold at least one batch.
        skip_bad: skip unreadable, truncated or oversized image files (their
            count is said) instead of raising `DataError`.
        log: where the counts are said (``print``).

    Returns:
        A `UserData`.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    size = _parse_size(image_size)
    if isinstance(source, np.ndarray):
        images = check_array(source, "images")
        source, arrays = DataSource("array", "<array>"), {"all": images}
        block, names = {"sha256": _array_sha256(images)}, None
    else:
        source = source if isinstance(source, DataSource) else parse_source(source)
        arrays, block, names = _READERS[source.kind](source, skip_bad, log)
    native = {tuple(int(d) for d in i.shape) for a in arrays.values() for i in a[:1]}
    if names is not None:  # a folder: one list of images per split
        native = {tuple(i.shape) for a in arrays.values() for i in a}
        if size is None:
            _check_one_size(arrays, names)
    arrays = {
        split: _fit_size(images, size, center_crop) for split, images in arrays.items()
    }
    train, held_out, split = _split(arrays, val_fraction, batch_size)
    block = {
        "kind": source.kind,
        "path": source.path,
        **block,
        "native_shape": list(native.pop()) if len(native) == 1 else "mixed",
        "image_size": None if size is None else list(size),
        "center_crop": bool(center_crop),
        **split,
        "num_train": len(train),
        "num_held_out": len(held_out),
    }
    return UserData(train, held_out, block)


def _split(arrays, val_fraction, batch_size):
    """``(train, held_out, the split's record)``: the source's own test split,
    else ``val_fraction`` of its images held out."""
    if "all" in arrays:
        train, held_out = split_held_out(arrays["all"], val_fraction, batch_size)
        split = {"split": "held-out", "val_fraction": val_fraction}
        split["split_seed"] = SPLIT_SEED
        return train, held_out, split
    train, held_out = arrays["train"], arrays["test"]
    _check_enough(len(train), batch_size, None)
    return train, held_out, {"split": "test"}


def _parse_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, str):
        parts = image_size.lower().split("x")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
    else:
        values = [image_size] if np.ndim(image_size) == 0 else list(image_size)
        values = [int(v) for v in values]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise ValueError(
            f"image size {image_size!r}: give HxW (e.g. 64x48) or one side (64)."
        )
    return tuple(values)


def _fit_size(images, size, center_crop):
    """The images resized to ``size`` (a list of arrays, or one array)."""
    if size is None:
        if isinstance(images, np.ndarray):
            return images
        return np.stack(images)
    out = [_resize(image, size, center_crop) for image in images]
    return np.stack(out)


def _resize(image, size, center_crop):
    """One (h, w, c) image at ``size`` (antialiased bilinear, Pillow)."""
    from PIL import Image

    height, width = size
    is_float = image.dtype != np.uint8
    array = image.astype(np.float32) if is_float else image
    if center_crop:
        h, w = array.shape[:2]
        scale = min(h / height, w / width)
        crop_h, crop_w = round(height * scale), round(width * scale)
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        array = array[top : top + crop_h, left : left + crop_w]
    channels = array.shape[-1]
    planes = []
    for c in range(channels):
        plane = Image.fromarray(array[..., c] if is_float else array[..., c], None)
        resized = plane.resize((width, height), Image.BILINEAR)
        planes.append(np.asarray(resized))
    out = np.stack(planes, axis=-1)
    return np.clip(out, 0, 1).astype(np.float32) if is_float else out


def split_held_out(images, val_fraction, batch_size):
    """``(train, held_out)``: a seeded permutation's first ``val_fraction``
    (at least one image) held out; both keep the source's order."""
    count = len(images)
    _check_enough(count, batch_size, val_fraction)
    num_held_out = max(1, round(count * val_fraction))
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    held = np.zeros(count, bool)
    held[order[:num_held_out]] = True
    return images[~held], images[held]


def _check_enough(count, batch_size, val_fraction):
    needed, what = batch_size, f"one batch of {batch_size} training images"
    if val_fraction is not None:
        needed = batch_size + 1
        while needed - max(1, round(needed * val_fraction)) < batch_size:
            needed += 1
        what = (
            f"one batch of {batch_size} plus a held-out split of "
            f"{val_fraction:g} (at least one image)"
        )
    if count < needed:
        raise DataError(
            f"{count} images are too few for {what}: {needed} are needed. Add "
            "images or lower --batch-size."
        )


# ------------------------------------------------------------- folders
def _read_folder(source, skip_bad, log):
    """``({"all": [...]} or {"train": [...], "test": [...]}, block)``."""
    root = source.path
    subfolders = [os.path.join(root, s) for s in ("train", "test")]
    splits = {"all": root}
    if all(os.path.isdir(s) for s in subfolders):
        splits = dict(zip(("train", "test"), subfolders))
    arrays, names, listing = {}, {}, []
    for split, folder in splits.items():
        files, ignored = image_files(folder)
        if ignored:
            log(f"[data] ignored {ignored} non-image file(s) under {folder}")
        listing += [f"{os.path.relpath(f, root)}\t{os.path.getsize(f)}" for f in files]
        arrays[split], names[split] = _decode_all(files, skip_bad, log)
    arrays = _harmonise_channels(arrays, log)
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()
    return arrays, {"files_sha256": digest, "num_files": len(listing)}, names


def image_files(folder):
    """``(sorted image paths under folder, number of other files)``.

    Raises:
        DataError: no image file (an empty folder).
    """
    files, ignored = [], 0
    for directory, subfolders, names in os.walk(folder):
        subfolders.sort()
        for name in sorted(names):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(directory, name))
            else:
                ignored += 1
    if not files:
        raise DataError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}"
            + (f" ({ignored} other file(s) ignored)." if ignored else " (empty).")
        )
    return files, ignored


def decode_user_image(path):
    """One image file as uint8 ``(h, w, 1)`` (grey) or ``(h, w, 3)``.

    Refuses, without decoding them, images over Pillow's decompression-bomb
    limit (``PIL.Image.MAX_IMAGE_PIXELS``).

    Raises:
        DataError: naming the file: unreadable, truncated, or too large.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                limit = Image.MAX_IMAGE_PIXELS
                if limit and width * height > limit:
                    raise BadImageError(
                        f"{path}: {width}x{height} pixels, over Pillow's "
                        f"decompression-bomb limit of {limit}; refused "
                        "without decoding it (resize it, or raise "
                        "PIL.Image.MAX_IMAGE_PIXELS if you trust the file)."
                    )
                image.load()
                grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
                array = np.asarray(image.convert("L" if grey else "RGB"))
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImageError(
            f"{path}: over Pillow's decompression-bomb limit; refused without "
            f"decoding it ({error})."
        ) from None
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError
        message = f"{path}: unreadable or truncated image ({error})."
        raise BadImageError(message) from None
    return array[..., None] if array.ndim == 2 else array


def _decode_all(files, skip_bad, log):
    """(decoded images, their paths): bad files raise, or are skipped."""

    def decode(path):
        try:
            return decode_user_image(path)
        except BadImageError as error:
            if not skip_bad:
                raise
            return error

    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(decode, files))
    bad = [r for r in results if isinstance(r, BadImageError)]
    if bad:
        log(f"[data] skipped {len(bad)} bad image file(s), e.g. {bad[0]}")
    kept = [(r, f) for r, f in zip(results, files) if not isinstance(r, DataError)]
    if not kept:
        raise DataError(f"No readable image among the {len(files)} files.")
    return [r for r, _ in kept], [f for _, f in kept]


def _check_one_size(arrays, names):
    """DataError naming two files of different sizes (no image_size given)."""
    images = [i for split in arrays for i in arrays[split]]
    paths = [n for split in arrays for n in names[split]]
    first = images[0].shape[:2]
    for image, path in zip(images, paths):
        if image.shape[:2] != first:
            raise DataError(
                f"Images of different sizes: {paths[0]} is {first[0]}x{first[1]}"
                f", {path} is {image.shape[0]}x{image.shape[1]} (height x width)."
                " Pass --image-size HxW (image_size=) to resize them all."
            )


def _harmonise_channels(arrays, log):
    """Grey images become RGB when any image is in colour (count said)."""
    every = [image for images in arrays.values() for image in images]
    if len({image.shape[-1] for image in every}) == 1:
        return arrays
    grey = sum(image.shape[-1] == 1 for image in every)
    log(f"[data] converted {grey} grey image(s) to RGB (the others are in colour)")
    return {
        split: [np.repeat(i, 3, axis=-1) if i.shape[-1] == 1 else i for i in images]
        for split, images in arrays.items()
    }


# -------------------------------------------------------------- arrays
def _read_array(source, skip_bad, log):
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
    block = {"key": key, "sha256": _array_sha256(images)}
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


def _array_sha256(images):
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


def _read_tfds(source, skip_bad, log):
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


_READERS = {"folder": _read_folder, "array": _read_array, "tfds": _read_tfds}


# ------------------------------------------------------ network and pads
def network_shape(image_shape, network):
    """The ``(H, W, C)`` a network needs for ``(h, w, c)`` images.

    "resnet": the next power-of-two square side (at least 4); "infogan": each
    side rounded up to a multiple of 4.
    """
    height, width, channels = image_shape
    if network == "resnet":
        side = max(4, 1 << (max(height, width) - 1).bit_length())
        return (side, side, channels)
    return (-(-height // 4) * 4, -(-width // 4) * 4, channels)


def centre_pad(image_shape, target_shape):
    """``(top, bottom, left, right)`` zero pixels taking one to the other."""
    rows = target_shape[0] - image_shape[0]
    cols = target_shape[1] - image_shape[1]
    return (rows // 2, rows - rows // 2, cols // 2, cols - cols // 2)


def pad_images(images, box):
    """``images`` with ``box = (top, bottom, left, right)`` zeros around."""
    top, bottom, left, right = box
    if not any(box):
        return images
    return np.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)))


# ------------------------------------------- the recorded data, again
def describe_change(previous, current):
    """What differs between two ``data`` blocks, in words, or None."""
    keys = (
        "kind",
        "path",
        "key",
        "files_sha256",
        "sha256",
        "num_files",
        "native_shape",
        "image_size",
        "center_crop",
        "split",
        "val_fraction",
        "num_train",
        "num_held_out",
    )
    changes = [
        f"{key} {previous.get(key)!r} -> {current.get(key)!r}"
        for key in keys
        if previous.get(key) != current.get(key)
    ]
    return "; ".join(changes) or None


def check_unchanged(previous, current, where):
    """Raises `DataError` when the data differs from the recorded block."""
    change = describe_change(previous, current)
    if change:
        raise DataError(
            f"The data of {where} changed since the run started ({change}). "
            "Restore it, use another --workdir, or pass --allow-config-change "
            "to continue on the new data."
        )


def load_splits(config, skip_bad=False, log=print):
    """``(train, held_out)`` of a run's recorded ``data`` block, padded to the
    network's ``image_shape``; `DataError` if the source changed."""
    block = config.data
    if block.get("path") == "<array>":
        raise DataError(
            f"Run {config.name!r} was trained on an in-memory array; pass the "
            "images again (train_data= / test_images=)."
        )
    source = DataSource(block["kind"], block["path"])
    data = read_source(
        source,
        image_size=block.get("image_size"),
        center_crop=block.get("center_crop", False),
        val_fraction=block.get("val_fraction") or DEFAULT_VAL_FRACTION,
        skip_bad=skip_bad,
        log=log,
    )
    check_unchanged(block, data.block, source.label)
    box = centre_pad(data.image_shape, config.image_shape)
    return pad_images(data.train, box), pad_images(data.held_out, box)


def held_out_images(config, num_images=None):
    """The first ``num_images`` held-out images of a run, at the network's
    shape (for ``evaluate``)."""
    _, held_out = load_splits(config, log=lambda *_: None)
    return held_out[:num_images]
