"""Image datasets as tf.data pipelines of float32 images in [0, 1].

The modules, in dependency order (each imports only the ones above it):

- `vae_balance.datasets.registry`: the known datasets (`DatasetSpec`: native
  and network shapes, hence the padding), the aliases and the errors.
  TensorFlow-free.
- `vae_balance.datasets.formats`: file formats: CIFAR-10 python batches (a
  restricted unpickler), IDX, the CelebA partition, image decoding (on
  threads: `image_folder.decode_in_threads`, from the TensorFlow-free group
  below, which imports only the registry), the CelebA crop and the JPEG
  round trip.
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
- `vae_balance.datasets.stream`: each epoch's data as a function of the seed
  and the epoch.

Your own images (``train --data``), TensorFlow-free, each importing only
the registry, except `user_data` which puts them together:

- `vae_balance.datasets.data_source`: what ``--data`` names (`DataSource`,
  `parse_source`) and the seeded held-out split (`split_held_out`).
- `vae_balance.datasets.image_folder`: a folder of image files, read and
  decoded (`read_folder`, `decode_user_image`, `BadImageError`).
- `vae_balance.datasets.array_sources`: an .npz / .npy file or a tfds
  dataset (`read_array`, `read_tfds`, `check_array`).
- `vae_balance.datasets.image_shapes`: the resize to ``image_size``, the
  network's shape and the zero padding to it (`network_shape`, `centre_pad`,
  `pad_images`).
- `vae_balance.datasets.user_data`: `read_source` (a source read, resized and
  split into a `UserData` with its ``data`` block) and a run's recorded images
  read again (`load_splits`, `held_out_images`, `check_unchanged`).

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
