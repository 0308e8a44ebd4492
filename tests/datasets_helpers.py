"""Helpers of the tests/test_datasets_*.py files (plain functions; the
fixtures are in datasets_fixtures.py)."""

import numpy as np

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def as_array(dataset):
    return np.concatenate(list(dataset.batch(100_000).as_numpy_iterator()))


def cifar_batch(images, labels):
    """The real structure of a CIFAR-10 python batch (channel-major rows)."""
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [int(label) for label in labels],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }


def celeba_image(inside, outside=50):
    """218x178 RGB: ``inside`` in the paper's crop region, ``outside`` around."""
    image = np.full((218, 178, 3), outside, np.uint8)
    image[45:173, 25:153] = inside
    return image


def idx_bytes(images):
    header = bytes([0, 0, 0x08, images.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    return header + images.tobytes()
