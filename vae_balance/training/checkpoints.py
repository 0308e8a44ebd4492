"""Step checkpoints of a stage: written with a record, verified on resume.

A checkpoint is two files in ``checkpoints/``, named by the position in the
run (``E`` epochs done, then ``S`` steps into the next epoch)::

    stage1-epoch0003.keras              an epoch boundary (S = 0)
    stage1-epoch0003-step000120.keras   120 steps into the 4th epoch
    stage1-epoch0003-step000120.json    its record

The ``.keras`` file holds the weights, the optimizer's state (its step
counter, moments and learning rate), the balancing state (``running_mse``,
``ema_mse``) and the noise generator's state (`BalancedVAE`). The ``.json``
record holds everything else the next step depends on:

- the position: epoch, step in the epoch, steps per epoch (the data order of
  an epoch is a function of the seed and the epoch,
  `vae_balance.datasets.stream`, and the learning rate one of the epoch);
- the sums of the epoch's metric trackers (the epoch's logged means);
- the lengths of the logs: rows of the CSV files and bytes of each
  TensorBoard event file (the stage's scalars and the image grids), cut back
  to them on resume;
- the ``.keras`` file's sha256.

Write order: the model goes to a temporary file, its record is written, and
the rename of the model commits the checkpoint; a record without its model
is discarded on resume. On resume (`restore_newest`) the newest checkpoint
whose sha256 matches and which loads is used; any other newer one is set
aside (renamed ``<name>.corrupt-<time>``, never deleted) with a warning, and
`WorkdirError` is raised only when none is left. Checkpoints written by
earlier versions (``stage1-epoch0003.keras`` without a record) are still
resumed, at their epoch boundary.

Why not ``keras.callbacks.BackupAndRestore(save_freq=N)``: it saves the
weights only (``save_weights``), not the optimizer's moments, and on resume
restarts the interrupted epoch from its first batch with the weights of its
middle; it keeps no metric sums, no log lengths, no checksum, and overwrites
its single file in place. The `Checkpointer` callback below keeps its idea
(a callback writing every N batches and at epoch ends) and adds the rest.
"""

import datetime
import glob
import math
import os
import shutil
import signal
import sys
import time
import warnings

import keras
import tensorflow as tf

from vae_balance.files import sha256, write_json
from vae_balance.model import _keras_compat
from vae_balance.training.preemption import TrainingInterrupted
from vae_balance.workdir import (
    Checkpoint,
    Position,
    SaveError,
    Workdir,
    WorkdirError,
    describe_os_error,
    list_checkpoints,
    load_checkpoint,
    truncate_csv,
)

RECORD_FORMAT = 1


class CheckpointWarning(UserWarning):
    """A checkpoint failed its checksum or did not load and was set aside."""


# ------------------------------------------------------------------ write
def write_checkpoint(
    workdir, stage, model, position, steps_per_epoch, reason, cpu_seconds=None
):
    """Writes one checkpoint of ``model`` at ``position`` (model, then record).

    Args:
        workdir: the run's `vae_balance.workdir.Workdir`.
        stage: ``"stage1"`` or ``"stage2"``.
        model: the model being fitted (compiled, with its optimizer).
        position: the `Position` after the last step trained.
        steps_per_epoch: of this stage.
        reason: why it is written (``"epoch"``, ``"interval"``, ``"signal"``).
        cpu_seconds: the stage's process CPU time so far, over all the
            processes that trained it (recorded; None: not known).

    Returns:
        The `Checkpoint`.

    Raises:
        SaveError: a file could not be written; earlier checkpoints are kept.
    """
    os.makedirs(workdir.checkpoint_dir, exist_ok=True)
    path = os.path.join(workdir.checkpoint_dir, position.name(stage) + ".keras")
    checkpoint = Checkpoint(path, position)
    tmp = f"{path}.tmp-{os.getpid()}.keras"
    try:
        model.save(tmp)
        record = {
            "format": RECORD_FORMAT,
            "stage": stage,
            "epoch": position.epoch,
            "step": position.step,
            "steps_per_epoch": steps_per_epoch,
            "global_step": position.global_step(steps_per_epoch),
            "reason": reason,
            "cpu_seconds": cpu_seconds,
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "sha256": sha256(tmp),
            "metrics": _metric_sums(model) if position.step else {},
            "logs": _log_lengths(workdir, stage),
        }
        write_json(checkpoint.record_path, record)
        os.replace(tmp, path)  # the commit
    except OSError as error:
        _remove(tmp)
        raise SaveError(
            f"Could not write the checkpoint {path}: {describe_os_error(error)}."
        ) from error
    return checkpoint


def snapshot(workdir, checkpoint_path):
    """Copies a checkpoint and its record to ``workdir.snapshot_dir``.

    Snapshots are never pruned; each copy is written to a temporary name and
    renamed, so a killed run leaves whole files only.
    """
    os.makedirs(workdir.snapshot_dir, exist_ok=True)
    record = os.path.splitext(checkpoint_path)[0] + ".json"
    for source in (record, checkpoint_path):
        target = os.path.join(workdir.snapshot_dir, os.path.basename(source))
        tmp = f"{target}.tmp-{os.getpid()}"
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def _metric_sums(model):
    """``{name: [total, count]}`` of the model's `keras.metrics.Mean` trackers."""
    return {
        metric.name: [float(v.numpy()) for v in metric.variables]
        for metric in model.metrics
    }


def _log_lengths(workdir, stage):
    """Rows of the stage's CSV logs and bytes of its TensorBoard event files."""
    return {
        "steps_csv_rows": _count_rows(workdir.steps_csv(stage)),
        "history_csv_rows": _count_rows(workdir.history_csv(stage)),
        "tensorboard": _event_sizes(workdir.tensorboard_dir(stage)),
        # The image grids' events, shared by both stages (`callbacks.GridWriter`).
        "tensorboard_images": _event_sizes(workdir.tensorboard_dir("images")),
    }


def _event_sizes(root):
    """``{path relative to root: bytes}`` of the event files under ``root``."""
    return {
        os.path.relpath(path, root): os.path.getsize(path)
        for path in _event_files(root)
    }


def _count_rows(path):
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return max(0, sum(1 for _ in f) - 1)


def _event_files(root):
    return sorted(glob.glob(os.path.join(root, "**", "events.out.*"), recursive=True))


def prune(checkpoint_dir, stage, keep):
    """Deletes all but the newest ``keep`` checkpoints (model and record)."""
    for old in list_checkpoints(checkpoint_dir, stage)[:-keep]:
        _remove(old.record_path)
        _remove(old.path)


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


# ---------------------------------------------------------------- resume
def restore_newest(workdir, stage, steps_per_epoch):
    """The newest checkpoint that verifies, loaded: ``(model, Checkpoint)``.

    A checkpoint whose sha256 differs from its record, whose record is
    unreadable, whose model does not load, or that was written with another
    number of steps per epoch, is set aside (`set_aside`) with a
    `CheckpointWarning` naming it, and the next older one is tried. Records
    left without their model by a killed writer are deleted.

    Returns:
        ``(model, checkpoint)``, or None when the stage has no checkpoint.

    Raises:
        WorkdirError: checkpoints exist but none verifies (all are set aside,
            nothing is deleted).
    """
    _remove_orphan_records(workdir.checkpoint_dir, stage)
    candidates = list_checkpoints(workdir.checkpoint_dir, stage)
    reasons = []
    for checkpoint in reversed(candidates):
        try:
            model = verify_and_load(checkpoint, steps_per_epoch)
        except WorkdirError as error:
            moved = set_aside(checkpoint, str(error))
            reasons.append(f"{error} (set aside as {os.path.basename(moved)})")
            continue
        return model, checkpoint
    if reasons:
        raise WorkdirError(
            f"No {stage} checkpoint in {workdir.checkpoint_dir} verifies; all "
            f"were set aside, none deleted: {'; '.join(reasons)}. Move one back "
            "if you trust it, or delete the checkpoints folder to restart the "
            "stage."
        )
    return None


def verify_and_load(checkpoint, steps_per_epoch):
    """Checks a checkpoint's record and checksum, then loads its model.

    Raises:
        WorkdirError: naming the file and what is wrong with it.
    """
    try:
        record = checkpoint.read_record()
    except (OSError, ValueError) as error:
        raise WorkdirError(
            f"{checkpoint.record_path} is unreadable ({error})"
        ) from None
    if record is None and checkpoint.position.step:
        raise WorkdirError(f"{checkpoint.path} has no record")
    if record is not None:
        expected = record.get("sha256")
        actual = sha256(checkpoint.path)
        if actual != expected:
            raise WorkdirError(
                f"{checkpoint.path} fails its checksum (sha256 {actual[:12]}..., "
                f"recorded {str(expected)[:12]}...): the file changed after it "
                "was written"
            )
        if record.get("steps_per_epoch") != steps_per_epoch and record.get("step"):
            raise WorkdirError(
                f"{checkpoint.path} was written with {record.get('steps_per_epoch')} "
                f"steps per epoch, this run has {steps_per_epoch} (another "
                "--limit or --batch-size): its position is not a step of this run"
            )
    return load_checkpoint(checkpoint.path)


def set_aside(checkpoint, reason):
    """Renames a bad checkpoint (and its record) out of the way; warns.

    Returns:
        The new name of the model file.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = f"{checkpoint.path}.corrupt-{stamp}"
    os.replace(checkpoint.path, moved)
    if os.path.exists(checkpoint.record_path):
        os.replace(checkpoint.record_path, f"{checkpoint.record_path}.corrupt-{stamp}")
    message = (
        f"Checkpoint {checkpoint.path} set aside as {os.path.basename(moved)}: "
        f"{reason.splitlines()[0][:400]}. Resuming from an older checkpoint."
    )
    warnings.warn(message, CheckpointWarning, stacklevel=2)
    print(f"[resume] warning: {message}", file=sys.stderr)
    return moved


def _remove_orphan_records(checkpoint_dir, stage):
    """Records whose model was never renamed in (a writer killed in between)."""
    for record in glob.glob(os.path.join(checkpoint_dir, f"{stage}-epoch*.json")):
        if not os.path.exists(record[: -len(".json")] + ".keras"):
            os.remove(record)


def restore_logs(workdir, stage, checkpoint, steps_per_epoch):
    """Cuts the stage's logs back to what they were when ``checkpoint`` was
    written: CSV rows past its position, TensorBoard events written after."""
    position = checkpoint.position
    last_step = position.global_step(steps_per_epoch)
    truncate_csv(workdir.steps_csv(stage), lambda row: int(row["step"]) <= last_step)
    truncate_csv(
        workdir.history_csv(stage), lambda row: int(row["epoch"]) < position.epoch
    )
    record = checkpoint.read_record()
    if record is None:  # an earlier version's checkpoint: CSV files only
        return
    recorded = record["logs"]["tensorboard"]
    root = workdir.tensorboard_dir(stage)
    for path in _event_files(root):
        size = recorded.get(os.path.relpath(path, root))
        if size is None:
            os.remove(path)  # written after the checkpoint
        elif os.path.getsize(path) > size:
            _truncate(path, size)
    # The image grids: the files the record knows are cut back to their
    # length then. The others are kept: one is this process' own writer's,
    # open since before the stage resumed (`callbacks.GridWriter`).
    images = record["logs"].get("tensorboard_images")  # None: an older record
    if images is None:
        return
    root = workdir.tensorboard_dir("images")
    for path in _event_files(root):
        size = images.get(os.path.relpath(path, root))
        if size is not None and os.path.getsize(path) > size:
            _truncate(path, size)


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def clear_logs(workdir, stage):
    """Empties the stage's logs for a start from scratch (a run killed
    before its first checkpoint leaves rows and events behind)."""
    truncate_csv(workdir.steps_csv(stage), lambda row: False)
    truncate_csv(workdir.history_csv(stage), lambda row: False)
    for path in _event_files(workdir.tensorboard_dir(stage)):
        os.remove(path)


def restore_metrics(model, checkpoint):
    """Sets the epoch's metric trackers to their sums at ``checkpoint``."""
    record = checkpoint.read_record() or {}
    for metric in model.metrics:
        values = record.get("metrics", {}).get(metric.name)
        if values is not None:
            for variable, value in zip(metric.variables, values):
                variable.assign(value)


# -------------------------------------------------------------- callback
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


__all__ = [
    "CheckpointWarning",
    "Checkpointer",
    "EpochCheckpoint",
    "RestoreMetrics",
    "clear_logs",
    "restore_logs",
    "restore_newest",
    "set_aside",
    "verify_and_load",
    "write_checkpoint",
]
