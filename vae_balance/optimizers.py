"""FusedAdam: Keras' Adam, one TensorFlow kernel per variable.

Keras 3's Adam updates each variable with about 25 small TensorFlow ops
(casts, the bias corrections, the two moments, the step), which the executor
dispatches one by one: 2,600 of the 6,200 ops of a ``fashion_mnist`` training
step (benchmarks/results/profile_step.md). TensorFlow's ``ResourceApplyAdam``
does the same update in one kernel per variable. The formula is Keras' (the
bias-corrected step size ``lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``,
``m += (g - m)(1 - beta_1)``, ``v += (g^2 - v)(1 - beta_2)``,
``w -= m * alpha / (sqrt(v) + epsilon)``), so the weights and first moments
equal Keras' to float32 rounding (tested). One constant differs in its last
bits: the kernel computes ``1 - beta_2`` from the float32 ``beta_2``
(0.00099998713 for 0.999, where Keras casts 0.001), so the second moments
differ by 1.3e-5 relative. The optimizer's variables, configuration and saved
files are Adam's.
"""

import keras
import tensorflow as tf

from vae_balance import _keras_compat


@keras.saving.register_keras_serializable(package="vae_balance")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` through TensorFlow's fused ``ResourceApplyAdam``.

    Same arguments, variables and results (to float32 rounding) as Keras'
    Adam, fewer ops per training step. ``amsgrad=True``, and variables that
    are not plain `tf.Variable` objects (a distribution strategy's mirrored
    variables outside their update context), take the parent's path.

    Example:

    >>> vae.compile(optimizer=vae_balance.FusedAdam(1e-3, epsilon=1e-8))
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or not isinstance(variable, tf.Variable):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        m, v = _keras_compat.adam_slots(self, variable)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=m.value.handle,
            v=v.value.handle,
            beta1_power=tf.pow(beta_1, local_step),
            beta2_power=tf.pow(beta_2, local_step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
            use_locking=False,
        )
