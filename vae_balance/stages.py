"""Fitting one stage of the training job, from scratch or from a checkpoint.

`fit_stage` resumes a stage from its last complete checkpoint (or loads the
finished stage, or builds a new model), fits it with the job's callbacks
(`vae_balance.callbacks`), stops with `TrainingDiverged` on a NaN or Inf
loss, and saves ``<stage>.keras``. `finish_first_stage` then recomputes
stage 1's BatchNorm statistics (once, recorded in ``batchnorm.json``). What
differs between the two stages is a `StageSpec`; the job's options are a
`vae_balance.training.RunOptions`.
"""

import dataclasses
import os
from collections.abc import Callable

import keras

from vae_balance import batchnorm
from vae_balance.callbacks import EpochCheckpoint, StepHistory, staircase
from vae_balance.datasets import pipeline
from vae_balance.workdir import load_checkpoint, save_model_atomic, truncate_csv


class TrainingDiverged(RuntimeError):
    """Raised when a loss becomes NaN or Inf; the last checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """What differs between the fits of the two stages.

    ``name`` is the stage's file key (``"stage1"``, ``"stage2"``) and
    ``build`` makes its untrained model.
    """

    name: str
    build: Callable[[], keras.Model]
    epochs: int
    learning_rate: float
    lr_epochs: int


def _compile(model, learning_rate, config, jit_compile):
    optimizer = keras.optimizers.Adam(
        learning_rate, beta_1=0.9, beta_2=0.999, epsilon=config.adam_epsilon
    )
    model.compile(optimizer=optimizer, jit_compile=jit_compile)


def fit_stage(run, spec, dataset, steps_per_epoch, callbacks, validation_data=None):
    """Fits one stage from scratch or from its last checkpoint.

    Args:
        run: the job's `vae_balance.training.RunOptions` (its config,
            workdir, strategy, verbose and jit_compile are read).
        spec: the `StageSpec` of the stage.
        dataset: its batched training data.
        steps_per_epoch: batches per epoch (for the step numbers of the logs).
        callbacks: added to the job's (learning rate, step history, CSV log,
            checkpoints, TensorBoard).
        validation_data: for ``fit``, or None.

    Returns:
        ``(model, logs)``: the logs of the last epoch, ``{}`` when the stage
        was already trained.

    Raises:
        TrainingDiverged: a loss became NaN or Inf.
    """
    workdir, stage = run.workdir, spec.name
    model, initial_epoch, finished = _resume_or_build(run, spec)
    if finished:
        return model, {}
    for path in (workdir.history_csv(stage), workdir.steps_csv(stage)):
        truncate_csv(path, lambda row: int(row["epoch"]) < initial_epoch)
    if initial_epoch >= spec.epochs:
        save_model_atomic(model, workdir.stage_path(stage))
        return model, {}
    guard = StepHistory(workdir.steps_csv(stage), stage, steps_per_epoch)
    history = model.fit(
        dataset,
        epochs=spec.epochs,
        initial_epoch=initial_epoch,
        callbacks=[*_stage_callbacks(workdir, spec, guard), *callbacks],
        validation_data=validation_data,
        verbose=run.verbose,
        shuffle=False,  # the dataset is shuffled by tf.data
    )
    guard.flush()
    if guard.diverged:
        last = workdir.latest_checkpoint(stage)
        where = last[0] if last else "none yet (the run restarts from scratch)"
        raise TrainingDiverged(
            f"{guard.diverged}. The last good checkpoint is kept: {where}. "
            "Run the same command again to resume from it, e.g. with a lower "
            "--learning-rate."
        )
    save_model_atomic(model, workdir.stage_path(stage))
    return model, {k: float(v[-1]) for k, v in history.history.items()}


def _resume_or_build(run, spec):
    """``(model, initial_epoch, finished)``: the finished stage, its last
    checkpoint, or a new compiled model, inside the strategy's scope."""
    workdir, stage = run.workdir, spec.name
    final_path = workdir.stage_path(stage)
    found = workdir.latest_checkpoint(stage)
    with run.strategy.scope():
        if found is not None and found[1] >= spec.epochs and os.path.exists(final_path):
            # The finished stage (its BatchNorm statistics recomputed).
            print(f"[{stage}] done: {final_path} ({found[1]} epochs)")
            return load_checkpoint(final_path), found[1], True
        if found is not None:
            path, initial_epoch = found
            model = load_checkpoint(path)
            print(
                f"[{stage}] resuming from {path} (epoch {initial_epoch}/{spec.epochs})"
            )
            return model, initial_epoch, False
        model = spec.build()
        _compile(model, spec.learning_rate, run.config, run.jit_compile)
    return model, 0, False


def _stage_callbacks(workdir, spec, guard):
    """The job's callbacks of every fit: LR staircase, step history (the NaN
    guard), per-epoch CSV log, checkpoints, TensorBoard scalars."""
    return [
        keras.callbacks.LearningRateScheduler(
            staircase(spec.learning_rate, spec.lr_epochs)
        ),
        guard,
        keras.callbacks.CSVLogger(workdir.history_csv(spec.name), append=True),
        EpochCheckpoint(workdir, spec.name),
        keras.callbacks.TensorBoard(
            workdir.tensorboard_dir(spec.name), write_graph=False
        ),
    ]


# ------------------------------------------------ after stage 1: BatchNorm
def finish_first_stage(run, first_stage, train_images, test_images):
    """Recomputes stage 1's BatchNorm statistics once, then checks them.

    ``batchnorm.json`` records the sha256 of the ``stage1.keras`` written
    after the recalibration, so a resumed run recalibrates only a stage file
    that was not (an interrupted run, or one from an older version). Prints
    the validation MSE (inference mode) before and after, and warns
    (`batchnorm.StaleBatchNormWarning`) when the inference-mode MSE is more
    than `batchnorm.MSE_RATIO_WARNING` times the training-mode MSE.

    Returns:
        True when the statistics were recomputed (stage 1 changed).
    """
    config = run.config
    batches = recalibration_batches(train_images, config)
    layers = batchnorm.batchnorm_layers(first_stage.encoder)
    if not layers + batchnorm.batchnorm_layers(first_stage.decoder):
        return False
    images = test_images if len(test_images) else batches.take(10)
    stage_path = run.workdir.stage_path("stage1")
    recalibrated = run.recalibrate_bn and not run.workdir.is_recalibrated(stage_path)
    if recalibrated:
        _recalibrate_first_stage(run, first_stage, batches, images)
    inference, training = batchnorm.check_batchnorm(
        first_stage, images, config.batch_size, what="stage1"
    )
    print(
        f"[stage1] validation MSE: inference mode {inference:.5f}, training-mode "
        f"BatchNorm {training:.5f} (ratio {inference / training:.2f}; warns above "
        f"{batchnorm.MSE_RATIO_WARNING})"
    )
    return recalibrated


def recalibrate_and_measure(first_stage, batches, images, config, num_batches):
    """`batchnorm.recalibrate_batchnorm` between two validation measurements.

    The one recipe of the job and of ``export``: ``batches`` from
    `recalibration_batches`, the inference-mode reconstruction MSE of
    ``images`` before and after.

    Returns:
        ``(val_mse_before, val_mse_after, info)``.
    """
    batch_size = config.batch_size
    before = batchnorm.reconstruction_mse(first_stage, images, False, batch_size)
    info = batchnorm.recalibrate_batchnorm(
        first_stage, batches, num_batches, batch_size, seed=config.seed
    )
    after = batchnorm.reconstruction_mse(first_stage, images, False, batch_size)
    return before, after, info


def recalibration_batches(train_images, config):
    """Shuffled training batches for the recalibration (their own seed)."""
    return pipeline.make_train_dataset(train_images, config.batch_size, config.seed + 1)


def _recalibrate_first_stage(run, first_stage, batches, images):
    """Recomputes the statistics, saves ``stage1.keras`` and records it."""
    before, after, info = recalibrate_and_measure(
        first_stage, batches, images, run.config, run.recalibrate_batches
    )
    print(
        f"[stage1] BatchNorm statistics recomputed from {info['images']} "
        f"training images ({info['layers']} layers): validation MSE "
        f"(inference mode) {before:.5f} -> {after:.5f}"
    )
    save_model_atomic(first_stage, run.workdir.stage_path("stage1"))
    run.workdir.record_recalibration(
        "stage1",
        images=info["images"],
        batches=info["batches"],
        val_mse_before=before,
        val_mse_after=after,
    )
