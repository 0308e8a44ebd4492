"""The paper's networks: Dai & Wipf's ResNet (stage 1) and dense stage 2.

Layer by layer as in paper-notes sections 2-3 (3x3 'same' convolutions, default
initialisers, BatchNormalization momentum 0.999 / epsilon 1e-5, no L2
regulariser: the reference code's never reached its loss). Parameter counts are
checked in tests/test_networks.py against the hand counts of the reference.
"""

import keras
import tensorflow as tf
from keras import layers

from vae_balance.model import _keras_compat


@keras.saving.register_keras_serializable(package="vae_balance")
class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with TensorFlow's fused training kernel.

    Keras 3 normalises a training batch with separate moments, normalisation
    and moving-average ops (and as many in the backward pass); TensorFlow's
    ``FusedBatchNormV3`` does it in one kernel, forward and backward. Same
    weights, same results (to float32 rounding) and the same moving averages
    (with the biased batch variance, as Keras), in faster training steps
    (the measured ratios: benchmarks/results/throughput.md).
    Inference, masks, renorm, synchronized statistics and anything but a
    channels-last 4-D input take the parent's path. Under
    ``mixed_bfloat16`` the bfloat16 activations go to the kernel as they are
    (it accumulates the statistics in float32; scale, offset and the moving
    averages stay float32) instead of being cast to float32 and back: two
    casts fewer per layer and direction, and TensorFlow can fuse the
    following ReLU into the kernel.
    """

    def _fusable(self, inputs, training, mask):
        return (
            training
            and self.trainable
            and mask is None
            and not _keras_compat.uses_renorm(self)
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (3, -1)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        if inputs.dtype == tf.bfloat16:
            x = inputs  # the kernel's statistics are float32 (see above)
        else:
            x = tf.cast(inputs, "float32")  # statistics in float32, as the parent
        channels = self.moving_mean.shape
        scale = tf.cast(self.gamma, "float32") if self.scale else tf.ones(channels)
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros(channels)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, scale, offset, epsilon=self.epsilon, is_training=True
        )
        # The kernel returns the unbiased (Bessel-corrected) batch variance;
        # Keras keeps the biased one in its moving average.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(
            self.moving_mean * momentum
            + tf.cast(mean, self.moving_mean.dtype) * (1.0 - momentum)
        )
        self.moving_variance.assign(
            self.moving_variance * momentum
            + tf.cast(variance, self.moving_variance.dtype) * (1.0 - momentum)
        )
        return tf.cast(outputs, self.compute_dtype)


def _batch_norm(momentum, epsilon, name, synchronized=False, fused=True):
    # Synchronized statistics need the parent's all-reduced moments.
    cls = FusedBatchNormalization if fused else layers.BatchNormalization
    return cls(momentum=momentum, epsilon=epsilon, synchronized=synchronized, name=name)


def res_block(
    x,
    filters,
    name,
    bn_momentum=0.999,
    bn_epsilon=1e-5,
    synchronized_bn=False,
    fused_bn=True,
):
    """Two BN-ReLU-Conv3x3 units plus a 3x3 convolutional shortcut.

    ``synchronized_bn``: batch statistics over the global batch under a
    multi-replica tf.distribute strategy (as on one device), not per replica.
    ``fused_bn``: `FusedBatchNormalization` (faster, same results) rather than
    `keras.layers.BatchNormalization`.
    """
    y = x
    for i in (1, 2):
        y = _batch_norm(
            bn_momentum, bn_epsilon, f"{name}_bn{i}", synchronized_bn, fused_bn
        )(y)
        y = layers.ReLU(name=f"{name}_relu{i}")(y)
        y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv{i}")(y)
    shortcut = layers.Conv2D(filters, 3, padding="same", name=f"{name}_shortcut")(x)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def res_fc_block(x, units, name):
    """Two ReLU-Dense units plus a dense shortcut, no normalisation."""
    y = x
    for i in (1, 2):
        y = layers.ReLU(name=f"{name}_relu{i}")(y)
        y = layers.Dense(units, name=f"{name}_dense{i}")(y)
    shortcut = layers.Dense(units, name=f"{name}_shortcut")(x)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def build_encoder(
    image_shape,
    latent_dim=64,
    base_filters=32,
    num_scales=3,
    fc_dim=512,
    bn_momentum=0.999,
    bn_epsilon=1e-5,
    name="encoder",
    synchronized_bn=False,
    fused_bn=True,
):
    """First-stage ResNet encoder: image -> [z_mean, z_log_sigma]."""
    image = keras.Input(shape=tuple(image_shape), name="image")
    x = layers.Conv2D(base_filters, 3, padding="same", name="stem")(image)
    filters = base_filters
    for scale in range(num_scales):
        x = res_block(
            x,
            filters,
            f"scale{scale}",
            bn_momentum,
            bn_epsilon,
            synchronized_bn,
            fused_bn,
        )
        if scale < num_scales - 1:
            filters *= 2
            x = layers.Conv2D(
                filters, 3, strides=2, padding="same", name=f"down{scale}"
            )(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = res_fc_block(x, fc_dim, "fc")
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_sigma = layers.Dense(latent_dim, name="z_log_sigma")(x)
    return keras.Model(image, [z_mean, z_log_sigma], name=name)


def decoder_filters(side, base_filters=32, max_filters=1024):
    """Channels per resolution 2, 4, ..., side, coarsest first."""
    if side < 2 or side & (side - 1):
        raise ValueError(
            f"The decoder needs a power-of-two image side >= 2, got {side}. Pad "
            "the images (28x28 -> 32x32, as the fashion_mnist preset does)."
        )
    filters, f, resolution = [], base_filters, 2
    while resolution <= side:
        filters.append(min(f, max_filters))
        f *= 2
        resolution *= 2
    return filters[::-1]


def build_decoder(
    image_shape,
    latent_dim=64,
    base_filters=32,
    max_filters=1024,
    bn_momentum=0.999,
    bn_epsilon=1e-5,
    name="decoder",
    synchronized_bn=False,
    fused_bn=True,
):
    """First-stage ResNet decoder: z -> image in [0, 1] (sigmoid)."""
    height, width, channels = image_shape
    if height != width:
        raise ValueError(f"The decoder needs square images, got {image_shape}.")
    dims = decoder_filters(height, base_filters, max_filters)
    z = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Dense(2 * 2 * dims[0], name="project")(z)
    x = layers.Reshape((2, 2, dims[0]), name="reshape")(x)
    for i, filters in enumerate(dims[1:]):
        x = layers.Conv2DTranspose(
            filters, 3, strides=2, padding="same", name=f"up{i}"
        )(x)
        x = res_block(
            x, filters, f"scale{i}", bn_momentum, bn_epsilon, synchronized_bn, fused_bn
        )
    x = layers.Conv2D(channels, 3, padding="same", name="to_image")(x)
    # The sigmoid runs in float32 so mixed-precision images stay in [0, 1].
    image = layers.Activation("sigmoid", dtype="float32", name="image")(x)
    return keras.Model(z, image, name=name)


def _dense_trunk(x, second_dim, depth):
    """``depth`` Dense(second_dim, ReLU) layers, then concat([x, t])."""
    t = x
    for i in range(depth):
        t = layers.Dense(second_dim, activation="relu", name=f"dense{i}")(t)
    return layers.Concatenate(name="concat")([x, t])


def build_second_encoder(latent_dim=64, second_dim=2048, depth=3, name="encoder2"):
    """Stage-2 encoder: z -> [u_mean, u_log_sigma]; dense, no BN."""
    z = keras.Input(shape=(latent_dim,), name="z")
    t = _dense_trunk(z, second_dim, depth)
    u_mean = layers.Dense(latent_dim, name="u_mean")(t)
    u_log_sigma = layers.Dense(latent_dim, name="u_log_sigma")(t)
    return keras.Model(z, [u_mean, u_log_sigma], name=name)


def build_second_decoder(latent_dim=64, second_dim=2048, depth=3, name="decoder2"):
    """Stage-2 decoder: u -> z_hat (linear); dense, no BN."""
    u = keras.Input(shape=(latent_dim,), name="u")
    t = _dense_trunk(u, second_dim, depth)
    z_hat = layers.Dense(latent_dim, dtype="float32", name="z_hat")(t)
    return keras.Model(u, z_hat, name=name)


# ------------------------------------------------ Dai & Wipf's "Infogan" family
# The anchor of the two-stage VAE (Dai & Wipf, ICLR 2019, github
# daib13/TwoStageVAE, class Infogan): two 4x4 stride-2 convolutions and a wide
# dense layer each way. Dense-heavy (13.3M stage-1 parameters at 28x28, 94% of
# them in the two 6272 x 1024 matrices), so it runs far nearer the matmul peak
# than the small-channel ResNets. Initialisers as the anchor's: N(0, 0.02)
# (truncated for the convolutions), zero biases; BatchNorm 0.999 / 1e-5.


def _conv_init():
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _dense_init():
    return keras.initializers.RandomNormal(stddev=0.02)


def _spectral(layer, spectral_norm):
    """``layer`` inside `keras.layers.SpectralNormalization` (one power
    iteration, as the anchor) when ``spectral_norm``."""
    if not spectral_norm:
        return layer
    return layers.SpectralNormalization(
        layer, power_iterations=1, name=f"{layer.name}_sn"
    )


def infogan_side_check(image_shape):
    """The Infogan networks halve the image twice: H and W divisible by 4."""
    height, width = int(image_shape[0]), int(image_shape[1])
    if height % 4 or width % 4:
        raise ValueError(
            f"The infogan networks need a height and width divisible by 4 (two "
            f"stride-2 layers), got {height}x{width}. Resize (--image-size) or "
            "pad the images to a multiple of 4."
        )
    return height, width


def build_infogan_encoder(
    image_shape,
    latent_dim=64,
    base_filters=64,
    fc_dim=1024,
    spectral_norm=True,
    latent_sigma="softplus",
    bn_momentum=0.999,
    bn_epsilon=1e-5,
    name="encoder",
    synchronized_bn=False,
    fused_bn=True,
):
    """Dai & Wipf's Infogan encoder: image -> [z_mean, z_log_sigma].

    conv(base, 4x4, /2), leaky ReLU 0.2; conv(2 base, 4x4, /2), BN, leaky
    ReLU; flatten; dense(fc_dim), BN, leaky ReLU; dense(2 latent) split into
    the mean and the scale's raw value. With ``spectral_norm`` every
    convolution and dense layer is wrapped in
    `keras.layers.SpectralNormalization`.

    ``latent_sigma``: ``"softplus"`` (the anchor's: sigma = 1e-6 +
    softplus(raw), returned as its log) or ``"exp"`` (the raw value is log
    sigma, as the ResNet encoder).
    """
    infogan_side_check(image_shape)

    def norm(label):
        return _batch_norm(bn_momentum, bn_epsilon, label, synchronized_bn, fused_bn)

    def conv(filters, label):
        layer = layers.Conv2D(
            filters,
            4,
            strides=2,
            padding="same",
            kernel_initializer=_conv_init(),
            name=label,
        )
        return _spectral(layer, spectral_norm)

    def dense(units, label):
        layer = layers.Dense(units, kernel_initializer=_dense_init(), name=label)
        return _spectral(layer, spectral_norm)

    image = keras.Input(shape=tuple(image_shape), name="image")
    x = layers.LeakyReLU(0.2, name="lrelu1")(conv(base_filters, "conv1")(image))
    x = conv(2 * base_filters, "conv2")(x)
    x = layers.LeakyReLU(0.2, name="lrelu2")(norm("bn2")(x))
    x = layers.Flatten(name="flatten")(x)
    x = dense(fc_dim, "fc3")(x)
    x = layers.LeakyReLU(0.2, name="lrelu3")(norm("bn3")(x))
    params = dense(2 * latent_dim, "gaussian")(x)
    z_mean, z_log_sigma = GaussianHead(latent_dim, latent_sigma, name="head")(params)
    return keras.Model(image, [z_mean, z_log_sigma], name=name)


@keras.saving.register_keras_serializable(package="vae_balance")
class GaussianHead(layers.Layer):
    """Splits ``(batch, 2 latent)`` into ``[z_mean, z_log_sigma]``.

    ``sigma="softplus"``: sigma = 1e-6 + softplus(raw) (the anchor's),
    returned as its log; ``"exp"``: the raw half is log sigma itself.
    Computed in float32 under mixed precision (the losses are float32).
    """

    def __init__(self, latent_dim, sigma="softplus", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if sigma not in ("softplus", "exp"):
            raise ValueError(f"sigma must be 'softplus' or 'exp', got {sigma!r}.")
        self.latent_dim, self.sigma = int(latent_dim), sigma

    def call(self, params):
        z_mean = params[:, : self.latent_dim]
        raw = params[:, self.latent_dim :]
        if self.sigma == "softplus":
            return z_mean, keras.ops.log(1e-6 + keras.ops.softplus(raw))
        return z_mean, raw

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], self.latent_dim)
        return shape, shape

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "sigma": self.sigma,
        }


def build_infogan_decoder(
    image_shape,
    latent_dim=64,
    base_filters=64,
    fc_dim=1024,
    bn_momentum=0.999,
    bn_epsilon=1e-5,
    name="decoder",
    synchronized_bn=False,
    fused_bn=True,
):
    """Dai & Wipf's Infogan decoder: z -> image in [0, 1] (sigmoid).

    dense(fc_dim), BN, ReLU; dense(H/4 x W/4 x 2 base), BN, ReLU; deconv(base,
    4x4, x2), BN, ReLU; deconv(C, 4x4, x2), sigmoid. No spectral norm (the
    anchor has none in the decoder).
    """
    height, width = infogan_side_check(image_shape)
    channels = int(image_shape[2])

    def norm(label):
        return _batch_norm(bn_momentum, bn_epsilon, label, synchronized_bn, fused_bn)

    def deconv(filters, label):
        return layers.Conv2DTranspose(
            filters,
            4,
            strides=2,
            padding="same",
            kernel_initializer=_dense_init(),
            name=label,
        )

    z = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Dense(fc_dim, kernel_initializer=_dense_init(), name="fc1")(z)
    x = layers.ReLU(name="relu1")(norm("bn1")(x))
    cells = (height // 4) * (width // 4) * 2 * base_filters
    x = layers.Dense(cells, kernel_initializer=_dense_init(), name="fc2")(x)
    x = layers.ReLU(name="relu2")(norm("bn2")(x))
    x = layers.Reshape((height // 4, width // 4, 2 * base_filters), name="reshape")(x)
    x = layers.ReLU(name="relu3")(norm("bn3")(deconv(base_filters, "conv3")(x)))
    x = deconv(channels, "conv4")(x)
    # The sigmoid runs in float32 so mixed-precision images stay in [0, 1].
    image = layers.Activation("sigmoid", dtype="float32", name="image")(x)
    return keras.Model(z, image, name=name)
