"""The Keras callbacks of the training job, and the image grids they write.

- `EpochCheckpoint`: ``checkpoints/{stage}-epochNNNN.keras`` after every
  finite epoch, the last two kept;
- `StepHistory`: one CSV row per step, and the NaN guard;
- `staircase`: the learning rate halved every ``lr_epochs`` epochs;
- `ImageGrids` and `GridWriter`: PNG grids, TensorBoard images and curves;
- `TrackModel`: hands the model being fitted to whoever needs it (the grids).
"""

import csv
import math
import os

import keras
import numpy as np
import tensorflow as tf

from vae_balance import plots
from vae_balance.sampler import TwoStageSampler
from vae_balance.workdir import SaveError, Workdir, save_model_atomic


def all_finite(logs):
    """True when every value of a Keras ``logs`` dict is finite."""
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves ``{stage}-epoch{N}.keras`` after every finite epoch; keeps two."""

    def __init__(self, workdir, stage, keep=2):
        super().__init__()
        self.workdir = Workdir(workdir)
        self.directory = self.workdir.checkpoint_dir
        self.stage = stage
        self.keep = keep
        os.makedirs(self.directory, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and not all_finite(logs):
            return  # a diverged epoch is never checkpointed
        path = self.workdir.checkpoint_path(self.stage, epoch + 1)
        try:
            save_model_atomic(self.model, path)
        except SaveError as error:
            last = self.workdir.latest_checkpoint(self.stage)
            kept = last[0] if last else "none yet (a rerun starts from scratch)"
            raise SaveError(
                f"{error} The last complete checkpoint is kept: {kept}. Free "
                "some space and run the same command again to resume from it."
            ) from error.__cause__
        # Older checkpoints go only once the new one is complete.
        for _, old in self.workdir.checkpoints(self.stage)[: -self.keep]:
            os.remove(old)


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


def staircase(learning_rate, lr_epochs):
    """lr halved every ``lr_epochs`` epochs (staircase), as in the paper."""

    def schedule(epoch, lr=None):
        return float(learning_rate * 0.5 ** (epoch // lr_epochs))

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
