"""The resolved options of one training job, read by every step below it.

`vae_balance.training.job.train` resolves its arguments into one frozen
`RunOptions`; `vae_balance.training.stages.fit_stage` and the job's steps
read it.
"""

import dataclasses

import tensorflow as tf

from vae_balance.config import VAEConfig
from vae_balance.model import batchnorm
from vae_balance.training.preemption import StopRequests
from vae_balance.workdir import Workdir

DEFAULT_CHECKPOINT_MINUTES = 10.0  # a killed run loses at most this much


@dataclasses.dataclass(frozen=True, eq=False)
class RunOptions:
    """The options of one `train` call, resolved (see `train` for each).

    ``strategy`` is a `tf.distribute.Strategy` (never None or a name) and
    ``start`` the ``time.time()`` at which the job started. In more detail
    than `train` gives them:

    - ``strategy``: the models are built, compiled and reloaded inside its
      scope (a name goes through `vae_balance.model.distribute.get_strategy`;
      ``train``'s ``precision`` through `distribute.set_precision`).
    - ``skip_bad``: unreadable or wrongly shaped image files are skipped and
      counted, instead of stopping with a `registry.DataError` naming them.
    - ``recalibrate_bn``: after stage 1, its BatchNorm moving statistics are
      recomputed from ``recalibrate_batches`` training batches with the final
      weights (`vae_balance.recalibrate_batchnorm`), before the grids, the
      latent codes and the export; also for a resumed run whose finished
      stage 1 was not recalibrated yet.
    - ``checkpoint_minutes``: inside an epoch, a step checkpoint is written
      after the step at which this many minutes have passed since the last
      one (None: only at epoch ends); a killed run loses at most this much.
      ``checkpoint_steps``: also one every this many steps (None: never).
    - ``snapshot_every``: a copy of stage 1's checkpoint is kept every this
      many epochs in ``snapshots/`` (with the CPU seconds trained so far in
      its record), for quality-against-compute studies; None: none.
    - ``stops``: the `StopRequests` of ``train(handle_signals=True)``: on
      SIGTERM or SIGINT (main thread only) the current step finishes, a step
      checkpoint is written and `TrainingInterrupted` raised; a second
      signal exits at once. None: signals are not handled.
    """

    config: VAEConfig
    workdir: Workdir
    strategy: tf.distribute.Strategy
    start: float
    train_data: object = None
    test_images: object = None
    data_dir: str | None = None
    limit: int | None = None
    verbose: object = "auto"
    grid_every: int = 5
    jit_compile: bool = False
    num_grid_images: int = 64
    skip_bad: bool = False
    recalibrate_bn: bool = True
    recalibrate_batches: int = batchnorm.DEFAULT_NUM_BATCHES
    checkpoint_minutes: float | None = DEFAULT_CHECKPOINT_MINUTES
    checkpoint_steps: int | None = None
    snapshot_every: int | None = None
    stops: StopRequests | None = None
