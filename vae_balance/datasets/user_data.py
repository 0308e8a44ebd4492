"""Your own images: a source read, resized and split, and read again.

`read_source` turns what ``train --data`` names into a `UserData`: the
images as one uint8 (or float32) array ``(n, H, W, C)`` at the size the
network trains on (native or ``image_size``), the held-out split, and the
``data`` block recorded in ``config.json`` (`UserData.block`), which a
resume, ``evaluate`` and ``export`` use to read the same images again
(`load_splits`, `held_out_images`) and to refuse a changed source
(`check_unchanged`).

The steps, one module each: what ``--data`` names and the held-out split
(`vae_balance.datasets.data_source`), a folder of image files
(`vae_balance.datasets.image_folder`), an .npz / .npy file or a tfds
dataset (`vae_balance.datasets.array_sources`), the resize and the network's
padding (`vae_balance.datasets.image_shapes`). Every problem raises `DataError`
naming the file and the fix (mixed sizes, too few images, an empty folder, a
corrupt image or one over Pillow's decompression-bomb limit); ``skip_bad``
skips bad files.
"""

import dataclasses

import numpy as np

from vae_balance.datasets.array_sources import (
    array_sha256,
    check_array,
    read_array,
    read_tfds,
)
from vae_balance.datasets.data_source import (
    DEFAULT_VAL_FRACTION,
    DataSource,
    parse_source,
    split_arrays,
)
from vae_balance.datasets.image_folder import check_one_size, read_folder
from vae_balance.datasets.image_shapes import (
    centre_pad,
    fit_size,
    pad_images,
    parse_size,
)
from vae_balance.datasets.registry import DataError

# Each kind of source's reader: ``(source, skip_bad, log) -> (arrays, block,
# names)``, names the files' paths of a folder (None for arrays).
_READERS = {"folder": read_folder, "array": read_array, "tfds": read_tfds}


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
    size = parse_size(image_size)
    if isinstance(source, np.ndarray):
        images = check_array(source, "images")
        source, arrays = DataSource("array", "<array>"), {"all": images}
        block, names = {"sha256": array_sha256(images)}, None
    else:
        source = source if isinstance(source, DataSource) else parse_source(source)
        arrays, block, names = _READERS[source.kind](source, skip_bad, log)
    native = {tuple(int(d) for d in i.shape) for a in arrays.values() for i in a[:1]}
    if names is not None:  # a folder: one list of images per split
        native = {tuple(i.shape) for a in arrays.values() for i in a}
        if size is None:
            check_one_size(arrays, names)
    arrays = {
        split: fit_size(images, size, center_crop) for split, images in arrays.items()
    }
    train, held_out, split = split_arrays(arrays, val_fraction, batch_size)
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
