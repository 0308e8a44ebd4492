"""What `BalancedVAE` is given: two networks that fit, and checked batches.

`check_networks` refuses, naming both shapes, an encoder and a decoder that
do not fit together (the encoder outputs ``[z_mean, z_log_sigma]`` of one
shape, the decoder takes that shape and gives back the encoder's input).
`prepare_batch` unpacks a batch, turns uint8 images into floats in [0, 1]
and checks every batch for NaN / Inf and for its range (XLA drops these
checks, hence ``compile(jit_compile=False)`` by default).
"""

import keras
import tensorflow as tf
from keras import ops


def prepare_batch(data, input_range):
    """Unpacks (x,), (x, y) or x; converts uint8; checks the batch.

    Args:
        data: the batch as Keras gives it to a step (or to ``call``).
        input_range: ``(low, high)`` every value must lie in, or None.
    """
    if isinstance(data, (tuple, list)):
        data = data[0]
    x = ops.convert_to_tensor(data)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype == "uint8":
        x = ops.cast(x, "float32") / 255.0
    elif not dtype.startswith(("float", "bfloat")):
        raise TypeError(
            f"BalancedVAE expects float inputs (images in [0, 1]) or uint8 "
            f"images (divided by 255), got dtype {x.dtype}. Cast with "
            "x.astype('float32') / 255 for 0-255 images."
        )
    x = tf.debugging.assert_all_finite(
        x, "BalancedVAE: a batch contains NaN or Inf values; clean the data."
    )
    if input_range is not None:
        low, high = input_range
        tol = 1e-6
        with tf.control_dependencies(
            [
                tf.debugging.assert_greater_equal(
                    x,
                    tf.cast(low - tol, x.dtype),
                    message=f"BalancedVAE: input values below {low}; images "
                    f"must be floats in [{low}, {high}] (divide 0-255 by 255).",
                ),
                tf.debugging.assert_less_equal(
                    x,
                    tf.cast(high + tol, x.dtype),
                    message=f"BalancedVAE: input values above {high}; images "
                    f"must be floats in [{low}, {high}] (divide 0-255 by 255).",
                ),
            ]
        ):
            x = tf.identity(x)
    return x


def _static_shape(tensor):
    return tuple(tensor.shape[1:])


def check_networks(encoder, decoder):
    """Raises a ValueError naming both shapes when the networks do not fit."""
    for name, net in (("encoder", encoder), ("decoder", decoder)):
        if not getattr(net, "inputs", None) or not getattr(net, "outputs", None):
            raise ValueError(
                f"The {name} must be a built Keras model with known inputs and "
                "outputs (a functional model, or a Sequential given an Input)."
            )
    if len(encoder.outputs) != 2:
        raise ValueError(
            "The encoder must output [z_mean, z_log_sigma], got "
            f"{len(encoder.outputs)} output(s)."
        )
    mean_shape, log_sigma_shape = (_static_shape(t) for t in encoder.outputs)
    if mean_shape != log_sigma_shape:
        raise ValueError(
            f"Encoder outputs z_mean {mean_shape} and z_log_sigma "
            f"{log_sigma_shape} must have the same shape."
        )
    decoder_in = _static_shape(decoder.inputs[0])
    if decoder_in != mean_shape:
        raise ValueError(
            f"Encoder latent shape {mean_shape} does not match decoder input "
            f"shape {decoder_in}: build both with the same latent_dim."
        )
    image_in, image_out = (
        _static_shape(encoder.inputs[0]),
        _static_shape(decoder.outputs[0]),
    )
    if image_in != image_out:
        raise ValueError(
            f"Encoder input shape {image_in} does not match decoder output shape "
            f"{image_out}: the decoder must reconstruct the encoder's input."
        )
