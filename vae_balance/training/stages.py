"""Fitting one stage of the training job, from scratch or from a checkpoint.

`fit_stage` resumes a stage from its newest verified checkpoint, at the
step it was written (or loads the finished stage, or builds a new model),
fits it one epoch at a time with the job's callbacks (`vae_balance.training.callbacks`,
`vae_balance.training.checkpointer`), stops with `TrainingDiverged` on a NaN or Inf
loss, and saves ``<stage>.keras``. `finish_first_stage` then recomputes
stage 1's BatchNorm statistics (once, recorded in ``batchnorm.json``). What
differs between the two stages is a `StageSpec`; the job's options are a
`vae_balance.training.options.RunOptions`.
"""

import contextlib
import dataclasses
import os
from collections.abc import Callable

import keras

from vae_balance.model import batchnorm, builders
from vae_balance.training import checkpoints
from vae_balance.training.callbacks import StepHistory, TensorBoardScalars, staircase
from vae_balance.training.checkpointer import Checkpointer, RestoreMetrics
from vae_balance.workdir import (
    Position,
    list_checkpoints,
    load_checkpoint,
    save_model_atomic,
)


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


def fit_stage(run, spec, make_epoch, steps_per_epoch, callbacks, validation_data=None):
    """Fits one stage from scratch or from its newest verified checkpoint.

    One ``model.fit`` per epoch, on that epoch's data from the step the run
    is at: ``make_epoch(epoch, start_step)`` (`vae_balance.datasets.stream`),
    so a run resumed in the middle of an epoch trains on the very batches an
    uninterrupted run would. Checkpoints: `vae_balance.training.checkpoints`.

    Args:
        run: the job's `vae_balance.training.options.RunOptions` (its config,
            workdir, strategy, verbose, jit_compile, stops and checkpoint
            interval are read).
        spec: the `StageSpec` of the stage.
        make_epoch: ``(epoch, start_step) -> dataset`` of the stage's batches.
        steps_per_epoch: batches per epoch.
        callbacks: added to the job's (learning rate, step history, CSV log,
            TensorBoard scalars, checkpoints), before the checkpoints.
        validation_data: for ``fit``, or None.

    Returns:
        ``(model, logs)``: the logs of the last epoch, ``{}`` when the stage
        was already trained.

    Raises:
        TrainingDiverged: a loss became NaN or Inf.
        vae_balance.training.preemption.TrainingInterrupted: a stop was requested
            (SIGTERM, SIGINT); a step checkpoint was written.
    """
    workdir, stage = run.workdir, spec.name
    model, checkpoint, finished = _resume_or_build(run, spec, steps_per_epoch)
    if finished:
        return model, {}
    position = checkpoint.position if checkpoint else Position(0)
    if position.epoch >= spec.epochs:  # a rerun with fewer --epochs
        save_model_atomic(model, workdir.stage_path(stage))
        return model, {}
    fit = _StageCallbacks(run, spec, steps_per_epoch, checkpoint, callbacks)
    try:
        with _deferred_stops(run):
            logs = _fit_epochs(
                run, spec, model, fit, position, make_epoch, validation_data
            )
    finally:
        fit.close()
    if fit.guard.diverged:
        _raise_diverged(workdir, stage, fit.guard.diverged)
    save_model_atomic(model, workdir.stage_path(stage))
    return model, logs


class _StageCallbacks:
    """The job's callbacks of one stage around the caller's ``extra`` ones.

    In order: the restored metric sums (first: the others see them), the
    learning rate, the step history (and NaN guard), the CSV log, the
    TensorBoard scalars, ``extra``, the checkpointer (last: after everything
    the epoch logs) and the one-epoch stop.
    """

    def __init__(self, run, spec, steps_per_epoch, checkpoint, extra):
        workdir, stage = run.workdir, spec.name
        position = checkpoint.position if checkpoint else Position(0)
        self.guard = StepHistory(workdir.steps_csv(stage), stage, steps_per_epoch)
        restore = RestoreMetrics()
        restore.checkpoint = checkpoint if position.step else None
        self.checkpointer = Checkpointer(
            workdir,
            stage,
            steps_per_epoch,
            self.guard,
            stops=run.stops,
            minutes=run.checkpoint_minutes,
            steps=run.checkpoint_steps,
            snapshot_every=run.snapshot_every if stage == "stage1" else None,
            cpu_seconds=_cpu_seconds(checkpoint),
        )
        self.scalars = TensorBoardScalars(workdir.tensorboard_dir(stage))
        self.callbacks = [
            restore,
            keras.callbacks.LearningRateScheduler(
                staircase(spec.learning_rate, spec.lr_epochs)
            ),
            self.guard,
            keras.callbacks.CSVLogger(workdir.history_csv(stage), append=True),
            self.scalars,
            *extra,
            self.checkpointer,
            _StopAfterEpoch(),
        ]

    def begin_epoch(self, epoch, start_step):
        self.guard.begin_epoch(epoch, start_step)
        self.checkpointer.begin_epoch(epoch, start_step)

    def close(self):
        self.guard.flush()
        self.scalars.close()


def _fit_epochs(run, spec, model, fit, position, make_epoch, validation_data):
    """One ``model.fit`` per epoch from ``position``; the last epoch's logs
    (``{}`` when the guard stopped the first)."""
    logs = {}
    for epoch in range(position.epoch, spec.epochs):
        start = position.step if epoch == position.epoch else 0
        fit.begin_epoch(epoch, start)
        history = model.fit(
            make_epoch(epoch, start),
            epochs=spec.epochs,
            initial_epoch=epoch,
            callbacks=fit.callbacks,
            validation_data=validation_data,
            verbose=run.verbose,
            shuffle=False,  # each epoch's order is its dataset's
        )
        if fit.guard.diverged:
            break
        logs = {k: float(v[-1]) for k, v in history.history.items()}
    return logs


def _raise_diverged(workdir, stage, reason):
    found = list_checkpoints(workdir.checkpoint_dir, stage)
    where = found[-1].path if found else "none yet (the run restarts from scratch)"
    raise TrainingDiverged(
        f"{reason}. The last good checkpoint is kept: {where}. Run the same "
        "command again to resume from it, e.g. with a lower --learning-rate."
    )


def _cpu_seconds(checkpoint):
    """The CPU seconds recorded with ``checkpoint`` (0 for none or an older
    record without them)."""
    if checkpoint is None:
        return 0.0
    try:
        return float(checkpoint.read_record().get("cpu_seconds") or 0.0)
    except (OSError, ValueError):
        return 0.0


class _StopAfterEpoch(keras.callbacks.Callback):
    """Ends each ``fit`` after its one epoch (the stage loop runs the next).

    ``fit(epochs=E, initial_epoch=e)`` then shows "Epoch e+1/E" as usual.
    """

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def _deferred_stops(run):
    """Signals wait for the end of the step while fitting (`StopRequests`)."""
    if run.stops is None:
        return contextlib.nullcontext()
    return run.stops.deferred()


def _resume_or_build(run, spec, steps_per_epoch):
    """``(model, checkpoint, finished)``: the finished stage (and its newest
    checkpoint), the newest verified checkpoint (loaded), or a new compiled
    model (None), inside the strategy's scope."""
    workdir, stage = run.workdir, spec.name
    final_path = workdir.stage_path(stage)
    found = list_checkpoints(workdir.checkpoint_dir, stage)
    done = Position(spec.epochs)
    with run.strategy.scope():
        if found and found[-1].position >= done and os.path.exists(final_path):
            # The finished stage (its BatchNorm statistics recomputed).
            print(f"[{stage}] done: {final_path} ({found[-1].position.epoch} epochs)")
            return load_checkpoint(final_path), found[-1], True
        restored = checkpoints.restore_newest(workdir, stage, steps_per_epoch)
        if restored is not None:
            model, checkpoint = restored
            _follow_configured_settings(model, run.config, stage)
            checkpoints.restore_logs(workdir, stage, checkpoint, steps_per_epoch)
            _remove_stale_stage_file(final_path, stage, checkpoint)
            position = checkpoint.position
            where = f"epoch {position.epoch}/{spec.epochs}"
            if position.step:
                where += f", step {position.step}/{steps_per_epoch} of the next"
            print(f"[{stage}] resuming from {checkpoint.path} ({where})")
            return model, checkpoint, False
        checkpoints.clear_logs(workdir, stage)
        model = spec.build()
        _compile(model, spec.learning_rate, run.config, run.jit_compile)
    return model, None, False


def _remove_stale_stage_file(final_path, stage, checkpoint):
    """Training goes on past a finished stage (a rerun with more epochs): its
    ``<stage>.keras`` is older than the checkpoint resumed from. Removed, so
    that nothing reads it as the stage meanwhile (``evaluate``, ``export``, a
    rerun with fewer epochs); the stage's end writes it again."""
    if os.path.exists(final_path):
        os.remove(final_path)
        print(
            f"[{stage}] {final_path} removed: training continues past it from "
            f"{checkpoint.path}, and the stage's end writes it again"
        )


def _follow_configured_settings(model, config, stage):
    """A resumed stage takes the configuration's plain settings
    (`builders.stage_settings`: ``running_rule``, ``momentum``,
    ``min_gamma``, ``kl_weight``, the constant of ``balance="fixed"``): they
    are settings of its step, not state, so a run continued with another rule
    (``--running-rule ema --allow-config-change``) trains with it instead of
    the one its checkpoint was saved with. ``balance`` itself decides the
    model's variables and must match (`Workdir.check_and_write_config`
    refuses a change before anything is written)."""
    settings = builders.stage_settings(config, stage)
    balance = settings.pop("balance")
    if model.balance != balance:
        raise ValueError(
            f"[{stage}] the checkpoint was trained with balance "
            f"{model.balance!r}, the configuration asks for {balance!r}: a "
            "stage cannot resume under another balance. Pass the run's own "
            "balance, or train the new one in another --workdir."
        )
    settings.setdefault("fixed_gamma", None)
    changed = []
    for field, after in settings.items():
        before = getattr(model, field)
        if before != after:
            setattr(model, field, after)
            changed.append(f"{field} {before!r} -> {after!r}")
    if changed:
        print(f"[{stage}] resumed with the configuration's {', '.join(changed)}")


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
    batches = batchnorm.recalibration_batches(train_images, config)
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


def _recalibrate_first_stage(run, first_stage, batches, images):
    """Recomputes the statistics, saves ``stage1.keras`` and records it."""
    before, after, info = batchnorm.recalibrate_and_measure(
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
