"""Fitting one stage (vae_balance.training.stages): from scratch, resumed,
finished, diverged; and stage 1's BatchNorm recalibration, done once.

The whole job around these is tested in test_training.py."""

import csv
import json
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from vae_balance import build_vae
from vae_balance.config import get_preset
from vae_balance.datasets import arrays, stream
from vae_balance.model import batchnorm
from vae_balance.training import stages
from vae_balance.workdir import Workdir, list_checkpoints, load_checkpoint

IMAGES = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
DATASET = arrays.from_arrays(IMAGES)  # unbatched, as the job passes it
STEPS = 16 // 8


def _listed(run):
    return list_checkpoints(run.workdir.checkpoint_dir, "stage1")


def _run(tmp_path, **overrides):
    """The job's options that `fit_stage` and `finish_first_stage` read
    (a `RunOptions` stand-in), for the "tiny" preset in tmp_path/run."""
    root = tmp_path / "run"
    root.mkdir(exist_ok=True)
    return types.SimpleNamespace(
        config=get_preset("tiny", **overrides),
        workdir=Workdir(root),
        strategy=tf.distribute.get_strategy(),
        verbose=0,
        jit_compile=False,
        stops=None,
        checkpoint_minutes=None,
        checkpoint_steps=None,
        snapshot_every=None,
        recalibrate_bn=True,
        recalibrate_batches=2,
    )


def _spec(run, epochs, learning_rate=1e-3):
    config = run.config
    return stages.StageSpec(
        "stage1", lambda: build_vae(config), epochs, learning_rate, config.lr_epochs
    )


def _fit(run, spec, callbacks=()):
    config = run.config

    def make_epoch(epoch, start):
        return stream.image_epoch(DATASET, config.batch_size, config.seed, epoch, start)

    return stages.fit_stage(run, spec, make_epoch, STEPS, callbacks=list(callbacks))


def _steps(run):
    with open(run.workdir.steps_csv("stage1"), newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def test_fit_stage_trains_saves_and_a_finished_stage_is_only_loaded(tmp_path):
    run = _run(tmp_path)
    model, logs = _fit(run, _spec(run, epochs=2))
    assert np.isfinite(logs["loss"]) and set(logs) >= {"loss", "mse", "gamma"}
    assert int(model.optimizer.iterations) == 2 * STEPS
    saved = load_checkpoint(run.workdir.stage_path("stage1"))
    assert int(saved.optimizer.iterations) == 2 * STEPS
    assert float(saved.running_mse) == pytest.approx(float(model.running_mse))
    assert [c.position.epoch for c in _listed(run)] == [1, 2]
    assert _steps(run) == [1, 2, 3, 4]
    # Fitting the finished stage again loads it and trains nothing.
    again, logs = _fit(run, _spec(run, epochs=2))
    assert logs == {}
    assert int(again.optimizer.iterations) == 2 * STEPS
    assert _steps(run) == [1, 2, 3, 4]


def test_training_past_a_finished_stage_removes_its_older_file(tmp_path, capsys):
    run = _run(tmp_path)
    _fit(run, _spec(run, epochs=1))
    final = run.workdir.stage_path("stage1")
    assert os.path.exists(final)
    # More epochs: while they train, no stage file older than the model is
    # left for evaluate, export or a rerun to read.
    seen = []
    look = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen.append(os.path.exists(final))
    )
    model, _ = _fit(run, _spec(run, epochs=2), callbacks=[look])
    assert seen == [False] * STEPS
    assert f"{final} removed: training continues past it" in capsys.readouterr().out
    assert int(load_checkpoint(final).optimizer.iterations) == 2 * STEPS


def test_a_non_finite_loss_raises_training_diverged_keeping_the_checkpoint(
    tmp_path,
):
    run = _run(tmp_path)
    _fit(run, _spec(run, epochs=1))
    kept = _listed(run)[-1]
    assert kept.position.epoch == 1
    # Adam's first step at 1e30 moves the weights by ~1e30: the next loss
    # overflows. The stage resumes from epoch 1 and stops in epoch 2.
    with pytest.raises(stages.TrainingDiverged) as error:
        _fit(run, _spec(run, epochs=2, learning_rate=1e30))
    message = str(error.value)
    assert "non-finite loss at step" in message
    assert f"The last good checkpoint is kept: {kept.path}" in message
    assert "--learning-rate" in message
    assert _listed(run)[-1] == kept
    # The diverged epoch's rows are not kept as steps of the stage.
    resumed, logs = _fit(run, _spec(run, epochs=2))
    assert np.isfinite(logs["loss"])
    assert int(resumed.optimizer.iterations) == 2 * STEPS
    assert _steps(run) == [1, 2, 3, 4]


def test_recalibration_batches_are_seeded_shuffled_batches_of_the_batch_size():
    config = get_preset("tiny", batch_size=4)
    first = [b.numpy() for b in batchnorm.recalibration_batches(DATASET, config)]
    again = [b.numpy() for b in batchnorm.recalibration_batches(DATASET, config)]
    assert [len(b) for b in first] == [4, 4, 4, 4]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    order = np.concatenate(first)
    assert not np.array_equal(order, IMAGES)  # shuffled
    np.testing.assert_array_equal(  # the same 16 images
        np.sort(order.reshape(16, -1), axis=0), np.sort(IMAGES.reshape(16, -1), axis=0)
    )


def test_finish_first_stage_recalibrates_once_and_records_it(tmp_path, capsys):
    run = _run(tmp_path)
    model, _ = _fit(run, _spec(run, epochs=1))
    stage_path = run.workdir.stage_path("stage1")
    assert not run.workdir.is_recalibrated(stage_path)
    assert stages.finish_first_stage(run, model, DATASET, IMAGES[:8]) is True
    out = capsys.readouterr().out
    assert "BatchNorm statistics recomputed from 16 training images" in out
    assert "validation MSE: inference mode" in out
    assert run.workdir.is_recalibrated(stage_path)
    with open(os.path.join(run.workdir.root, "batchnorm.json")) as f:
        record = json.load(f)["stage1"]
    assert (record["images"], record["batches"]) == (16, 2)
    assert 0 < record["val_mse_after"] < record["val_mse_before"] * 1.5
    # The recorded stage file is not recalibrated again.
    calibrated = open(stage_path, "rb").read()
    assert stages.finish_first_stage(run, model, DATASET, IMAGES[:8]) is False
    assert open(stage_path, "rb").read() == calibrated


def test_a_resumed_stage_trains_with_the_configurations_running_rule(tmp_path, capsys):
    run = _run(tmp_path)
    _fit(run, _spec(run, epochs=1))
    # Continued with another rule and momentum (--running-rule ema
    # --allow-config-change): the resumed steps follow the new ones.
    run.config = get_preset(
        "tiny", running_rule="ema", momentum=0.5, min_gamma=2e-3, kl_weight=0.25
    )
    model, _ = _fit(run, _spec(run, epochs=2))
    out = capsys.readouterr().out
    assert (
        "[stage1] resumed with the configuration's kl_weight 1.0 -> 0.25, "
        "momentum 0.99 -> 0.5, running_rule 'min' -> 'ema', "
        "min_gamma 0.001 -> 0.002"
    ) in out
    with open(run.workdir.steps_csv("stage1"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    running = [float(r["running_mse"]) for r in rows]
    mse = [float(r["mse"]) for r in rows]
    assert running[0] == pytest.approx(0.99 + 0.01 * mse[0], rel=1e-5)
    for k in range(STEPS, len(rows)):
        expected = 0.5 * running[k - 1] + 0.5 * mse[k]
        assert running[k] == pytest.approx(expected, rel=1e-5)
    # The loss weighs the KL by the configuration's kl_weight from the resume.
    for row, weight in zip(rows, [1.0] * STEPS + [0.25] * STEPS):
        total = weight * float(row["kl_loss"]) + float(row["reconstruction_loss"])
        assert float(row["loss"]) == pytest.approx(total, rel=1e-4, abs=1e-4)
    settings = ("ema", 0.5, 2e-3, 0.25)
    assert (model.running_rule, model.momentum, model.min_gamma, model.kl_weight) == (
        settings
    )
    saved = load_checkpoint(run.workdir.stage_path("stage1"))
    assert (saved.running_rule, saved.momentum, saved.min_gamma, saved.kl_weight) == (
        settings
    )
    # Another balance cannot resume these variables.
    run.config = get_preset("tiny", balance="learned")
    with pytest.raises(ValueError, match="trained with balance 'running'"):
        _fit(run, _spec(run, epochs=3))
