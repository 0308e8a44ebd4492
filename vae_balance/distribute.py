"""Strategies and precision policies by name, for the CLI and scripts.

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
the number of replicas (see docs/distributed.md).
"""

import keras
import tensorflow as tf

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
