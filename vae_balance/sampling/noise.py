"""The stage-2 noise u of GEN-2: one convention for every sampler.

`second_stage_noise` is the only place u is drawn: `TwoStageSampler.sample`,
`SecondStageSampler` (the evaluation's GEN-2 and GEN-2 adjusted) and the
exported ``generate(num_samples, seed)`` signature all call it, so one seed
gives the same images in Python, in the evaluation and from the SavedModel in
any process or client language (`SECOND_STAGE_NOISE` says how, in words; the
export's metadata carries it).
"""

import numpy as np
import tensorflow as tf

# How u is drawn (also in the export's metadata, as `GENERATE_NOISE`).
SECOND_STAGE_NOISE = (
    "u = tf.random.stateless_normal([num_samples, u_dim], seed=[seed, 0], "
    'alg="philox"), an int64 seed pair'
)


def noise_seed(seed):
    """The int seed of `second_stage_noise` for an int, None or a Generator.

    None draws a fresh seed; a ``np.random.Generator`` gives one draw of its
    stream (``integers(2**63 - 1)``), so a generator passed on keeps giving
    new noise. An int (or an int tensor) is used as is.
    """
    if seed is None or isinstance(seed, np.random.Generator):
        return int(np.random.default_rng(seed).integers(2**63 - 1))
    return seed


def second_stage_noise(num_samples, dim, seed):
    """The stage-2 noise u ~ N(0, I): (num_samples, dim) float32, seeded.

    ``tf.random.stateless_normal([num_samples, dim], seed=[seed, 0],
    alg="philox")``: stateless Philox draws, the same on every device and in
    every process. Traceable: ``num_samples`` and ``seed`` may be int64
    tensors (the exported ``generate`` signature).

    Args:
        num_samples: number of rows (>= 0).
        dim: the size of u (the second stage's latent_dim).
        seed: an int or int64 scalar tensor; None or a ``np.random.Generator``
            are turned into one by `noise_seed`.

    Returns:
        A float32 tensor (num_samples, dim).

    Example:

    >>> u = second_stage_noise(16, 32, seed=0)
    >>> images = sampler.predict(u)  # == export's generate(16, 0)["images"]
    """
    num_samples = tf.cast(num_samples, tf.int64)
    seed = tf.cast(noise_seed(seed), tf.int64)
    shape = tf.stack([num_samples, tf.constant(int(dim), tf.int64)])
    return tf.random.stateless_normal(  # philox: the same on every device
        shape, seed=tf.stack([seed, tf.constant(0, tf.int64)]), alg="philox"
    )
