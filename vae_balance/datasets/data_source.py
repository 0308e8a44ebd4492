"""What ``train --data`` names, and how its images are split.

`parse_source` turns the text of ``--data`` into a `DataSource`:

- a folder of PNG / JPEG / BMP / WebP images (read by
  `vae_balance.datasets.image_folder`). A folder with ``train/`` and
  ``test/`` subfolders uses them as its two splits.
- an ``.npz`` or ``.npy`` file of images, or ``tfds:NAME`` (read by
  `vae_balance.datasets.array_sources`); a tfds dataset keeps its own
  ``test`` split when it has one.

A source without a test split gets a deterministic held-out split
(`split_held_out`): the fraction ``val_fraction`` (default
`DEFAULT_VAL_FRACTION`) of the images, chosen by a permutation seeded with
`SPLIT_SEED` (not the run's seed: changing ``--seed`` keeps the split).
"""

import dataclasses
import os

import numpy as np

from vae_balance.datasets.registry import DataError, DatasetNotFoundError

DEFAULT_VAL_FRACTION = 0.1
SPLIT_SEED = 0  # the held-out split stays when --seed changes
KINDS = ("folder", "array", "tfds")


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


# --------------------------------------------------------------- the split
def split_arrays(arrays, val_fraction, batch_size):
    """``(train, held_out, the split's record)``: the source's own test split
    (``arrays`` has "train" and "test"), else ``val_fraction`` of its images
    (``arrays["all"]``) held out."""
    if "all" in arrays:
        train, held_out = split_held_out(arrays["all"], val_fraction, batch_size)
        split = {"split": "held-out", "val_fraction": val_fraction}
        split["split_seed"] = SPLIT_SEED
        return train, held_out, split
    train, held_out = arrays["train"], arrays["test"]
    _check_enough(len(train), batch_size, None)
    return train, held_out, {"split": "test"}


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
