"""The training job's callbacks: LR staircase, checkpoints on a full disk."""

import errno
import os

import keras
import numpy as np
import pytest

from vae_balance import workdir
from vae_balance.training import callbacks, checkpointer


def test_learning_rate_is_halved_as_a_staircase():
    schedule = callbacks.staircase(1e-3, 2)
    assert [schedule(e) for e in range(5)] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]
    )


# ------------------------------------------------------------- disk full
def _tiny_fit_with_checkpoints(workdir, epochs, make_vae):
    vae = make_vae(run_eagerly=True)
    images = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    callback = checkpointer.EpochCheckpoint(workdir, "stage1")
    vae.fit(images, batch_size=8, epochs=epochs, callbacks=[callback], verbose=0)
    return vae


def test_a_full_disk_during_a_checkpoint_save_keeps_the_previous_one(
    tmp_path, make_vae, monkeypatch
):
    run_dir = str(tmp_path)
    original, calls = keras.Model.save, []

    def save(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2:  # epoch 2: half the file, then the disk is full
            with open(filepath, "wb") as f:
                f.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filepath)
        return original(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save)
    with pytest.raises(workdir.SaveError) as error:
        _tiny_fit_with_checkpoints(run_dir, 3, make_vae)
    message = str(error.value)
    first = os.path.join(run_dir, "checkpoints", "stage1-epoch0001.keras")
    assert "stage1-epoch0002.keras: no space left on the device" in message
    assert f"The last complete checkpoint is kept: {first}" in message
    assert "run the same command again" in message
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == [
        "stage1-epoch0001.json",
        "stage1-epoch0001.keras",
    ]  # no partial file
    monkeypatch.undo()
    kept = workdir.load_checkpoint(first)
    assert int(kept.optimizer.iterations) == 2
    # The CLI prints it as a one-line error: SaveError is a WorkdirError.
    assert isinstance(error.value, workdir.WorkdirError)
