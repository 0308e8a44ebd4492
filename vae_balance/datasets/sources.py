"""Where a split is read from: local files or tensorflow-datasets.

`read_split` takes one `SplitRequest` (which dataset and split, where, and
how) and returns the split as a uint8 NumPy array ``(n, H, W, C)`` at the
dataset's native size (CelebA: cropped and resized, possibly memory-mapped
from its cache). It tries the local readers first, each on ``data_dir`` (or
the dataset's `DatasetSpec.local_dirs`), then tensorflow-datasets, which is
only asked to download when the split is not prepared and a 3-second probe
of the download host succeeds. A reader that finds nothing returns the
places it looked, which end up in the `DatasetNotFoundError` message.
"""

import dataclasses
import logging
import os
import socket
import threading

import numpy as np

from vae_balance.datasets import cache as cache_lib
from vae_balance.datasets.formats import (
    celeba_crop_resize,
    decode_images,
    read_celeba_partition,
    read_cifar_batch,
    read_idx,
    read_image_folder,
)
from vae_balance.datasets.registry import (
    DATASETS,
    DataError,
    DatasetNotFoundError,
    DatasetSpec,
)

# The package's public logger name (callers attach handlers to it).
logger = logging.getLogger("vae_balance.data")

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist#get-the-data"
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"


@dataclasses.dataclass(frozen=True)
class SplitRequest:
    """One split to read, where from and how (see `load_split`'s arguments).

    Attributes:
        spec: the dataset.
        split: "train", "validation" or "test".
        data_dir: the local data or tfds data directory; None: the dataset's
            `DatasetSpec.local_dirs`, then tfds's default. Required for
            folders.
        image_shape: the network's shape (CelebA's resize side, a folder's
            channel count); None: the images' own.
        source: "auto" (local first, then tfds), "local" or "tfds".
        limit: keep only the first ``limit`` images (no CelebA cache then).
        skip_bad: skip bad images (logging a count) instead of raising.
        cache_dir: CelebA's cache directory; None: `default_cache_dir`.
        download: let tfds download a dataset that is not prepared.
    """

    spec: DatasetSpec
    split: str
    data_dir: str | None = None
    image_shape: tuple | None = None
    source: str = "auto"
    limit: int | None = None
    skip_bad: bool = False
    cache_dir: str | None = None
    download: bool = True

    @property
    def name(self):
        """The canonical dataset name."""
        return self.spec.name

    @property
    def side(self):
        """CelebA's resized side: the network's height (default 64)."""
        return self.image_shape[0] if self.image_shape else 64

    def head(self, images):
        """The first ``limit`` images (all without a limit)."""
        return images[: self.limit] if self.limit else images


def read_split(request):
    """The uint8 array of a split, from local files or tfds.

    Args:
        request: the `SplitRequest`.

    Returns:
        uint8 ``(n, H, W, C)`` images (possibly memory-mapped, possibly
        empty).

    Raises:
        DatasetNotFoundError: nowhere to be found; the message lists where
            it looked and how to get the data.
        DataError: a bad file, named.
    """
    if request.name == "folder":
        return read_folder_split(request)
    looked = ()
    if request.source in ("auto", "local"):
        dirs = request.spec.local_dirs
        if request.data_dir is not None:
            dirs = [request.data_dir]
        for directory in dirs:
            directory = os.path.expanduser(str(directory))
            images, notes = _LOCAL_READERS[request.name](request, directory)
            looked += notes
            if images is not None:
                return images
    if request.source in ("auto", "tfds"):
        return _tfds_split(request, looked)
    raise DatasetNotFoundError(not_found_message(request, looked))


def not_found_message(request, looked, extra=""):
    """What a `DatasetNotFoundError` says: where we looked, how to get it."""
    name, data_dir = request.name, request.data_dir
    where = "\n".join(f"  - {line}" for line in looked) or "  (nowhere)"
    tfds_name = request.spec.tfds_name
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
        f"Could not load the {request.split!r} split of {name}. Looked for:\n"
        f"{where}\n{extra}To get it, either {local} and pass data_dir=DATA_DIR; "
        f"or, on a machine with internet access, run {build}{note}."
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


def _tfds_builder(request, looked):
    """The prepared tfds builder (downloading it if allowed and reachable)."""
    try:
        import tensorflow_datasets as tfds  # slow to import; only without local data
    except ImportError:
        looked += (
            "tensorflow-datasets: not installed (pip install tensorflow-datasets)",
        )
        raise DatasetNotFoundError(not_found_message(request, looked)) from None
    tfds_name = request.spec.tfds_name
    builder = tfds.builder(tfds_name, data_dir=request.data_dir)
    if builder.is_prepared():
        return builder
    looked += (f"tfds {tfds_name} in {builder.data_dir}: not prepared",)
    host = request.spec.host
    if not request.download:
        extra = "download=False. "
        raise DatasetNotFoundError(not_found_message(request, looked, extra))
    if not _network_reachable(host):
        extra = f"{host} is unreachable (no network), so tfds cannot download it here. "
        raise DatasetNotFoundError(not_found_message(request, looked, extra))
    logger.info("Downloading and preparing tfds %s in %s", tfds_name, builder.data_dir)
    builder.download_and_prepare()
    return builder


def _tfds_split(request, looked):
    builder = _tfds_builder(request, looked)
    dataset = builder.as_dataset(split=request.split, shuffle_files=False)
    dataset = dataset.map(lambda example: example["image"])
    if request.limit is not None:
        dataset = dataset.take(request.limit)
    if request.name == "celeb_a":
        return _celeba_from_tfds(request, builder, dataset)
    chunks = [chunk for chunk in dataset.batch(4096).as_numpy_iterator()]
    if not chunks:
        return np.zeros((0,) + request.spec.native_shape, np.uint8)
    return np.concatenate(chunks)


def _celeba_from_tfds(request, builder, dataset):
    split, side = request.split, request.side
    cache = None
    if request.limit is None:
        key = cache_lib.cache_key(str(builder.data_path), builder.version, split, side)
        stem = f"celeb_a-tfds-{split}-{side}"
        cache = cache_lib.cache_path(request.cache_dir, stem, key)
        if os.path.exists(cache):
            return np.load(cache, mmap_mode="r")
    chunks = (
        celeba_crop_resize(batch, side)
        for batch in dataset.batch(256).as_numpy_iterator()
    )
    max_count = None
    if builder.info.splits and split in builder.info.splits:
        max_count = builder.info.splits[split].num_examples
    return cache_lib.collect(chunks, (side, side, 3), cache, max_count)


# -------------------------------------------------------------- local sources
def _cifar_local(request, directory):
    """CIFAR-10 python batches in directory[/cifar-10-batches-py]."""
    candidates = [os.path.join(directory, "cifar-10-batches-py"), directory]
    names = (
        ["test_batch"]
        if request.split == "test"
        else [f"data_batch_{i}" for i in range(1, 6)]
    )
    looked = []
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
        return request.head(np.concatenate(images)), tuple(looked)
    return None, tuple(looked)


def _mnist_local(request, directory):
    """(Fashion-)MNIST IDX files (.gz or raw), else Keras's mnist.npz."""
    prefix = "t10k" if request.split == "test" else "train"
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"]
    folders = [directory]
    if request.name == "fashion_mnist":
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
                    return request.head(images[..., None]), ()
    looked = (f"IDX file {stems[0]}[.gz] in {directory}: not found",)
    npz = os.path.join(directory, "mnist.npz")
    if request.name == "mnist" and os.path.isfile(npz):  # Keras's cache
        with np.load(npz, allow_pickle=False) as arrays:
            key = "x_test" if request.split == "test" else "x_train"
            if key not in arrays:
                raise DataError(f"{npz}: no {key} array (keys: {list(arrays)}).")
            images = arrays[key][..., None]
        return request.head(images), looked
    return None, looked


def _celeba_local(request, directory):
    """CelebA JPEGs and partition file, cropped, resized and cached."""
    image_dir, partition = _find_celeba(directory)
    if image_dir is None:
        looked = (
            f"CelebA {directory}/img_align_celeba/*.jpg and "
            f"{directory}/list_eval_partition.txt: not found",
        )
        return None, looked
    split, side = request.split, request.side
    files = read_celeba_partition(partition, split)
    cache = None
    if request.limit is None:
        stat = os.stat(partition)
        key = cache_lib.cache_key(
            os.path.abspath(image_dir),
            os.stat(image_dir).st_mtime_ns,
            os.path.abspath(partition),
            stat.st_size,
            stat.st_mtime_ns,
            split,
            side,
        )
        stem = f"celeb_a-{split}-{side}"
        cache = cache_lib.cache_path(request.cache_dir, stem, key)
        if os.path.exists(cache):
            logger.info("Loading the CelebA %s cache %s", split, cache)
            return np.load(cache, mmap_mode="r"), ()
    files = _present_files(request, files, image_dir, partition)
    paths = [os.path.join(image_dir, f) for f in request.head(files)]
    logger.info(
        "Decoding %d CelebA %s JPEGs from %s (once)", len(paths), split, image_dir
    )

    def chunks():
        for start in range(0, len(paths), 1024):
            batch = decode_images(
                paths[start : start + 1024],
                DATASETS["celeb_a"].native_shape,
                request.skip_bad,
            )
            if len(batch):
                yield celeba_crop_resize(batch, side)

    return cache_lib.collect(chunks(), (side, side, 3), cache, len(paths)), ()


def _find_celeba(directory):
    """(image folder, partition file) of a CelebA layout, or (None, None).

    Raises:
        DatasetNotFoundError: one of the two is there without the other.
    """
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
        return None, None
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
    return image_dir, partition


def _present_files(request, files, image_dir, partition):
    """The partition's files that exist; DataError for missing ones unless
    ``skip_bad`` (then a warning)."""
    present = set(os.listdir(image_dir))
    missing = [f for f in files if f not in present]
    if not missing:
        return files
    message = (
        f"{partition} lists {len(missing)} {request.split} file(s) missing from "
        f"{image_dir}, e.g. {os.path.join(image_dir, missing[0])}"
    )
    if not request.skip_bad:
        raise DataError(message + " (skip_bad=True skips them).")
    logger.warning("%s; skipping them.", message)
    return [f for f in files if f in present]


_LOCAL_READERS = {
    "cifar10": _cifar_local,
    "celeb_a": _celeba_local,
    "fashion_mnist": _mnist_local,
    "mnist": _mnist_local,
}


# ------------------------------------------------------------- image folders
def read_folder_split(request):
    """A split of the "folder" dataset: ``data_dir/<split>/`` when present
    (else ``data_dir`` itself for "train")."""
    data_dir, split = request.data_dir, request.split
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
    return read_image_folder(root, request.image_shape, request.limit, request.skip_bad)


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
