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
its single file in place. The `vae_balance.training.checkpointer.Checkpointer`
callback keeps its idea (a callback writing every N batches and at epoch
ends) and adds the rest.
"""

import datetime
import glob
import os
import shutil
import sys
import time
import warnings

from vae_balance.files import describe_os_error, sha256, write_json
from vae_balance.workdir import (
    Checkpoint,
    SaveError,
    WorkdirError,
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


__all__ = [
    "CheckpointWarning",
    "clear_logs",
    "prune",
    "restore_metrics",
    "restore_logs",
    "restore_newest",
    "set_aside",
    "snapshot",
    "verify_and_load",
    "write_checkpoint",
]
