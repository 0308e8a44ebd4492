"""The job's images: the training dataset and the test images, from the
arguments of `vae_balance.training.job.train` or from files."""

import numpy as np

from vae_balance.datasets import pipeline, user_data
from vae_balance.datasets.arrays import from_arrays

__all__ = ["NUM_TEST_IMAGES", "load_data"]

NUM_TEST_IMAGES = 1000  # test images for the validation loss and grids


def load_data(config, train_data, test_images, data_dir, limit, skip_bad=False):
    """``(unbatched train dataset, float32 NumPy test images)``.

    ``train_data`` / ``test_images`` as `train` takes them (None: the
    config's own images, or ``config.dataset`` from ``data_dir``); at most
    ``limit`` training and `NUM_TEST_IMAGES` test images.
    """
    if train_data is None and config.data:  # your own images, read again
        train_data, held_out = user_data.load_splits(config, skip_bad=skip_bad)
        test_images = held_out if test_images is None else test_images
    if train_data is None:
        train_data = pipeline.load_split(
            config, "train", data_dir, limit=limit, dtype="uint8", skip_bad=skip_bad
        )
    elif isinstance(train_data, np.ndarray):
        train_data = from_arrays(train_data, image_shape=config.image_shape)
    if limit is not None:
        train_data = train_data.take(limit)
    if test_images is None:
        test_limit = min(limit or NUM_TEST_IMAGES, NUM_TEST_IMAGES)
        test_images = pipeline.load_split(
            config, "test", data_dir, limit=test_limit, skip_bad=skip_bad
        )
    if not isinstance(test_images, np.ndarray):
        test_images = np.stack(
            list(test_images.take(NUM_TEST_IMAGES).as_numpy_iterator())
        )
    elif test_images.dtype == np.uint8:
        test_images = test_images.astype("float32") / 255.0
    return train_data, test_images[:NUM_TEST_IMAGES].astype("float32")
