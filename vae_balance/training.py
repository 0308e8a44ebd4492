"""The whole two-stage job for a preset and a work directory, resumable.

``train(config, workdir)`` runs stage 1 fit -> latent extraction -> stage 2
fit -> sampler export, writing into ``workdir``::

    config.json              the full resolved configuration
    history_stage1.csv       one row per epoch (Keras CSVLogger)
    steps_stage1.csv         one row per step: loss, kl_loss, mse, gamma^2
    checkpoints/stage1-epoch0003.keras   weights + optimizer + running_mse
    stage1.keras, stage2.keras           the finished stages
    latents.npz              z_mean, z_log_sigma of the training set
    sampler/                 SavedModel (sample, decode, encode, reconstruct)
    images/                  PNG grids: reconstructions, GEN-1, GEN-2
    curves.png               mse and gamma^2 (log), KL, loss over steps
    tensorboard/             scalars and image grids

Running the same command again on the same work directory resumes from the
last complete epoch. Every file is written to a temporary name and renamed,
so a run killed at any point leaves only complete files behind; the next run
deletes the temporaries. A write that fails (a full disk) raises `SaveError`
and keeps the last complete checkpoint; a NaN or Inf loss raises
`TrainingDiverged`, also keeping it; a second run on a busy work directory,
or one made with another configuration, raises `WorkdirError`.
"""

import contextlib
import csv
import dataclasses
import errno
import fcntl
import glob
import hashlib
import json
import math
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf

from vae_balance import batchnorm, data, distribute, plots
from vae_balance.builders import build_second_stage, build_vae
from vae_balance.presets import VAEConfig, get_preset
from vae_balance.sampling import (
    TwoStageSampler,
    encode_dataset,
    export_sampler,
    latent_dataset,
)

STAGES = ("stage1", "stage2")
NUM_TEST_IMAGES = 1000  # test images for the validation loss and grids


class TrainingDiverged(RuntimeError):
    """Raised when a loss becomes NaN or Inf; the last checkpoint is kept."""


class WorkdirError(RuntimeError):
    """Raised when a work directory cannot be used for this run."""


class SaveError(WorkdirError):
    """Raised when a file of the run cannot be written (disk full, permission).

    The file being written is left as it was: its temporary copy is removed
    and the complete files written before are kept, so rerunning the same
    command once the cause is fixed resumes from the last complete checkpoint.
    """


# --------------------------------------------------------------- workdir
def _atomic_write_text(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class WorkdirLock:
    """An exclusive lock on a work directory (released even on SIGKILL)."""

    def __init__(self, workdir):
        self.path = os.path.join(workdir, ".lock")
        self.file = None

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            owner = self.file.read().strip() or "unknown"
            self.file.close()
            raise WorkdirError(
                f"Work directory {os.path.dirname(self.path)!r} is in use by "
                f"another run (process id {owner}). Wait for it to finish, stop "
                "it, or choose another --workdir."
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def _remove_stale_temporaries(workdir):
    """Deletes the temporary files of writers killed mid-write.

    Called with the work directory locked, so no live writer owns them.
    Every file of the run is first written to a ``*.tmp-<pid>*`` (or
    ``*.tmp.npz`` / ``.csv.tmp``) name and then renamed; what remains under
    such a name is incomplete and was never used.
    """
    patterns = ("*.tmp-*", "*.tmp.npz", "*.csv.tmp")
    removed = []
    for folder in (workdir, _checkpoint_dir(workdir)):
        for pattern in patterns:
            for path in glob.glob(os.path.join(folder, pattern)):
                if os.path.isfile(path):
                    os.remove(path)
                    removed.append(os.path.basename(path))
    if removed:
        print(
            f"[resume] removed {len(removed)} incomplete temporary file(s) left "
            f"by an interrupted run: {', '.join(sorted(removed))}"
        )
    return removed


# Fields that may change between a run and its resumption (schedules, and the
# learning rate to restart a diverged run more gently). All others define the
# model and must match.
RESUMABLE_FIELDS = {
    "epochs",
    "epochs2",
    "learning_rate",
    "learning_rate2",
    "lr_epochs",
    "lr_epochs2",
}


def _check_or_write_config(config, workdir, allow_config_change):
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            try:
                previous = json.load(f)
            except json.JSONDecodeError as error:
                raise WorkdirError(
                    f"{path} is not valid JSON ({error}); move it away or "
                    "choose another --workdir."
                ) from None
        current = config.to_dict()
        changed = sorted(
            key
            for key in current
            if key not in RESUMABLE_FIELDS and previous.get(key) != current[key]
        )
        if changed and not allow_config_change:
            details = ", ".join(
                f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in changed
            )
            raise WorkdirError(
                f"Work directory {workdir!r} holds a run with a different "
                f"configuration ({details}). Use another --workdir, or pass "
                "--allow-config-change to continue anyway."
            )
    _atomic_write_text(path, json.dumps(config.to_dict(), indent=2) + "\n")


# ------------------------------------------------------------ checkpoints
def _checkpoint_dir(workdir):
    return os.path.join(workdir, "checkpoints")


def _discard_stage(workdir, stage):
    """Removes a stage's checkpoints, model and logs; True if any existed."""
    paths = [path for _, path in _checkpoints(workdir, stage)] + [
        os.path.join(workdir, name)
        for name in (f"{stage}.keras", f"history_{stage}.csv", f"steps_{stage}.csv")
    ]
    removed = False
    for path in paths:
        if os.path.exists(path):
            os.remove(path)
            removed = True
    return removed


def _checkpoints(workdir, stage):
    """Sorted ``[(epochs_done, path)]`` of the complete checkpoints of a stage.

    Only exact ``{stage}-epochNNNN.keras`` names count: the temporary files of
    a killed writer (``...keras.tmp-<pid>.keras``) never do.
    """
    pattern = os.path.join(_checkpoint_dir(workdir), f"{stage}-epoch*.keras")
    found = []
    for path in glob.glob(pattern):
        match = re.fullmatch(
            rf"{re.escape(stage)}-epoch(\d+)\.keras", os.path.basename(path)
        )
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(workdir, stage):
    """``(path, epochs_done)`` of the newest complete checkpoint, or None."""
    found = _checkpoints(workdir, stage)
    if not found:
        return None
    epochs_done, path = found[-1]
    return path, epochs_done


def _remove_quietly(path):
    with contextlib.suppress(OSError):
        os.remove(path)


def save_model_atomic(model, path):
    """model.save to a temporary file, then an atomic rename.

    Raises:
        SaveError: the file could not be written (e.g. no space left on the
            device); ``path`` is unchanged and the temporary file removed.
    """
    tmp = f"{path}.tmp-{os.getpid()}.keras"
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except OSError as error:
        _remove_quietly(tmp)
        raise SaveError(
            f"Could not write {path}: {_describe_os_error(error)}. The file is "
            "unchanged (its temporary copy was removed)."
        ) from error


def _describe_os_error(error):
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"no space left on the device ({error})"
    return str(error)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves ``{stage}-epoch{N}.keras`` after every finite epoch; keeps two."""

    def __init__(self, workdir, stage, keep=2):
        super().__init__()
        self.directory = _checkpoint_dir(workdir)
        self.stage = stage
        self.keep = keep
        os.makedirs(self.directory, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and not _all_finite(logs):
            return  # a diverged epoch is never checkpointed
        path = os.path.join(self.directory, f"{self.stage}-epoch{epoch + 1:04d}.keras")
        workdir = os.path.dirname(self.directory)
        try:
            save_model_atomic(self.model, path)
        except SaveError as error:
            last = latest_checkpoint(workdir, self.stage)
            kept = last[0] if last else "none yet (a rerun starts from scratch)"
            raise SaveError(
                f"{error} The last complete checkpoint is kept: {kept}. Free "
                "some space and run the same command again to resume from it."
            ) from error.__cause__
        # Older checkpoints go only once the new one is complete.
        for _, old in _checkpoints(workdir, self.stage)[: -self.keep]:
            os.remove(old)


def load_checkpoint(path):
    """Loads a checkpoint or finished stage with Keras's ``safe_mode`` on.

    ``safe_mode`` refuses to deserialise Python code (``Lambda`` layers and
    the like), so a tampered file cannot run anything when a run resumes.

    Raises:
        WorkdirError: the file is unreadable, corrupt or refused, naming it.
    """
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # zipfile, h5py, JSON and Keras errors alike
        raise WorkdirError(
            f"Cannot load {path}: {type(error).__name__}: {str(error).rstrip('.')}. "
            "Checkpoints written by this library hold no Python code and are "
            "written atomically, so this file is corrupt or was replaced "
            "(files with Lambda layers or other code are refused: safe_mode). "
            "Move it out of the checkpoints folder to resume from the "
            "previous checkpoint, or use another --workdir."
        ) from error


def _all_finite(logs):
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


class StepHistory(keras.callbacks.Callback):
    """Per-step values (appended to a CSV) and a NaN guard.

    Keras logs running means over the epoch; the value of step k is recovered
    exactly as k * mean_k - (k - 1) * mean_(k-1). gamma^2 is read from the
    model (running_mse for "running", the balancing value otherwise).
    """

    KEYS = ("loss", "reconstruction_loss", "kl_loss", "mse", "gamma")

    def __init__(self, path, stage, steps_per_epoch):
        super().__init__()
        self.path = path
        self.stage = stage
        self.steps_per_epoch = steps_per_epoch
        self.diverged = None
        self.last_finite = {}
        self._previous = {}
        self._rows = []
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._previous = {}

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        k = batch + 1
        row = {"step": self._epoch * self.steps_per_epoch + k, "epoch": self._epoch}
        for key in self.KEYS:
            mean = float(logs.get(key, float("nan")))
            row[key] = k * mean - (k - 1) * self._previous.get(key, 0.0)
            self._previous[key] = mean
        row["running_mse"] = float(self.model.running_mse.numpy())
        if not all(math.isfinite(row[key]) for key in self.KEYS):
            self.diverged = (
                f"{self.stage}: non-finite loss at step {row['step']} (epoch "
                f"{self._epoch + 1}). Last finite values: "
                + ", ".join(f"{k}={v:.6g}" for k, v in self.last_finite.items())
            )
            self.model.stop_training = True
            return
        self.last_finite = {
            key: row[key] for key in ("loss", "mse", "kl_loss", "gamma")
        }
        self._rows.append(row)

    def on_epoch_end(self, epoch, logs=None):
        self.flush()

    def flush(self):
        if not self._rows:
            return
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self._rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(self._rows)
        self._rows = []


def _truncate_csv(path, keep_rows_where):
    """Drops rows of epochs past the checkpoint, left by a killed run.

    A row cut short by the kill (missing or extra fields, an unparsable
    value) is dropped too, and the file rewritten without it.
    """
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fieldnames = reader.fieldnames
    if not rows:
        return

    def keep(row):
        if None in row or None in row.values():
            return False
        try:
            return keep_rows_where(row)
        except (TypeError, ValueError):
            return False

    kept = [row for row in rows if keep(row)]
    if len(kept) != len(rows):
        tmp = path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, path)


def staircase(learning_rate, lr_epochs):
    """lr halved every ``lr_epochs`` epochs (staircase), as in the paper."""

    def schedule(epoch, lr=None):
        return float(learning_rate * 0.5 ** (epoch // lr_epochs))

    return schedule


class ImageGrids(keras.callbacks.Callback):
    """PNG grids and TensorBoard images every ``every`` epochs.

    Also after ``last_epoch`` when given; stage 2 passes None because the job
    writes the final grids right after it.
    """

    def __init__(self, stage, make_grids, every, last_epoch):
        super().__init__()
        self.stage, self.make_grids = stage, make_grids
        self.every, self.last_epoch = every, last_epoch

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every == 0 or done == self.last_epoch:
            self.make_grids(step=done, tag=f"{self.stage}-epoch{done:04d}")


# -------------------------------------------------------------- the job
@dataclasses.dataclass
class RunResult:
    """What `train` produced."""

    workdir: str
    sampler_path: str
    stage1_logs: dict
    stage2_logs: dict
    seconds: float


def _compile(model, learning_rate, config, jit_compile):
    optimizer = keras.optimizers.Adam(
        learning_rate, beta_1=0.9, beta_2=0.999, epsilon=config.adam_epsilon
    )
    model.compile(optimizer=optimizer, jit_compile=jit_compile)


def _fit_stage(
    stage,
    build,
    dataset,
    epochs,
    learning_rate,
    lr_epochs,
    steps_per_epoch,
    config,
    workdir,
    callbacks,
    verbose,
    jit_compile,
    validation_data=None,
    strategy=None,
):
    """Fits one stage from scratch or from its last checkpoint."""
    strategy = strategy or tf.distribute.get_strategy()
    final_path = os.path.join(workdir, f"{stage}.keras")
    history_csv = os.path.join(workdir, f"history_{stage}.csv")
    steps_csv = os.path.join(workdir, f"steps_{stage}.csv")
    found = latest_checkpoint(workdir, stage)
    with strategy.scope():
        if found is not None and found[1] >= epochs and os.path.exists(final_path):
            # The finished stage (its BatchNorm statistics recomputed).
            model, initial_epoch = load_checkpoint(final_path), found[1]
            print(f"[{stage}] done: {final_path} ({initial_epoch} epochs)")
            return model, {}
        if found is not None:
            path, initial_epoch = found
            model = load_checkpoint(path)
            print(f"[{stage}] resuming from {path} (epoch {initial_epoch}/{epochs})")
        else:
            model, initial_epoch = build(), 0
            _compile(model, learning_rate, config, jit_compile)
    _truncate_csv(history_csv, lambda row: int(row["epoch"]) < initial_epoch)
    _truncate_csv(steps_csv, lambda row: int(row["epoch"]) < initial_epoch)
    if initial_epoch >= epochs:
        save_model_atomic(model, final_path)
        return model, {}

    guard = StepHistory(steps_csv, stage, steps_per_epoch)
    all_callbacks = [
        keras.callbacks.LearningRateScheduler(staircase(learning_rate, lr_epochs)),
        guard,
        keras.callbacks.CSVLogger(history_csv, append=True),
        EpochCheckpoint(workdir, stage),
        keras.callbacks.TensorBoard(
            os.path.join(workdir, "tensorboard", stage), write_graph=False
        ),
        *callbacks,
    ]
    history = model.fit(
        dataset,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=all_callbacks,
        validation_data=validation_data,
        verbose=verbose,
        shuffle=False,  # the dataset is shuffled by tf.data
    )
    guard.flush()
    if guard.diverged:
        last = latest_checkpoint(workdir, stage)
        where = last[0] if last else "none yet (the run restarts from scratch)"
        raise TrainingDiverged(
            f"{guard.diverged}. The last good checkpoint is kept: {where}. "
            "Run the same command again to resume from it, e.g. with a lower "
            "--learning-rate."
        )
    save_model_atomic(model, final_path)
    logs = {k: float(v[-1]) for k, v in history.history.items()}
    return model, logs


def train(
    config,
    workdir,
    train_data=None,
    test_images=None,
    data_dir=None,
    limit=None,
    verbose="auto",
    grid_every=5,
    jit_compile=False,
    allow_config_change=False,
    num_grid_images=64,
    skip_bad=False,
    strategy=None,
    precision=None,
    recalibrate_bn=True,
    recalibrate_batches=batchnorm.DEFAULT_NUM_BATCHES,
):
    """Runs the whole two-stage job, resuming whatever is already done.

    Args:
        config: a `VAEConfig` or a preset name.
        workdir: output directory (created); rerun the same call to resume.
        train_data: unbatched `tf.data.Dataset` of training images in [0, 1]
            or a NumPy array; None loads ``config.dataset`` with
            `vae_balance.data` (from ``data_dir``, else tensorflow-datasets).
        test_images: test images (NumPy or dataset) for the reconstruction
            grids and the validation loss (the first 1000); None loads the
            dataset's test split.
        data_dir: local data for `vae_balance.data`.
        limit: use only the first ``limit`` training images (smoke runs).
        verbose: Keras progress bar setting.
        grid_every: write image grids and curves every this many epochs.
        jit_compile: XLA compilation of the training step.
        allow_config_change: resume even if the model-defining configuration
            differs from the one saved in the work directory.
        num_grid_images: images per PNG grid.
        skip_bad: skip unreadable or wrongly shaped image files (the count is
            logged) instead of stopping with a `data.DataError` naming them.
        strategy: a `tf.distribute.Strategy`, or a name for
            `vae_balance.distribute.get_strategy` ("default", "mirrored",
            "multiworker"); None: the current (default) strategy. The models
            are built, compiled and reloaded inside its scope.
        precision: None keeps the global Keras dtype policy; else a name for
            `vae_balance.distribute.set_precision`, set before any model is
            built ("float32", "mixed_float16", "mixed_bfloat16").
        recalibrate_bn: after stage 1, recompute its BatchNorm moving
            statistics from ``recalibrate_batches`` training batches with the
            final weights (`vae_balance.recalibrate_batchnorm`), before the
            grids, the latent codes and the export. Also done for a resumed
            run whose finished stage 1 was not recalibrated yet.
        recalibrate_batches: the bound on the batches of that pass.

    Returns:
        A `RunResult`; the sampler SavedModel is ``workdir/sampler``.

    Raises:
        WorkdirError: the work directory is locked by another run, holds
            another configuration or an unreadable checkpoint.
        SaveError: a file could not be written (e.g. the disk is full); the
            complete files written before, checkpoints included, are kept.
        TrainingDiverged: a loss became NaN or Inf; the last good checkpoint
            is kept.
        data.DataError, data.DatasetNotFoundError: bad or missing data.
    """
    start = time.time()
    config = get_preset(config) if not isinstance(config, VAEConfig) else config
    if isinstance(strategy, str):
        strategy = distribute.get_strategy(strategy)
    strategy = strategy or tf.distribute.get_strategy()
    if precision is not None:
        distribute.set_precision(precision)  # before any model is built
    os.makedirs(workdir, exist_ok=True)
    with WorkdirLock(workdir):
        _check_or_write_config(config, workdir, allow_config_change)
        _remove_stale_temporaries(workdir)
        try:
            return _run(
                config,
                workdir,
                train_data=train_data,
                test_images=test_images,
                data_dir=data_dir,
                limit=limit,
                verbose=verbose,
                grid_every=grid_every,
                jit_compile=jit_compile,
                num_grid_images=num_grid_images,
                skip_bad=skip_bad,
                strategy=strategy,
                start=start,
                recalibrate_bn=recalibrate_bn,
                recalibrate_batches=recalibrate_batches,
            )
        except OSError as error:
            if error.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                raise
            raise SaveError(
                f"Could not write {error.filename or 'a file'} in {workdir}: "
                f"{_describe_os_error(error)}. Complete files and checkpoints "
                "are kept; free some space and run the same command again to "
                "resume."
            ) from error


def _run(
    config,
    workdir,
    *,
    train_data,
    test_images,
    data_dir,
    limit,
    verbose,
    grid_every,
    jit_compile,
    num_grid_images,
    skip_bad,
    strategy,
    start,
    recalibrate_bn,
    recalibrate_batches,
):
    """The body of `train`, with the work directory locked."""
    train_images, test_images = _load_data(
        config, train_data, test_images, data_dir, limit, skip_bad
    )
    num_train = data.num_examples(train_images)
    steps = num_train // config.batch_size
    batched = data.make_train_dataset(train_images, config.batch_size, config.seed)
    writer = tf.summary.create_file_writer(
        os.path.join(workdir, "tensorboard", "images")
    )
    keras.utils.set_random_seed(config.seed)
    u_noise = (
        np.random.default_rng(config.seed)
        .standard_normal((num_grid_images, config.latent_dim))
        .astype("float32")
    )

    state = {}

    def make_grids(step, tag):
        vae = state.get("vae")
        grids = {}
        if vae is not None:
            originals = test_images[:num_grid_images]
            grids["reconstructions"] = np.asarray(vae.predict(originals, verbose=0))
            grids["originals"] = originals
            grids["gen1"] = np.asarray(vae.decoder.predict(u_noise, verbose=0))
        vae2 = state.get("vae2")
        if vae is not None and vae2 is not None:
            sampler = TwoStageSampler(vae.decoder, vae2.decoder)
            grids["gen2"] = np.asarray(sampler.predict(u_noise, verbose=0))
        plots.write_grids(
            grids, os.path.join(workdir, "images"), tag, config, writer, step
        )
        plots.plot_curves(workdir, os.path.join(workdir, "curves.png"))

    class Track(keras.callbacks.Callback):
        def __init__(self, key):
            super().__init__()
            self.key = key

        def on_train_begin(self, logs=None):
            state[self.key] = self.model

    # ---- stage 1
    print(f"[stage1] {num_train} images, {steps} steps/epoch -> {workdir}")
    vae, logs1 = _fit_stage(
        "stage1",
        lambda: build_vae(config),
        batched,
        config.epochs,
        config.learning_rate,
        config.lr_epochs,
        steps,
        config,
        workdir,
        [
            Track("vae"),
            # The last epoch's grids follow the BatchNorm recalibration.
            ImageGrids("stage1", make_grids, grid_every, last_epoch=None),
        ],
        verbose,
        jit_compile,
        validation_data=(
            data.make_eval_dataset(
                tf.data.Dataset.from_tensor_slices(test_images), config.batch_size
            )
            if len(test_images)
            else None
        ),
        strategy=strategy,
    )
    state["vae"] = vae
    recalibrated = _finish_first_stage(
        vae,
        workdir,
        data.make_train_dataset(train_images, config.batch_size, config.seed + 1),
        test_images,
        config,
        recalibrate_bn,
        recalibrate_batches,
    )
    if (logs1 or recalibrated) and _discard_stage(workdir, "stage2"):
        # Stage 1 trained further (e.g. a rerun with more --epochs) or its
        # BatchNorm statistics changed: the old stage 2 learned the codes of
        # an encoder that no longer exists.
        print("[stage2] stage 1 changed: the previous stage 2 is discarded")
    if logs1 or recalibrated:
        make_grids(step=config.epochs, tag=f"stage1-epoch{config.epochs:04d}")

    # ---- latent codes of the training set, once
    latents_path = os.path.join(workdir, "latents.npz")
    if os.path.exists(latents_path) and latest_checkpoint(workdir, "stage2"):
        with np.load(latents_path) as f:
            z_mean, z_log_sigma = f["z_mean"], f["z_log_sigma"]
    else:
        print("[latents] encoding the training set with the frozen encoder")
        z_mean, z_log_sigma = encode_dataset(
            vae.encoder,
            data.make_eval_dataset(train_images, config.batch_size),
            verbose=verbose,
        )
        tmp = latents_path + ".tmp.npz"
        np.savez(tmp, z_mean=z_mean, z_log_sigma=z_log_sigma)
        os.replace(tmp, latents_path)

    # ---- stage 2
    steps2 = len(z_mean) // config.batch_size
    vae2, logs2 = _fit_stage(
        "stage2",
        lambda: build_second_stage(config),
        latent_dataset(z_mean, z_log_sigma, config.batch_size, config.seed),
        config.epochs2,
        config.learning_rate2,
        config.lr_epochs2,
        steps2,
        config,
        workdir,
        [
            Track("vae2"),
            ImageGrids("stage2", make_grids, grid_every, last_epoch=None),
        ],
        verbose,
        jit_compile,
        strategy=strategy,
    )
    state["vae2"] = vae2
    make_grids(step=config.epochs + config.epochs2, tag="final")

    sampler_path = os.path.join(workdir, "sampler")
    export_sampler((vae, vae2), sampler_path, overwrite=True, config=config)
    seconds = time.time() - start
    print(
        f"[done] {seconds:.0f} s. Sampler: {sampler_path}; images: "
        f"{os.path.join(workdir, 'images')}; curves: "
        f"{os.path.join(workdir, 'curves.png')}"
    )
    return RunResult(workdir, sampler_path, logs1, logs2, seconds)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _finish_first_stage(
    vae, workdir, train_batches, test_images, config, recalibrate_bn, num_batches
):
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
    if not batchnorm.batchnorm_layers(vae.encoder) + batchnorm.batchnorm_layers(
        vae.decoder
    ):
        return False
    final_path = os.path.join(workdir, "stage1.keras")
    record_path = os.path.join(workdir, "batchnorm.json")
    record = {}
    if os.path.exists(record_path):
        with open(record_path) as f, contextlib.suppress(json.JSONDecodeError):
            record = json.load(f)
    done = is_recalibrated(workdir, final_path)
    images = test_images if len(test_images) else train_batches.take(10)
    recalibrated = False
    if recalibrate_bn and not done:
        before = batchnorm.reconstruction_mse(vae, images, False, config.batch_size)
        info = batchnorm.recalibrate_batchnorm(
            vae, train_batches, num_batches, config.batch_size, seed=config.seed
        )
        after = batchnorm.reconstruction_mse(vae, images, False, config.batch_size)
        print(
            f"[stage1] BatchNorm statistics recomputed from {info['images']} "
            f"training images ({info['layers']} layers): validation MSE "
            f"(inference mode) {before:.5f} -> {after:.5f}"
        )
        save_model_atomic(vae, final_path)
        record["stage1"] = {
            "sha256": _sha256(final_path),
            "images": info["images"],
            "batches": info["batches"],
            "val_mse_before": before,
            "val_mse_after": after,
        }
        _atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
        recalibrated = True
    inference, training = batchnorm.check_batchnorm(
        vae, images, config.batch_size, what="stage1"
    )
    print(
        f"[stage1] validation MSE: inference mode {inference:.5f}, training-mode "
        f"BatchNorm {training:.5f} (ratio {inference / training:.2f}; warns above "
        f"{batchnorm.MSE_RATIO_WARNING})"
    )
    return recalibrated


def is_recalibrated(workdir, path):
    """True when ``path`` is the stage-1 file whose BatchNorm statistics the
    job recomputed (its sha256 is recorded in ``batchnorm.json``)."""
    record_path = os.path.join(workdir, "batchnorm.json")
    if not os.path.exists(record_path) or not os.path.exists(path):
        return False
    with open(record_path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError:
            return False
    return record.get("stage1", {}).get("sha256") == _sha256(path)


def recalibrate_loaded_stage1(
    vae, config, data_dir=None, num_batches=batchnorm.DEFAULT_NUM_BATCHES
):
    """Recomputes a loaded stage 1's BatchNorm statistics from its training data.

    For a stage-1 model read from a checkpoint (an interrupted run) or from
    an older version's run, before it is exported: the first
    ``num_batches * batch_size`` training images of ``config.dataset``,
    shuffled. Nothing in the work directory is changed.

    Returns:
        ``(val_mse_before, val_mse_after, info)`` on the test split's first
        1,000 images (inference mode), or None values when it has none.
    """
    train, test = _load_data(
        config, None, None, data_dir, num_batches * config.batch_size
    )
    batches = data.make_train_dataset(train, config.batch_size, config.seed + 1)
    before = batchnorm.reconstruction_mse(vae, test, False, config.batch_size)
    info = batchnorm.recalibrate_batchnorm(
        vae, batches, num_batches, config.batch_size, seed=config.seed
    )
    after = batchnorm.reconstruction_mse(vae, test, False, config.batch_size)
    return before, after, info


def _load_data(config, train_data, test_images, data_dir, limit, skip_bad=False):
    """(unbatched train dataset, NumPy test images) from arguments or files."""
    if train_data is None:
        train_data = data.load_split(
            config, "train", data_dir, limit=limit, dtype="uint8", skip_bad=skip_bad
        )
    elif isinstance(train_data, np.ndarray):
        train_data = data.from_arrays(train_data, image_shape=config.image_shape)
    if limit is not None:
        train_data = train_data.take(limit)
    if test_images is None:
        test_limit = min(limit or NUM_TEST_IMAGES, NUM_TEST_IMAGES)
        test_images = data.load_split(
            config, "test", data_dir, limit=test_limit, skip_bad=skip_bad
        )
    if not isinstance(test_images, np.ndarray):
        test_images = np.stack(
            list(test_images.take(NUM_TEST_IMAGES).as_numpy_iterator())
        )
    elif test_images.dtype == np.uint8:
        test_images = test_images.astype("float32") / 255.0
    return train_data, test_images[:NUM_TEST_IMAGES].astype("float32")
