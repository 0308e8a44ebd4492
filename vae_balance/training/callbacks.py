"""The Keras callbacks of the training job, and the image grids they write.

- `StepHistory`: one CSV row per step, and the NaN guard;
- `TensorBoardScalars`: the epoch's logs as TensorBoard scalars;
- `staircase`: the learning rate halved every ``lr_epochs`` epochs;
- `ImageGrids` and `GridWriter`: PNG grids, TensorBoard images and curves;
- `TrackModel`: hands the model being fitted to whoever needs it (the grids).

The checkpoints' callbacks (`Checkpointer`, `EpochCheckpoint`) are in
`vae_balance.training.checkpointer`.
"""

import csv
import math
import os

import keras
import numpy as np
import tensorflow as tf

from vae_balance import plots
from vae_balance.model.schedules import staircase_rate
from vae_balance.sampling.two_stage import TwoStageSampler


def all_finite(logs):
    """True when every value of a Keras ``logs`` dict is finite."""
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


class StepHistory(keras.callbacks.Callback):
    """Per-step values (appended to a CSV) and a NaN guard.

    Keras logs running means over the epoch; the value of step k is recovered
    exactly as k * mean_k - (k - 1) * mean_(k-1). gamma^2 is read from the
    model (running_mse for "running", the balancing value otherwise).

    Rows are buffered and appended at every epoch end and checkpoint
    (`flush`). An epoch resumed at step s (`begin_epoch`) numbers its rows
    from s + 1, and its first row uses the restored trackers' means at s
    (`vae_balance.training.checkpointer.RestoreMetrics` runs before it).
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
        self.start_step = 0

    def begin_epoch(self, epoch, start_step):
        """The stage loop's next fit: ``epoch`` from ``start_step``."""
        self._epoch, self.start_step = epoch, start_step

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._previous = {}
        if self.start_step:
            results = {m.name: m.result() for m in self.model.metrics}
            self._previous = {
                key: float(results[key]) for key in self.KEYS if key in results
            }

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        k = self.start_step + batch + 1
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
        """Appends the rows of the steps so far to the CSV file."""
        if not self._rows:
            return
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self._rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(self._rows)
        self._rows = []


class TensorBoardScalars(keras.callbacks.Callback):
    """The epoch's logs as TensorBoard scalars, flushed at every epoch end.

    ``<root>/train`` gets ``epoch_<name>`` for the training logs and
    ``<root>/validation`` for the ``val_`` ones, as Keras' ``TensorBoard``
    callback lays them out. Unlike it, the files are flushed after each
    epoch, so a checkpoint can record their length
    (`vae_balance.training.checkpoints`), and one writer serves all the fits of a
    stage.
    """

    def __init__(self, root):
        super().__init__()
        self.root = root
        self._writers = {}

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(
                os.path.join(self.root, name)
            )
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        for prefix, name in (("val_", "validation"), ("", "train")):
            values = {
                key: value
                for key, value in (logs or {}).items()
                if key.startswith("val_") == bool(prefix)
            }
            if not values:
                continue
            writer = self._writer(name)
            with writer.as_default():
                for key, value in values.items():
                    tag = "epoch_" + key.removeprefix(prefix)
                    tf.summary.scalar(tag, float(value), step=epoch)
            writer.flush()

    def close(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def staircase(learning_rate, lr_epochs):
    """lr halved every ``lr_epochs`` epochs (staircase), as in the paper."""

    def schedule(epoch, lr=None):
        return staircase_rate(learning_rate, lr_epochs, epoch)

    return schedule


class TrackModel(keras.callbacks.Callback):
    """Calls ``on_begin(model)`` with the model being fitted as training begins.

    A stage resumed from a checkpoint is a model the job has not seen before
    `fit`; this hands it to the `GridWriter`.
    """

    def __init__(self, on_begin):
        super().__init__()
        self.on_begin = on_begin

    def on_train_begin(self, logs=None):
        self.on_begin(self.model)


class ImageGrids(keras.callbacks.Callback):
    """PNG grids and TensorBoard images every ``every`` epochs.

    Also after ``last_epoch`` when given; stage 2 passes None because the job
    writes the final grids right after it. ``make_grids(step, tag)`` writes
    them (`GridWriter.write`).
    """

    def __init__(self, stage, make_grids, every, last_epoch):
        super().__init__()
        self.stage, self.make_grids = stage, make_grids
        self.every, self.last_epoch = every, last_epoch

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every == 0 or done == self.last_epoch:
            self.make_grids(step=done, tag=f"{self.stage}-epoch{done:04d}")


class GridWriter:
    """Writes the image grids of the current models, and the curves.

    Reconstructions, originals and GEN-1 once a first stage is known, GEN-2
    once both are; the same latent noise every time.

    Args:
        workdir: the `Workdir`.
        config: the run's `VAEConfig`.
        test_images: NumPy test images; the first ``num_images`` are shown.
        num_images: images per grid.
    """

    def __init__(self, workdir, config, test_images, num_images):
        self.workdir, self.config = workdir, config
        self.originals = test_images[:num_images]
        self.summary_writer = tf.summary.create_file_writer(
            workdir.tensorboard_dir("images")
        )
        self.noise = (
            np.random.default_rng(config.seed)
            .standard_normal((num_images, config.latent_dim))
            .astype("float32")
        )
        self.first_stage = None
        self.second_stage = None

    def use_first_stage(self, model):
        """The stage-1 model of the next grids."""
        self.first_stage = model

    def use_second_stage(self, model):
        """The stage-2 model of the next grids."""
        self.second_stage = model

    def write(self, step, tag):
        """The grids as ``images/<name>-<tag>.png`` and TensorBoard images at
        ``step``, and ``curves.png``."""
        grids = {}
        first, second = self.first_stage, self.second_stage
        if first is not None:
            grids["reconstructions"] = np.asarray(
                first.predict(self.originals, verbose=0)
            )
            grids["originals"] = self.originals
            grids["gen1"] = np.asarray(first.decoder.predict(self.noise, verbose=0))
        if first is not None and second is not None:
            sampler = TwoStageSampler(first.decoder, second.decoder)
            grids["gen2"] = np.asarray(sampler.predict(self.noise, verbose=0))
        plots.write_grids(
            grids, self.workdir.images_dir, tag, self.config, self.summary_writer, step
        )
        plots.plot_curves(self.workdir.root, self.workdir.curves_path)
