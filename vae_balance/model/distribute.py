"""Strategies, precision, global-batch reductions, replica-sliced noise.

Strategies and precision policies by name, for the CLI and scripts.

Build and compile the model inside ``strategy.scope()`` and set the precision
policy before building it::

    strategy = get_strategy("mirrored")
    set_precision("mixed_bfloat16")
    with strategy.scope():
        vae = build_vae("cifar10")
        vae.compile(optimizer=keras.optimizers.Adam(1e-4, epsilon=1e-8))
    vae.fit(images, batch_size=100)  # the GLOBAL batch, split over replicas

BalancedVAE needs nothing else: it all-reduces the minibatch MSE, so every
replica holds the same running average and gamma, and results do not depend on
the number of replicas (see docs/distributed.md). The replica maths it uses
is here too: `global_batch_means` (per-replica means -> global-batch means)
and `replica_sliced_normal` (noise that does not depend on the split).

``STRATEGIES`` names tf.distribute strategies (unrelated to the balancing
setups of benchmarks/).
"""

import keras
import tensorflow as tf
from keras import ops

from vae_balance.model import _keras_compat

STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def get_strategy(name="default"):
    """A `tf.distribute.Strategy` by name.

    Args:
        name: ``"default"`` (one device, no distribution), ``"mirrored"``
            (all local GPUs, or the CPU when there is none) or
            ``"multiworker"`` (one process per machine, configured by the
            ``TF_CONFIG`` environment variable). Create it at the start of
            the program, before other TensorFlow work: the multi-worker
            runtime must be set up before TensorFlow initialises.

    Returns:
        The strategy.

    Raises:
        ValueError: for an unknown name (the valid ones are listed).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(
        f"Unknown strategy {name!r}. Valid strategies: {', '.join(STRATEGIES)}."
    )


def set_precision(name="float32"):
    """Sets the global Keras dtype policy; call it before building models.

    Under the mixed policies the networks compute in float16 / bfloat16 while
    the variables, the losses, gamma and the running MSE stay float32.
    ``compile()`` wraps the optimizer in a `keras.optimizers.LossScaleOptimizer`
    for ``"mixed_float16"`` (bfloat16 has float32's range and needs none).

    Args:
        name: ``"float32"``, ``"mixed_float16"`` (GPUs with tensor cores) or
            ``"mixed_bfloat16"`` (TPUs, recent GPUs and CPUs).

    Returns:
        The `keras.DTypePolicy` now in effect.

    Raises:
        ValueError: for an unknown name (the valid ones are listed).
    """
    if name not in PRECISIONS:
        raise ValueError(
            f"Unknown precision {name!r}. Valid precisions: {', '.join(PRECISIONS)}."
        )
    keras.mixed_precision.set_global_policy(name)
    return keras.mixed_precision.global_policy()


def replica_context():
    """The replica context of a step run by a multi-replica strategy, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def in_multi_worker_mode():
    """Whether fit() runs under a MultiWorkerMirroredStrategy with TF_CONFIG."""
    return _keras_compat.in_multi_worker_mode(tf.distribute.get_strategy())


def global_batch_means(values, batch_size):
    """Per-replica batch means -> means over the global batch (all-reduce).

    Weighted by the replicas' batch sizes, which differ in a last partial
    batch; the identity outside a multi-replica step.

    Args:
        values: scalar tensors, this replica's batch means.
        batch_size: this replica's batch size.

    Returns:
        The list of global means and the global batch size (float32).
    """
    count = ops.cast(batch_size, "float32")
    context = replica_context()
    if context is None:
        return list(values), count
    # An empty replica (a tiny last batch) has NaN means: weigh them by 0.
    weighted = [ops.where(count > 0, value * count, 0.0) for value in values]
    totals = context.all_reduce(tf.distribute.ReduceOp.SUM, [*weighted, count])
    return [total / totals[-1] for total in totals[:-1]], totals[-1]


def replica_sliced_normal(shape, dtype, seed):
    """Standard normal noise of ``shape``, independent of the replica split.

    Under a multi-replica strategy every replica draws the noise of the whole
    global batch (the same seed everywhere) and keeps its own rows, so the
    noise does not depend on how the batch is split. Outside one, a plain
    draw.

    Args:
        shape: this replica's shape (batch first), e.g. ``ops.shape(z_mean)``.
        dtype: the noise's dtype.
        seed: a `keras.random.SeedGenerator` (or seed), as for
            `keras.random.normal`.

    Returns:
        The noise, of ``shape``.
    """
    context = replica_context()
    if context is None:
        return keras.random.normal(shape, dtype=dtype, seed=seed)
    # Replicas hold consecutive slices of the global batch, in replica
    # order; the shares differ by one in a last partial batch.
    rows, replica = shape[0], context.replica_id_in_sync_group
    if isinstance(tf.distribute.get_strategy(), tf.distribute.TPUStrategy):
        # One static shape on every TPU replica: an even split, and XLA
        # needs the static size of the draw.
        start, total = replica * rows, rows * context.num_replicas_in_sync
    else:
        sizes = context.all_gather(ops.reshape(ops.cast(rows, "int32"), (1,)), 0)
        replicas = ops.arange(context.num_replicas_in_sync)
        start = ops.sum(ops.where(replicas < replica, sizes, 0))
        total = ops.sum(sizes)
    epsilon = keras.random.normal((total, *shape[1:]), dtype=dtype, seed=seed)
    begin = [start] + [0] * (len(shape) - 1)
    return ops.slice(epsilon, begin, (rows, *shape[1:]))


def worker_role(strategy):
    """``(is_chief, task_name)`` of this process in a multi-worker strategy.

    The chief is task "chief", or worker 0 of a cluster without one (Keras'
    and TensorFlow's rule). Every process of a one-machine strategy is the
    chief, named "local".
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not _keras_compat.in_multi_worker_mode(strategy):
        return True, "local"
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (
        "chief" not in cluster and task_type == "worker" and task_id == 0
    )
    return chief, f"{task_type}{task_id}"
