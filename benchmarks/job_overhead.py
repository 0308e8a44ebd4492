"""What the training job costs on top of the bare training step.

Three timings of the same `fashion_mnist` model, measured in one run:

1. ``step``: `fit` on one batch already in memory, repeated (no input pipeline);
2. ``pipeline``: `fit` on `vae_balance.datasets.pipeline.make_train_dataset`
   of uint8 images (shuffle, batch, uint8 -> float32, prefetch), as the job
   does;
3. ``job``: the same plus the job's callbacks (per-step history with the
   running_mse read, CSV logger, checkpoint each epoch, TensorBoard, lr schedule).

Reported: the median wall time per step (ratios near 1: the input pipeline
and the per-step bookkeeping are not the bottleneck) and the seconds a fit
spends outside its steps (start-up, epoch-end callbacks, checkpoint).
Results go to benchmarks/results/job_overhead.{json,md}.

    python benchmarks/job_overhead.py --steps 100 --repeats 3
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from vae_balance import build_vae
from vae_balance.config import get_preset
from vae_balance.datasets.pipeline import make_train_dataset
from vae_balance.training.callbacks import StepHistory, staircase
from vae_balance.training.checkpointer import EpochCheckpoint

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _model(config):
    vae = build_vae(config)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-8))
    return vae


class StepTimer(keras.callbacks.Callback):
    """Wall time between consecutive batch ends."""

    def on_train_begin(self, logs=None):
        self.times = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def _timed_fit(vae, dataset, steps, callbacks=()):
    """(median seconds per step, seconds outside the steps) of one fit."""
    timer = StepTimer()
    start = time.perf_counter()
    vae.fit(
        dataset,
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[*callbacks, timer],
        shuffle=False,
    )
    total = time.perf_counter() - start
    intervals = np.diff(timer.times)
    return float(np.median(intervals[1:])), float(total - intervals.sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = get_preset("fashion_mnist")
    batch, steps = config.batch_size, args.steps
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * (steps + 10), 32, 32, 1), np.uint8)

    one_batch = tf.data.Dataset.from_tensors(
        tf.constant(images[:batch].astype("float32") / 255.0)
    ).repeat()
    pipeline = make_train_dataset(
        tf.data.Dataset.from_tensor_slices(images), batch, seed=0
    ).repeat()

    workdir = tempfile.mkdtemp()
    callbacks = [
        keras.callbacks.LearningRateScheduler(staircase(1e-3, 2)),
        StepHistory(os.path.join(workdir, "steps.csv"), "stage1", steps),
        keras.callbacks.CSVLogger(os.path.join(workdir, "history.csv")),
        EpochCheckpoint(workdir, "stage1"),
        keras.callbacks.TensorBoard(os.path.join(workdir, "tb"), write_graph=False),
    ]
    cases = {
        "step": (one_batch, []),
        "pipeline": (pipeline, []),
        "job": (pipeline, callbacks),
    }
    models = {name: _model(config) for name in cases}
    for name, (dataset, _) in cases.items():  # trace and warm up each model
        _timed_fit(models[name], dataset, 10)
    # Interleaved repeats, median: the machine's load drifts between fits.
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (dataset, extra) in cases.items():
            times[name].append(_timed_fit(models[name], dataset, steps, extra))
    step_seconds = {
        name: float(np.median([t[0] for t in values])) for name, values in times.items()
    }
    outside = {
        name: float(np.median([t[1] for t in values])) for name, values in times.items()
    }
    shutil.rmtree(workdir, ignore_errors=True)

    rows = {
        name: {
            "median_step_ms": round(1000 * value, 1),
            "images_per_second": round(batch / value, 1),
            "step_time_ratio": round(value / step_seconds["step"], 3),
            "seconds_outside_steps_per_fit": round(outside[name], 2),
        }
        for name, value in step_seconds.items()
    }
    result = {
        "preset": "fashion_mnist",
        "batch_size": batch,
        "steps": steps,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "repeats": args.repeats,
        "command": (
            f"python benchmarks/job_overhead.py --steps {steps} "
            f"--repeats {args.repeats}"
        ),
        "results": rows,
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "job_overhead.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = [
        "# Training-job overhead over the bare step",
        "",
        f"`{result['command']}` ({result['machine']}, TF {tf.__version__}, "
        f"Keras {keras.__version__}); median of interleaved repeats; the job "
        "writes a checkpoint at the end of every timed epoch.",
        "",
        "| what | median step (ms) | images/s | step time / bare step | "
        f"seconds per {steps}-step fit outside the steps |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['median_step_ms']} | {row['images_per_second']} | "
            f"{row['step_time_ratio']} | {row['seconds_outside_steps_per_fit']} |"
        )
    with open(os.path.join(RESULTS, "job_overhead.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
