"""Precise BatchNorm statistics: recompute the moving mean and variance.

BatchNormalization normalises a training batch with the batch's own
statistics and keeps an exponential moving average (EMA) of them for
inference. With the paper's momentum 0.999 the average forgets its initial
values (mean 0, variance 1) only after a few thousand steps: a short run, a
``--limit`` run or a fine-tune ends with moving statistics that belong to no
set of weights, and inference-mode reconstructions come out grey although the
training loss is low. The statistics of the final weights are recomputed here
in one pass over training batches, as "precise BN" does.

Reference:
    Y. Wu, J. Johnson, "Rethinking 'Batch' in BatchNorm", arXiv 2105.07576,
    2021 (section 3: population statistics computed after training).
"""

import contextlib
import warnings

import keras
import numpy as np
import tensorflow as tf

from vae_balance.datasets import pipeline

# recalibrate_batchnorm's default bound: 100 batches (10,000 images at the
# paper's batch of 100), or one pass when the training set is smaller.
DEFAULT_NUM_BATCHES = 100

# check_batchnorm warns when the inference-mode reconstruction MSE exceeds
# the training-mode MSE on the same images by more than this factor.
MSE_RATIO_WARNING = 1.5

# Test images of the validation MSE measured around a recalibration.
NUM_VALIDATION_IMAGES = 1000


class StaleBatchNormWarning(UserWarning):
    """Inference-mode BatchNorm statistics do not match the weights."""


def batchnorm_layers(model):
    """Every BatchNormalization layer in ``model`` and its nested models."""
    found = []
    for layer in model.layers if hasattr(model, "layers") else []:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(batchnorm_layers(layer))
    return found


def _networks(model):
    """The (encoder, decoder) of a BalancedVAE, or (model, None)."""
    if hasattr(model, "encoder") and hasattr(model, "decoder"):
        return model.encoder, model.decoder
    return model, None


def _probe(network, extra_outputs=()):
    """A model returning the input of each BN layer (plus ``extra_outputs``)."""
    layers = batchnorm_layers(network)
    try:
        inputs = [layer.input for layer in layers]
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"recalibrate_batchnorm needs functional networks (keras.Model(inputs, "
            f"outputs)) to read each BatchNormalization layer's input; "
            f"{network.name!r}: {error}"
        ) from None
    return layers, keras.Model(network.inputs, inputs + list(extra_outputs))


def _batches(data, batch_size):
    """Batches of images from a batched dataset, an array or a list."""
    if isinstance(data, tf.data.Dataset):
        return (
            data.map(lambda *x: x[0]) if isinstance(data.element_spec, tuple) else data
        )
    return tf.data.Dataset.from_tensor_slices(np.asarray(data)).batch(batch_size)


def _to_float(x):
    x = tf.convert_to_tensor(x)
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    return x


@contextlib.contextmanager
def _kept_moving_statistics(layers, networks=()):
    """Restores the layers' moving statistics on exit (training-mode calls
    overwrite them), and the spectral-norm state of ``networks``.

    `keras.layers.SpectralNormalization` writes its normalised kernel and its
    power-iteration vector in every training-mode call: a measuring pass
    must leave both as they were.
    """
    variables = [
        v for layer in layers for v in (layer.moving_mean, layer.moving_variance)
    ]
    for network in networks:
        for layer in spectral_norm_layers(network):
            variables += [layer.kernel, layer.vector_u]
    saved = [v.numpy() for v in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


def spectral_norm_layers(model):
    """Every `keras.layers.SpectralNormalization` in ``model`` (nested too)."""
    found = []
    for layer in model.layers if hasattr(model, "layers") else []:
        if isinstance(layer, keras.layers.SpectralNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(spectral_norm_layers(layer))
    return found


class _Moments:
    """Per-channel population mean and variance, accumulated over batches.

    Batches are combined exactly (Chan et al.'s pairwise formula in float64):
    the result is the mean and the biased variance over every value seen, as
    if the whole pass were one batch, whatever the batch sizes.
    """

    def __init__(self):
        self.count, self.mean, self.m2 = 0.0, 0.0, 0.0

    def add(self, count, mean, variance):
        mean, variance = np.float64(mean), np.float64(variance)
        total = self.count + count
        delta = mean - self.mean
        self.m2 = self.m2 + variance * count + delta**2 * self.count * count / total
        self.mean = self.mean + delta * count / total
        self.count = total

    @property
    def variance(self):
        return self.m2 / self.count


# Long: its public docstring (with example and reference); the pass is in helpers.
def recalibrate_batchnorm(
    model,
    data,
    num_batches=DEFAULT_NUM_BATCHES,
    batch_size=100,
    seed=0,
    verbose=0,
):
    """Sets every BatchNorm layer's moving statistics to the population ones.

    One forward pass in training mode over at most ``num_batches`` batches,
    with the final weights: each BatchNormalization layer sees the inputs it
    sees in training (upstream layers normalise with batch statistics, and a
    BalancedVAE's decoder gets ``z = mu + sigma * epsilon``). The per-channel
    mean and (biased) variance of those inputs over the whole pass replace
    ``moving_mean`` and ``moving_variance``. The weights, the optimizer, the
    balancing state and the model's noise stream are not touched (the noise
    here comes from its own ``seed``), so training can continue as before.

    Call it after ``fit`` and before inference (reconstructions, samples,
    latent codes, export, FID). The training job calls it after each stage
    unless ``--no-recalibrate-bn``. A model without BatchNorm is left alone.

    Args:
        model: a `BalancedVAE` (its encoder and decoder) or a functional
            `keras.Model`.
        data: training images: a batched `tf.data.Dataset` (of images or of
            ``(images, ...)`` tuples) or an array, floats in [0, 1] or uint8.
            Use the training data, shuffled: the statistics are those of the
            batches seen.
        num_batches: upper bound on the batches read (None: the whole data).
        batch_size: batch size for arrays; use the training batch size, since
            training-mode statistics depend on it.
        seed: seed of the reparameterisation noise of the pass.
        verbose: 1 prints a line per network.

    Returns:
        A dict: ``layers`` (how many were recalibrated), ``images`` (how many
        the pass read) and ``batches``.

    Example:

    >>> vae.fit(images, epochs=2, batch_size=100)
    >>> vae_balance.recalibrate_batchnorm(vae, images)  # before predict()

    Reference:
        Y. Wu, J. Johnson, "Rethinking 'Batch' in BatchNorm", 2021.
    """
    encoder, decoder = _networks(model)
    encoder_layers = batchnorm_layers(encoder)
    decoder_layers = batchnorm_layers(decoder) if decoder is not None else []
    if not encoder_layers and not decoder_layers:
        return {"layers": 0, "images": 0, "batches": 0}
    layers, step = _training_moments_step(encoder, decoder, seed)
    totals, images, batches = _accumulate_moments(
        step, layers, _batches(data, batch_size), num_batches, (encoder, decoder)
    )
    if not batches:
        raise ValueError("recalibrate_batchnorm got no data: pass training images.")
    for layer, total in zip(layers, totals):
        layer.moving_mean.assign(total.mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(total.variance.astype(layer.moving_variance.dtype))
    if verbose:
        print(
            f"[batchnorm] {model.name}: {len(layers)} BatchNorm layers "
            f"recalibrated on {images} images ({batches} batches)"
        )
    return {"layers": len(layers), "images": images, "batches": batches}


def _feature_moments(features):
    """``[(count, mean, variance)]`` per channel of each feature (float32)."""
    moments = []
    for feature in features:
        feature = tf.cast(feature, tf.float32)
        axes = list(range(len(feature.shape) - 1))
        mean, variance = tf.nn.moments(feature, axes)
        count = tf.reduce_prod(tf.shape(feature)[:-1])
        moments.append((count, mean, variance))
    return moments


def _as_list(outputs):
    return outputs if isinstance(outputs, (list, tuple)) else [outputs]


def _training_moments_step(encoder, decoder, seed):
    """The BN layers (encoder's, then decoder's) and a step giving their moments.

    The step ``(x, index) -> [(count, mean, variance)]`` runs the networks in
    training mode on one batch and returns the moments of each BN layer's
    input; a decoder gets ``z = mu + sigma * epsilon``, epsilon drawn from
    ``(seed, index)``.
    """
    encoder_layers, encoder_probe = _probe(
        encoder, encoder.outputs if decoder is not None else ()
    )
    decoder_layers, decoder_probe = [], None
    if decoder is not None:
        decoder_layers, decoder_probe = _probe(decoder)

    @tf.function
    def step(x, index):
        outputs = _as_list(encoder_probe(x, training=True))
        features = list(outputs[: len(encoder_layers)])
        if decoder is not None:
            z_mean, z_log_sigma = outputs[-2], outputs[-1]
            epsilon = tf.random.stateless_normal(
                tf.shape(z_mean), seed=tf.stack([tf.cast(seed, tf.int64), index])
            )
            z = z_mean + tf.exp(z_log_sigma) * tf.cast(epsilon, z_mean.dtype)
            features += list(_as_list(decoder_probe(z, training=True)))
        return _feature_moments(features)

    return encoder_layers + decoder_layers, step


def _accumulate_moments(step, layers, batches, num_batches, networks=()):
    """Runs ``step`` over at most ``num_batches`` batches; the moments per layer.

    The layers' moving statistics are restored afterwards (the pass's own EMA
    updates go).

    Returns:
        ``(totals, images, batches)``: a `_Moments` per layer, the images and
        batches read.
    """
    totals = [_Moments() for _ in layers]
    images = count = 0
    with _kept_moving_statistics(layers, [n for n in networks if n is not None]):
        for x in batches:
            if num_batches is not None and count >= num_batches:
                break
            x = _to_float(x)
            for total, (n, mean, variance) in zip(
                totals, step(x, tf.constant(count, tf.int64))
            ):
                total.add(float(n), mean.numpy(), variance.numpy())
            images += int(x.shape[0])
            count += 1
    return totals, images, count


def reconstruction_mse(model, images, training=False, batch_size=100):
    """Mean squared error of ``decoder(z_mean)`` against ``images``.

    ``training=True`` normalises with each batch's statistics (what the
    training loss sees) and leaves the moving statistics as they were;
    ``training=False`` uses the moving statistics (what inference sees).
    """
    encoder, decoder = _networks(model)
    layers = batchnorm_layers(encoder) + batchnorm_layers(decoder)
    squared, count = 0.0, 0
    kept = _kept_moving_statistics(layers, (encoder, decoder))
    with kept if training else contextlib.nullcontext():
        for x in _batches(images, batch_size):
            x = _to_float(x)
            z_mean, _ = encoder(x, training=training)
            x_hat = tf.cast(decoder(z_mean, training=training), tf.float32)
            squared += float(tf.reduce_sum(tf.square(x_hat - tf.cast(x, tf.float32))))
            count += int(np.prod(x.shape))
    return squared / count


def check_batchnorm(model, images, batch_size=100, factor=MSE_RATIO_WARNING, what=""):
    """Compares inference-mode and training-mode reconstruction MSE.

    Warns (`StaleBatchNormWarning`, naming the fix) when the inference-mode
    MSE is more than ``factor`` times the training-mode MSE on the same
    images: the moving statistics do not match the weights.

    Returns:
        ``(inference_mse, training_mse)``.
    """
    inference = reconstruction_mse(model, images, False, batch_size)
    training = reconstruction_mse(model, images, True, batch_size)
    if inference > factor * training:
        warnings.warn(
            f"{what or model.name}: the inference-mode reconstruction MSE "
            f"{inference:.4g} is {inference / training:.1f}x the training-mode "
            f"MSE {training:.4g} on the same images (more than {factor}x): the "
            "BatchNorm moving statistics do not match the weights. Recompute "
            "them: vae_balance.recalibrate_batchnorm(vae, train_images) (the "
            "training job does it unless --no-recalibrate-bn).",
            StaleBatchNormWarning,
            stacklevel=2,
        )
    return inference, training


# ------------------------------------- the recipe of the job and of export
def recalibration_batches(train_images, config):
    """Shuffled training batches for the recalibration (their own seed)."""
    return pipeline.make_train_dataset(train_images, config.batch_size, config.seed + 1)


def recalibrate_and_measure(first_stage, batches, images, config, num_batches):
    """`recalibrate_batchnorm` between two validation measurements.

    The one recipe of the training job and of ``export``: ``batches`` from
    `recalibration_batches`, the inference-mode reconstruction MSE of
    ``images`` before and after.

    Returns:
        ``(val_mse_before, val_mse_after, info)``.
    """
    batch_size = config.batch_size
    before = reconstruction_mse(first_stage, images, False, batch_size)
    info = recalibrate_batchnorm(
        first_stage, batches, num_batches, batch_size, seed=config.seed
    )
    after = reconstruction_mse(first_stage, images, False, batch_size)
    return before, after, info


def recalibrate_loaded_stage1(
    vae, config, data_dir=None, num_batches=DEFAULT_NUM_BATCHES
):
    """Recomputes a loaded stage 1's BatchNorm statistics from its training data.

    For a stage-1 model read from a checkpoint (an interrupted run) or from
    an older version's run, before it is exported: the first
    ``num_batches * batch_size`` training images of ``config.dataset``,
    shuffled. Nothing in the work directory is changed.

    Returns:
        ``(val_mse_before, val_mse_after, info)`` on the test split's first
        1,000 images (inference mode).
    """
    limit = num_batches * config.batch_size
    train = pipeline.load_split(config, "train", data_dir, limit=limit, dtype="uint8")
    test = pipeline.load_split(
        config, "test", data_dir, limit=min(limit, NUM_VALIDATION_IMAGES)
    )
    test = np.stack(list(test.as_numpy_iterator())).astype("float32")
    batches = recalibration_batches(train, config)
    return recalibrate_and_measure(vae, batches, test, config, num_batches)
