"""The datasets the loaders know: names, shapes, splits, sources; the errors.

TensorFlow-free (standard library only), so that `vae_balance.config` can
check a configuration's padding against it without loading TensorFlow and
without importing the pipeline (which depends on the configuration, never the
reverse).

Dataset names: ``"cifar10"``, ``"celeb_a"``, ``"fashion_mnist"``, ``"mnist"``
and ``"folder"``. ``"celeb_a"`` (tensorflow-datasets' name, and the name in
the CelebA cache files) is canonical; ``"celeba"`` (the preset's name),
``"cifar"`` and ``"fashion"`` are accepted aliases (see `canonical_name`), so
the ``config.json`` of older runs keeps loading.

Padding is stated once, here: the zero border the loader adds on each side of
a dataset's native images to reach the network's shape (`padding`), derived
from the two shapes of a `DatasetSpec`.
"""

import dataclasses

SPLITS = ("train", "validation", "test")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not on disk and cannot be downloaded now."""


class DataError(ValueError):
    """A file or array holds something the loader cannot use."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the loaders know about one dataset.

    Attributes:
        name: the canonical dataset name.
        native_shape: the shape of the images on disk; None when unknown in
            advance (folders).
        image_shape: the shape the presets feed the networks; None: the
            images' own shape.
        splits: the splits the dataset has.
        tfds_name: its tensorflow-datasets name (None: no tfds source).
        host: the host tfds downloads it from (probed before downloading).
        local_dirs: directories searched when no ``data_dir`` is given (after
            them, tfds's default data directory).
        resized: the native images are cropped and resized to ``image_shape``
            (CelebA) rather than zero-padded to it.
    """

    name: str
    native_shape: tuple | None
    image_shape: tuple | None
    splits: tuple = SPLITS
    tfds_name: str | None = None
    host: str | None = None
    local_dirs: tuple = ()
    resized: bool = False

    def padding_for(self, image_shape):
        """Zero pixels the loader adds on each side to reach ``image_shape``.

        Args:
            image_shape: the network's ``(H, W, C)`` (or None).

        Returns:
            2 for 28x28 Fashion-MNIST / MNIST at 32x32, 0 for CIFAR-10 and
            CelebA (cropped and resized instead); None where the native size
            is not known in advance (folders) or ``image_shape`` is None.
        """
        if self.native_shape is None or image_shape is None:
            return None
        if self.resized:
            return 0
        return max(0, (int(image_shape[0]) - self.native_shape[0]) // 2)

    @property
    def padding(self):
        """`padding_for` the dataset's own network ``image_shape``."""
        return self.padding_for(self.image_shape)


DATASETS = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "cifar10",
            native_shape=(32, 32, 3),
            image_shape=(32, 32, 3),
            splits=("train", "test"),
            tfds_name="cifar10",
            host="www.cs.toronto.edu",
            local_dirs=("~/.keras/datasets",),
        ),
        DatasetSpec(
            "celeb_a",
            native_shape=(218, 178, 3),
            image_shape=(64, 64, 3),
            tfds_name="celeb_a",
            host="drive.google.com",
            resized=True,
        ),
        DatasetSpec(
            "fashion_mnist",
            native_shape=(28, 28, 1),
            image_shape=(32, 32, 1),
            splits=("train", "test"),
            tfds_name="fashion_mnist",
            host="fashion-mnist.s3-website.eu-central-1.amazonaws.com",
            local_dirs=(
                "/usr/share/datasets/fashion-mnist",  # Debian: dataset-fashion-mnist
                "~/.keras/datasets/fashion-mnist",  # keras.datasets.fashion_mnist
            ),
        ),
        DatasetSpec(
            "mnist",
            native_shape=(28, 28, 1),
            image_shape=(32, 32, 1),
            splits=("train", "test"),
            tfds_name="mnist",
            host="storage.googleapis.com",
            local_dirs=("/usr/share/datasets/mnist", "~/.keras/datasets"),
        ),
        DatasetSpec("folder", native_shape=None, image_shape=None),
    )
}
ALIASES = {"celeba": "celeb_a", "cifar": "cifar10", "fashion": "fashion_mnist"}


def canonical_name(dataset):
    """The canonical name of a dataset name or alias (others unchanged)."""
    return ALIASES.get(dataset, dataset)


def get_spec(dataset):
    """The `DatasetSpec` of a dataset name or alias, or None if unknown."""
    return DATASETS.get(canonical_name(dataset))


def pad_box(pad):
    """``(top, bottom, left, right)`` of a padding: an int (the same on every
    side, the presets' 28 -> 32) or four ints (a folder of 40x48 images padded
    to 64x64: ``(12, 12, 8, 8)``); None is 0."""
    if pad is None:
        return (0, 0, 0, 0)
    if isinstance(pad, (int,)) or hasattr(pad, "__index__"):
        return (int(pad),) * 4
    box = tuple(int(p) for p in pad)
    if len(box) != 4 or min(box) < 0:
        raise ValueError(
            f"pad must be an int or (top, bottom, left, right) >= 0, got {pad!r}."
        )
    return box


def pad_value(pad):
    """The canonical form of a padding: an int when all four sides agree
    (what the presets' and older runs' ``config.json`` hold), else a tuple
    ``(top, bottom, left, right)``."""
    box = pad_box(pad)
    return box[0] if len(set(box)) == 1 else box


def padding(dataset, image_shape):
    """Zero pixels the loader adds on each side of a dataset's native images.

    `VAEConfig` checks its ``pad`` against this, so the two cannot disagree.

    Args:
        dataset: a dataset name or alias.
        image_shape: the network's ``(H, W, C)``.

    Returns:
        `DatasetSpec.padding_for` ``image_shape``; None for an unknown name.
    """
    spec = get_spec(dataset)
    return None if spec is None else spec.padding_for(image_shape)
