"""Deprecated location of the data loaders: use `vae_balance.datasets`.

A thin re-export kept for one release, so that code written against the old
single module (``from vae_balance import data; data.load_split(...)``) keeps
working. The code now lives in:

- `vae_balance.datasets.registry`: `DatasetSpec`, ``DATASETS``, the errors,
  `padding` (formerly ``loader_padding``);
- `vae_balance.datasets.formats`: `read_cifar_batch`, `read_idx`,
  `celeba_crop_resize`, `jpeg_roundtrip_images`;
- `vae_balance.datasets.cache`: `default_cache_dir`;
- `vae_balance.datasets.sources`: local and tfds readers;
- `vae_balance.datasets.pipeline`: `load_split`, `load_dataset`,
  `from_arrays`, `from_folder`, `make_train_dataset`, `make_eval_dataset`,
  `num_examples`, `remove_padding`, `config_padding` (formerly
  ``get_padding``).

``DATASETS`` and ``LOCAL_DIRS`` here keep their old dict-of-dicts form; the
registry's ``DATASETS`` maps names to `DatasetSpec` objects.
"""

import logging

from vae_balance.datasets.cache import default_cache_dir
from vae_balance.datasets.formats import (
    CELEBA_CROP,
    CELEBA_PARTITION,
    IMAGE_EXTENSIONS,
    celeba_crop_resize,
    jpeg_roundtrip_images,
    read_cifar_batch,
    read_idx,
)
from vae_balance.datasets.pipeline import (
    config_padding as get_padding,
)
from vae_balance.datasets.pipeline import (
    from_arrays,
    from_folder,
    load_dataset,
    load_split,
    make_eval_dataset,
    make_train_dataset,
    num_examples,
    remove_padding,
)
from vae_balance.datasets.registry import (
    DATASETS as _SPECS,
)
from vae_balance.datasets.registry import (
    SPLITS,
    DataError,
    DatasetNotFoundError,
)
from vae_balance.datasets.registry import (
    padding as loader_padding,
)
from vae_balance.datasets.sources import (
    CELEBA_URL,
    CIFAR_URL,
    FASHION_MNIST_URL,
    MNIST_URL,
)

logger = logging.getLogger("vae_balance.data")

DATASETS = {
    name: {
        "native_shape": spec.native_shape,
        "image_shape": spec.image_shape,
        "splits": spec.splits,
        "tfds_name": spec.tfds_name,
        "host": spec.host,
    }
    for name, spec in _SPECS.items()
}
LOCAL_DIRS = {name: spec.local_dirs for name, spec in _SPECS.items() if spec.tfds_name}

__all__ = [
    "CELEBA_CROP",
    "CELEBA_PARTITION",
    "CELEBA_URL",
    "CIFAR_URL",
    "DATASETS",
    "DataError",
    "DatasetNotFoundError",
    "FASHION_MNIST_URL",
    "IMAGE_EXTENSIONS",
    "LOCAL_DIRS",
    "MNIST_URL",
    "SPLITS",
    "celeba_crop_resize",
    "default_cache_dir",
    "from_arrays",
    "from_folder",
    "get_padding",
    "jpeg_roundtrip_images",
    "load_dataset",
    "load_split",
    "loader_padding",
    "make_eval_dataset",
    "make_train_dataset",
    "num_examples",
    "read_cifar_batch",
    "read_idx",
    "remove_padding",
]
