"""The whole two-stage job for a preset and a work directory, resumable.

``train(config, workdir)`` reads straight down `_run`: load the data ->
fit stage 1 -> recompute its BatchNorm statistics -> encode the training set
-> fit stage 2 -> final grids -> export the sampler. The files it writes into
``workdir`` are those of `vae_balance.workdir.Workdir` (config.json, the
per-epoch and per-step CSV logs, checkpoints/, stage1.keras, stage2.keras,
latents.npz, batchnorm.json, sampler/, images/, curves.png, tensorboard/);
the callbacks of the fits are in `vae_balance.training.callbacks`.

Running the same command again on the same work directory resumes from the
newest verified checkpoint, at the step where it was written, and ends with
the weights and logs an uninterrupted run would have (`fit_stage`,
`vae_balance.training.checkpoints`). Step checkpoints are written every
``checkpoint_minutes`` (and ``checkpoint_steps``) and on SIGTERM / SIGINT,
which then raise `TrainingInterrupted` (`vae_balance.training.preemption`).
Under a multi-worker strategy the chief writes the run; the other workers
write to scratch copies (`vae_balance.training.workers`). The images come
from the arguments or from files (`vae_balance.training.data`). Every file
is written to a temporary name and renamed,
so a run killed at any point leaves only complete files behind; the next run
deletes the temporaries. A write that fails (a full disk) raises `SaveError`
and keeps the last complete checkpoint; a NaN or Inf loss raises
`TrainingDiverged`, also keeping it; a second run on a busy work directory,
or one made with another configuration, raises `WorkdirError`.
"""

import contextlib
import dataclasses
import math
import os
import time
import types

import keras
import numpy as np
import tensorflow as tf

from vae_balance.config import VAEConfig, get_preset
from vae_balance.datasets import pipeline, stream
from vae_balance.export.savedmodel import export_sampler
from vae_balance.files import atomic_write, describe_os_error, is_disk_full
from vae_balance.model import batchnorm, distribute
from vae_balance.model.builders import build_second_stage, build_vae
from vae_balance.sampling.two_stage import encode_dataset
from vae_balance.training.callbacks import (
    GridWriter,
    ImageGrids,
    TrackModel,
)
from vae_balance.training.data import load_data
from vae_balance.training.options import DEFAULT_CHECKPOINT_MINUTES, RunOptions
from vae_balance.training.preemption import StopRequests
from vae_balance.training.stages import (
    StageSpec,
    finish_first_stage,
    fit_stage,
)
from vae_balance.training.validation import FreshStatisticsForValidation
from vae_balance.training.workers import worker_workdir
from vae_balance.workdir import (
    SaveError,
    Workdir,
    WorkdirLock,
    list_checkpoints,
)

__all__ = ["RunResult", "reproducible_graphs", "train"]


@dataclasses.dataclass
class RunResult:
    """What `train` produced."""

    workdir: str
    sampler_path: str
    stage1_logs: dict
    stage2_logs: dict
    seconds: float


def _first_stage_spec(config):
    """Stage 1: the image VAE (`build_vae`)."""
    return StageSpec(
        "stage1",
        lambda: build_vae(config),
        config.epochs,
        config.learning_rate,
        config.lr_epochs,
    )


def _second_stage_spec(config):
    """Stage 2: the VAE of stage 1's latent codes (`build_second_stage`)."""
    return StageSpec(
        "stage2",
        lambda: build_second_stage(config),
        config.epochs2,
        config.learning_rate2,
        config.lr_epochs2,
    )


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
    checkpoint_minutes=DEFAULT_CHECKPOINT_MINUTES,
    checkpoint_steps=None,
    snapshot_every=None,
    handle_signals=True,
):
    """Runs the whole two-stage job, resuming whatever is already done.

    Args:
        config: a `VAEConfig` or a preset name.
        workdir: output directory (created); rerun the same call to resume.
        train_data: unbatched `tf.data.Dataset` or NumPy array of training
            images in [0, 1]; None: ``config.dataset`` via `vae_balance.data`.
        test_images: test images (NumPy or dataset) for the grids and the
            validation loss (the first 1000); None: the dataset's test split.
        data_dir: local data for `vae_balance.data`.
        limit: use only the first ``limit`` training images (smoke runs).
        verbose: Keras progress bar setting.
        grid_every: write image grids and curves every this many epochs.
        jit_compile: XLA compilation of the training step.
        allow_config_change: resume with a model-defining configuration
            other than the one saved in the work directory.
        num_grid_images: images per PNG grid.
        skip_bad: skip bad image files (logging the count) instead of raising.
        strategy: a `tf.distribute.Strategy`, a name ("default", "mirrored",
            "multiworker") or None: the current (default) strategy.
        precision: None keeps Keras's dtype policy; else "float32",
            "mixed_float16" or "mixed_bfloat16", set before any model.
        recalibrate_bn: after stage 1, recompute its BatchNorm statistics
            from training batches with the final weights.
        recalibrate_batches: the bound on the batches of that pass.
        checkpoint_minutes: inside an epoch, write a step checkpoint every
            this many minutes (None: only at epoch ends).
        checkpoint_steps: also write one every this many steps (None: never).
        snapshot_every: keep stage 1's checkpoint every this many epochs.
        handle_signals: on SIGTERM or SIGINT, write a step checkpoint and
            raise `TrainingInterrupted`; a second signal exits at once.

    Returns a `RunResult` (the sampler SavedModel is ``workdir/sampler``);
    raises the errors of the module docstring, and `registry.DataError` or
    `DatasetNotFoundError`. `RunOptions` details several options.
    """
    return _train(types.SimpleNamespace(**locals()))  # the arguments, by name


# The `RunOptions` fields that `train` passes on as given; it resolves the rest.
_RESOLVED = ("config", "workdir", "strategy", "start", "stops")
_PASSED_ON = tuple(
    field.name
    for field in dataclasses.fields(RunOptions)
    if field.name not in _RESOLVED
)


def _train(args):
    """`train` on its arguments (a namespace of them, by name): resolves them
    into `RunOptions` and runs `_run` with the work directory locked."""
    start = time.time()
    config = args.config
    config = get_preset(config) if not isinstance(config, VAEConfig) else config
    _check_interval(args.checkpoint_minutes, args.checkpoint_steps)
    strategy = _strategy_and_precision(args.strategy, args.precision)
    stops = StopRequests() if args.handle_signals else contextlib.nullcontext()
    # The chief writes the run; the other workers write to a scratch copy.
    with worker_workdir(args.workdir, strategy) as root:
        run = RunOptions(
            config=config,
            workdir=Workdir(root),
            strategy=strategy,
            start=start,
            stops=stops if args.handle_signals else None,
            **{name: getattr(args, name) for name in _PASSED_ON},
        )
        return _run_locked(run, stops, args.allow_config_change)


def _strategy_and_precision(strategy, precision):
    """The `tf.distribute.Strategy` of a name, an instance or None; sets the
    global precision policy first (before any model is built)."""
    if isinstance(strategy, str):
        strategy = distribute.get_strategy(strategy)
    if precision is not None:
        distribute.set_precision(precision)
    return strategy or tf.distribute.get_strategy()


def _run_locked(run, stops, allow_config_change):
    """`_run` with the work directory locked and checked, signals handled and
    graphs reproducible; a full disk becomes a `SaveError`."""
    root = run.workdir.root
    os.makedirs(root, exist_ok=True)
    with WorkdirLock(root), stops, reproducible_graphs():
        run.workdir.check_and_write_config(
            run.config,
            allow_config_change,
            settings={
                "precision": keras.config.dtype_policy().name,
                "limit": run.limit,
            },
        )
        run.workdir.remove_stale_temporaries()
        try:
            return _run(run)
        except OSError as error:
            if not is_disk_full(error):
                raise
            raise SaveError(
                f"Could not write {error.filename or 'a file'} in {root}: "
                f"{describe_os_error(error)}. Complete files and checkpoints "
                "are kept; free some space and run the same command again to "
                "resume."
            ) from error


@contextlib.contextmanager
def reproducible_graphs():
    """Turns Grappler's arithmetic optimizer off while the job runs.

    It rewrites chains of float32 additions (into ``AddN`` and the like) in an
    order that changes from one process to the next: two identical runs then
    log a stage-2 ``loss`` that differs in its last bit (1e-6 relative) while
    the weights, ``reconstruction_loss`` and ``kl_loss`` agree. Without it a
    run and its resumption in a new process log the same bits. The previous
    setting is restored on the way out.
    """
    key = "arithmetic_optimization"
    previous = tf.config.optimizer.get_experimental_options().get(key)
    tf.config.optimizer.set_experimental_options({key: False})
    try:
        yield
    finally:
        restored = True if previous is None else previous
        tf.config.optimizer.set_experimental_options({key: restored})


def _check_interval(minutes, steps):
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"checkpoint_minutes must be positive or None, got {minutes}.")
    if steps is not None and not (int(steps) == steps and steps > 0):
        raise ValueError(f"checkpoint_steps must be a positive integer, got {steps}.")


def _run(run):
    """The body of `train`, with the work directory locked."""
    train_images, test_images = load_data(
        run.config,
        run.train_data,
        run.test_images,
        run.data_dir,
        run.limit,
        run.skip_bad,
    )
    grids = GridWriter(run.workdir, run.config, test_images, run.num_grid_images)
    first_stage, first_logs = _train_first_stage(run, train_images, test_images, grids)
    recalibrated = finish_first_stage(run, first_stage, train_images, test_images)
    if first_logs or recalibrated:
        _first_stage_changed(run, grids)
    z_mean, z_log_sigma = _latent_codes(run, first_stage.encoder, train_images)
    second_stage, second_logs = _train_second_stage(run, z_mean, z_log_sigma, grids)
    grids.write(step=run.config.epochs + run.config.epochs2, tag="final")
    return _export(run, (first_stage, second_stage), first_logs, second_logs)


# ------------------------------------------------------ the steps of _run
def _train_first_stage(run, train_images, test_images, grids):
    """Fits (or resumes, or loads) stage 1 on the training images."""
    config = run.config
    num_train = pipeline.num_examples(train_images)
    steps = num_train // config.batch_size
    if steps == 0:
        raise pipeline.DataError(
            f"{num_train} images are fewer than one batch of {config.batch_size}; "
            "lower batch_size or raise limit."
        )
    keras.utils.set_random_seed(config.seed)  # the initial weights
    validation = (
        pipeline.make_eval_dataset(
            tf.data.Dataset.from_tensor_slices(test_images), config.batch_size
        )
        if len(test_images)
        else None
    )
    print(f"[stage1] {num_train} images, {steps} steps/epoch -> {run.workdir.root}")
    first_stage, logs = fit_stage(
        run,
        _first_stage_spec(config),
        lambda epoch, start: stream.image_epoch(
            train_images, config.batch_size, config.seed, epoch, start
        ),
        steps,
        [
            TrackModel(grids.use_first_stage),
            *_fresh_statistics(run, train_images),
            # The last epoch's grids follow the BatchNorm recalibration.
            ImageGrids("stage1", grids.write, run.grid_every, last_epoch=None),
        ],
        validation_data=validation,
    )
    grids.use_first_stage(first_stage)
    return first_stage, logs


def _fresh_statistics(run, train_images):
    """The per-epoch validation's BatchNorm recomputation, unless the run
    turned recalibration off (``--no-recalibrate-bn``)."""
    if not run.recalibrate_bn:
        return []
    config = run.config
    return [
        FreshStatisticsForValidation(
            lambda epoch: stream.image_epoch(
                train_images, config.batch_size, config.seed + 1, epoch, 0
            ),
            seed=config.seed,
        )
    ]


def _first_stage_changed(run, grids):
    """Stage 1 trained further (e.g. a rerun with more --epochs) or its
    BatchNorm statistics changed: the old stage 2 learned the codes of an
    encoder that no longer exists. Discards it; writes stage 1's grids."""
    if run.workdir.discard_stage("stage2"):
        print("[stage2] stage 1 changed: the previous stage 2 is discarded")
    epochs = run.config.epochs
    grids.write(step=epochs, tag=f"stage1-epoch{epochs:04d}")


def _latent_codes(run, encoder, train_images):
    """``(z_mean, z_log_sigma)`` of the training set, encoded once.

    Read back from ``latents.npz`` while stage 2 has checkpoints made on them.
    """
    path = run.workdir.latents_path
    if os.path.exists(path) and list_checkpoints(run.workdir.checkpoint_dir, "stage2"):
        with np.load(path) as f:
            return f["z_mean"], f["z_log_sigma"]
    print("[latents] encoding the training set with the frozen encoder")
    z_mean, z_log_sigma = encode_dataset(
        encoder,
        pipeline.make_eval_dataset(train_images, run.config.batch_size),
        verbose=run.verbose,
    )
    atomic_write(
        path,
        write=lambda tmp: np.savez(tmp, z_mean=z_mean, z_log_sigma=z_log_sigma),
        suffix=".npz",
    )
    return z_mean, z_log_sigma


def _train_second_stage(run, z_mean, z_log_sigma, grids):
    """Fits (or resumes, or loads) stage 2 on the latent codes."""
    config = run.config
    second_stage, logs = fit_stage(
        run,
        _second_stage_spec(config),
        lambda epoch, start: stream.latent_epoch(
            z_mean, z_log_sigma, config.batch_size, config.seed, epoch, start
        ),
        len(z_mean) // config.batch_size,
        [
            TrackModel(grids.use_second_stage),
            ImageGrids("stage2", grids.write, run.grid_every, last_epoch=None),
        ],
    )
    grids.use_second_stage(second_stage)
    return second_stage, logs


def _export(run, stages, first_logs, second_logs):
    """Exports the sampler SavedModel; prints where everything is."""
    sampler_path = run.workdir.sampler_dir
    latents = run.workdir.latents_path  # the codes stage 2 was trained on
    export_sampler(
        stages,
        sampler_path,
        overwrite=True,
        config=run.config,
        code_variances=latents if os.path.isfile(latents) else None,
    )
    seconds = time.time() - run.start
    print(
        f"[done] {seconds:.0f} s. Sampler: {sampler_path}; images: "
        f"{run.workdir.images_dir}; curves: {run.workdir.curves_path}"
    )
    return RunResult(run.workdir.root, sampler_path, first_logs, second_logs, seconds)
