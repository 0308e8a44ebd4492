"""vae_balance.datasets.formats: CIFAR-10 batches (the restricted unpickler),
IDX files and the CelebA crop, in their real on-disk formats.
"""

import pickle
import struct

import numpy as np
import pytest
from datasets_helpers import celeba_image, cifar_batch

from vae_balance.datasets import formats, pipeline
from vae_balance.datasets.registry import DataError


@pytest.fixture(autouse=True)
def offline(network_attempts, cache_dir):
    """No network (a connection attempt fails the test), caches in tmp_path."""


# --------------------------------------------------------------- CIFAR-10
def py2_cifar_pickle(rows, labels):
    """A batch as the official files hold it: a Python 2 pickle (protocol 2,
    SHORT_BINSTRING strings, NumPy 1's numpy.core.multiarray), opcode by
    opcode, since Python 3 cannot write one."""

    def string(text):
        return b"U" + bytes([len(text)]) + text

    def uint16(value):
        return b"M" + struct.pack("<H", value)

    raw = rows.tobytes()
    return b"".join(
        [
            b"\x80\x02}q\x00(",
            string(b"data"),
            b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02",
            b"K\x00\x85" + string(b"b") + b"\x87Rq\x03(K\x01",
            uint16(rows.shape[0]) + uint16(rows.shape[1]) + b"\x86",
            b"cnumpy\ndtype\nq\x04" + string(b"u1") + b"K\x00K\x01\x87Rq\x05(K\x03",
            string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
            b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb",
            string(b"labels") + b"]q\x06(",
            b"".join(b"K" + bytes([label]) for label in labels),
            b"eu.",
        ]
    )


def test_python2_batch_like_the_official_files(tmp_path):
    images = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), np.uint8)
    rows = cifar_batch(images, [0, 0])[b"data"]
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_cifar_pickle(rows, [3, 7]))
    reference = pickle.loads(path.read_bytes(), encoding="bytes")
    np.testing.assert_array_equal(reference[b"data"], rows)  # a valid pickle
    loaded, labels = formats.read_cifar_batch(path)
    np.testing.assert_array_equal(loaded, images)
    np.testing.assert_array_equal(labels, [3, 7])


class CreatesAFile:
    """Unpickling this with pickle.load would create ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_cifar_pickle_is_refused_and_runs_nothing(cifar_dir, tmp_path):
    root, _, _ = cifar_dir
    target = tmp_path / "pwned"
    payload = pickle.dumps({b"data": CreatesAFile(str(target)), b"labels": []})
    pickle.loads(payload)  # the payload works: a plain unpickler runs it
    assert target.exists()
    target.unlink()
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_2.*refused global") as error:
        pipeline.load_split("cifar10", "train", root)
    assert str(batch) in str(error.value)
    assert not target.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (pickle.dumps([1, 2, 3]), "is a dict"),
        (
            pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 0]}),
            "expected b'data' uint8",
        ),
        (
            pickle.dumps({b"data": np.array([None, 1], object), b"labels": []}),
            "object dtype",
        ),
        (pickle.dumps({b"x": 1})[:-5], "not a readable"),
    ],
    ids=["not-a-dict", "float-data", "object-array", "truncated"],
)
def test_bad_cifar_batches_raise_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        formats.read_cifar_batch(path)
    assert str(path) in str(error.value)


# ----------------------------------------------------------------- CelebA
def test_celeba_crop_resize_takes_rows_45_173_and_cols_25_153():
    np.testing.assert_array_equal(
        formats.celeba_crop_resize(celeba_image(200, outside=0)[None]),
        np.full((1, 64, 64, 3), 200, np.uint8),
    )
    ramp = np.broadcast_to(
        np.arange(178, dtype=np.uint8)[None, :, None], (218, 178, 3)
    ).copy()
    out = formats.celeba_crop_resize(ramp[None])[0, :, :, 0].astype(float)
    # Columns 25..152 averaged in pairs: 25.5, 27.5, ..., 151.5 (rounded).
    np.testing.assert_allclose(out[0], np.arange(25.5, 153, 2), atol=0.51)
    assert (out == out[0]).all()  # rows are all alike
    # 2-pixel stripes: a plain bilinear 2x downsample keeps them (0 / 255), the
    # antialiased one (a 4-tap triangle) blends neighbours: 64 and 191.
    stripes = np.zeros((218, 178, 3), np.uint8)
    stripes[:, 25 + 2 :: 4] = 255
    stripes[:, 25 + 3 :: 4] = 255
    out = formats.celeba_crop_resize(stripes[None])[0, 10, 1:-1, 0]
    np.testing.assert_array_equal(np.unique(out), [64, 191])


# --------------------------------------------------------------------- IDX
def test_truncated_idx_file_is_named(idx_dir):
    folder, _, _ = idx_dir
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated"):
        pipeline.load_split("fashion_mnist", "test", folder)
