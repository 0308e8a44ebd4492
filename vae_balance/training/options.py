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
    ``start`` the ``time.time()`` at which the job started.
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
