"""Image datasets as tf.data pipelines of float32 images in [0, 1].

The modules, in dependency order (each imports only the ones above it):

- `vae_balance.datasets.registry`: the known datasets (`DatasetSpec`: native
  and network shapes, hence the padding), the aliases and the errors.
  TensorFlow-free.
- `vae_balance.datasets.formats`: file formats: CIFAR-10 python batches (a
  restricted unpickler), IDX, the CelebA partition, image decoding, the CelebA
  crop and the JPEG round trip.
- `vae_balance.datasets.cache`: the ``.npy`` cache of decoded CelebA images.
- `vae_balance.datasets.sources`: where a split is read from: local files or
  tensorflow-datasets (after a network probe), driven by one `SplitRequest`,
  and the "not found" messages.
- `vae_balance.datasets.arrays`: images in memory as datasets: `from_arrays`,
  `from_folder`, the central zero padding to a shape, uint8 -> float32.
- `vae_balance.datasets.pipeline`: the public entry points: `load_split`,
  `load_dataset`, `make_train_dataset`, `make_eval_dataset`, `num_examples`,
  `config_padding`, `remove_padding`. It depends on `vae_balance.config`
  (preset names), never the reverse.

This package's ``__init__`` imports only the registry (no TensorFlow, no
configuration), so `vae_balance.config` can import the registry without a
cycle; import the pipeline's functions from `vae_balance.datasets.pipeline`.
"""

from vae_balance.datasets.registry import (
    ALIASES,
    DATASETS,
    SPLITS,
    DataError,
    DatasetNotFoundError,
    DatasetSpec,
    canonical_name,
    get_spec,
    padding,
)

__all__ = [
    "ALIASES",
    "DATASETS",
    "SPLITS",
    "DataError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "canonical_name",
    "get_spec",
    "padding",
]
