"""The callbacks that write a stage's checkpoints during ``fit``.

`Checkpointer` writes step and epoch checkpoints (`vae_balance.training.checkpoints`
stores, verifies and resumes them) and stops cleanly on a signal;
`EpochCheckpoint` is its epoch-end-only form for a plain ``fit``;
`RestoreMetrics` puts a resumed epoch's metric sums back.
"""

import math
import signal
import time

import keras
import tensorflow as tf

from vae_balance.model import _keras_compat
from vae_balance.training.checkpoints import (
    prune,
    restore_metrics,
    snapshot,
    write_checkpoint,
)
from vae_balance.training.preemption import TrainingInterrupted
from vae_balance.workdir import Position, SaveError, Workdir, list_checkpoints


class Checkpointer(keras.callbacks.Callback):
    """Writes the checkpoints of one stage, and stops cleanly on a signal.

    - at every epoch end (a finite epoch);
    - inside an epoch, after the step at which ``minutes`` have passed since
      the last checkpoint, or every ``steps`` steps;
    - after the current step when a stop was requested (SIGTERM, SIGINT;
      `vae_balance.training.preemption.StopRequests`): then raises
      `TrainingInterrupted` naming the checkpoint.

    Keeps the newest ``keep`` checkpoints. ``history`` is the `StepHistory`
    whose buffered rows are written before the logs' lengths are recorded.
    Put it after the callbacks that log the epoch (CSV, TensorBoard, grids).

    Args:
        workdir: the run's `Workdir` (a non-chief worker's is a scratch copy:
            under a multi-worker strategy every worker saves at the same
            steps, since saving reads variables with collective ops).
        stage: ``"stage1"`` or ``"stage2"``.
        steps_per_epoch: of the stage.
        history: the stage's `StepHistory`.
        stops: a `StopRequests`, or None.
        minutes, steps: the in-epoch checkpoint interval (None: never).
        keep: checkpoints kept.
        snapshot_every: every this many epochs, the epoch checkpoint is also
            copied to ``snapshots/`` and kept (for studies of quality
            against training time); None or 0: never.
        cpu_seconds: the stage's CPU seconds before this process (from the
            checkpoint it resumes); the records add this process' own.
    """

    def __init__(
        self,
        workdir,
        stage,
        steps_per_epoch,
        history,
        stops=None,
        minutes=10.0,
        steps=None,
        keep=2,
        snapshot_every=None,
        cpu_seconds=0.0,
    ):
        super().__init__()
        self.snapshot_every = snapshot_every
        self._cpu_base, self._cpu_start = cpu_seconds or 0.0, time.process_time()
        self.workdir, self.stage = workdir, stage
        self.steps_per_epoch = steps_per_epoch
        self.history, self.stops = history, stops
        self.minutes, self.steps, self.keep = minutes, steps, keep
        self.start_step = 0
        self._epoch = 0
        self._last_time = time.monotonic()
        self.last_written = None

    def begin_epoch(self, epoch, start_step):
        """The stage loop's next fit: ``epoch`` from ``start_step``."""
        self._epoch, self.start_step = epoch, start_step

    def on_train_begin(self, logs=None):
        self._last_time = time.monotonic()
        if self.steps_per_epoch is None:
            self.steps_per_epoch = self.params.get("steps")

    def on_train_batch_end(self, batch, logs=None):
        step = self.start_step + batch + 1
        if step >= self.steps_per_epoch or self.model.stop_training:
            return  # the epoch end writes it (or the run diverged)
        position = Position(self._epoch, step)
        global_step = position.global_step(self.steps_per_epoch)
        due = (self.steps and global_step % self.steps == 0) or (
            self.minutes and time.monotonic() - self._last_time >= 60 * self.minutes
        )
        signum, due = self._agree(due)
        if signum or due:
            self._write(position, "signal" if signum else "interval")
        if signum:
            raise TrainingInterrupted(signum, self.last_written)

    def on_epoch_end(self, epoch, logs=None):
        diverged = self.history.diverged if self.history else None
        if self.model.stop_training and (diverged or not _all_finite(logs)):
            return  # a diverged epoch is never checkpointed
        self._write(Position(epoch + 1, 0), "epoch")
        if self.snapshot_every and (epoch + 1) % self.snapshot_every == 0:
            snapshot(self.workdir, self.last_written)
        signum, _ = self._agree(False)
        if signum:
            raise TrainingInterrupted(signum, self.last_written)

    def _agree(self, due):
        """``(signum or None, checkpoint due)`` agreed by all the workers.

        On one machine, this process's own. Under a multi-worker strategy
        the workers' flags are all-reduced after every step, so they all
        stop, and all save, after the same step: a worker stopping alone
        would leave the others waiting in the next step's all-reduce, and
        saving reads variables with collective ops.
        """
        local = (self.stops.requested if self.stops else None) or 0
        strategy = self.model.distribute_strategy
        if not _keras_compat.in_multi_worker_mode(strategy):
            return local or None, bool(due)
        flags = tf.constant([1.0 if local else 0.0, 1.0 if due else 0.0])
        stop, due = strategy.reduce(
            tf.distribute.ReduceOp.SUM,
            strategy.run(lambda: tf.identity(flags)),
            axis=None,
        ).numpy()
        # A worker not signalled itself stops as if it had got SIGTERM.
        return ((local or signal.SIGTERM) if stop else None), bool(due)

    def cpu_seconds(self):
        """The stage's CPU seconds so far, resumed processes included."""
        return self._cpu_base + time.process_time() - self._cpu_start

    def _write(self, position, reason):
        if self.history is not None:
            self.history.flush()
        self._last_time = time.monotonic()
        try:
            checkpoint = write_checkpoint(
                self.workdir,
                self.stage,
                self.model,
                position,
                self.steps_per_epoch,
                reason,
                cpu_seconds=self.cpu_seconds(),
            )
        except SaveError as error:
            found = list_checkpoints(self.workdir.checkpoint_dir, self.stage)
            kept = found[-1].path if found else "none yet (a rerun starts from scratch)"
            raise SaveError(
                f"{error} The last complete checkpoint is kept: {kept}. Free "
                "some space and run the same command again to resume from it."
            ) from error.__cause__
        self.last_written = checkpoint.path
        prune(self.workdir.checkpoint_dir, self.stage, self.keep)
        if reason != "epoch":
            where = position.describe(self.steps_per_epoch)
            print(
                f"\n[{self.stage}] checkpoint at {where} ({reason}): {checkpoint.path}",
                flush=True,
            )


class EpochCheckpoint(Checkpointer):
    """A `Checkpointer` writing at epoch ends only, for a plain ``fit``.

    ``checkpoints/{stage}-epochNNNN.keras`` and its record after every finite
    epoch of ``workdir`` (a path or a `Workdir`); the newest ``keep`` kept.
    """

    def __init__(self, workdir, stage, keep=2):
        if not isinstance(workdir, Workdir):
            workdir = Workdir(workdir)
        super().__init__(
            workdir, stage, None, None, minutes=None, steps=None, keep=keep
        )


def _all_finite(logs):
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


class RestoreMetrics(keras.callbacks.Callback):
    """Puts a resumed epoch's metric sums back after Keras resets them.

    Keras resets the trackers at every epoch's start, before the callbacks'
    ``on_epoch_begin``: put this one first so the others see the sums.
    """

    def __init__(self):
        super().__init__()
        self.checkpoint = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.checkpoint is not None:
            restore_metrics(self.model, self.checkpoint)
            self.checkpoint = None
