"""BalancedVAE: a Keras 3 VAE whose decoder variance balances itself."""

import math

import keras
import tensorflow as tf
from keras import ops

from vae_balance.model import _keras_compat, balancing, losses
from vae_balance.model.distribute import (
    global_batch_means,
    in_multi_worker_mode,
    replica_sliced_normal,
)
from vae_balance.model.inputs import check_networks, prepare_batch


@keras.saving.register_keras_serializable(package="vae_balance")
class BalancedVAE(_keras_compat.PrebuiltTrainerHooks, keras.Model):
    """A Gaussian VAE whose decoder variance gamma^2 follows the reconstruction.

    The decoder is p(x|z) = N(x_hat(z), gamma^2 I). With ``balance="running"``
    (the paper, the default) gamma is not learned: gamma^2 is a running average
    of the minibatch mean squared error, updated after every optimizer step
    with ``m <- min(m, momentum * m + (1 - momentum) * mse)`` starting from
    m = 1, and held constant (no gradient) during a step. As the reconstruction
    improves gamma shrinks with it, so the reconstruction term keeps its weight
    against the KL and the KL never takes over.

    The loss is ``kl_weight * KL + D * MSE / (2 gamma^2) + D log gamma +
    D log sqrt(2 pi)`` where KL is summed over latent dimensions, the squared
    error is summed over the D values of a sample, and both are averaged over
    the batch (see `vae_balance.model.losses`).

    Other strategies, same class and same logs, for head-to-head comparison:

    - ``"learned"``: Dai & Wipf's trainable log-gamma (initialised at 0).
    - ``"batch"``: sigma-VAE; gamma^2 is this batch's MSE, no gradient.
    - ``"fixed"``: a constant gamma, ``fixed_gamma``; ``fixed_gamma=1`` with
      ``kl_weight=beta`` is the plain / beta-VAE.

    ``running_mse`` is updated by every strategy (as a monitor for the others)
    by `train_step` only: `evaluate()` never moves it.

    Inputs are float images in [0, 1] (uint8 is divided by 255), or, for a
    second stage, latent vectors (``input_range=None``). Every batch is checked
    for NaN / Inf and range; XLA drops these checks, so ``compile()`` defaults
    to ``jit_compile=False`` (pass ``jit_compile=True`` to trade them for
    speed). ``compile()`` without an optimizer uses the paper's Adam
    (learning rate 1e-4, beta_1 0.9, beta_2 0.999, epsilon 1e-8).

    Args:
        encoder: model mapping x to ``[z_mean, z_log_sigma]`` (log standard
            deviation, not log-variance).
        decoder: model mapping z to the reconstruction, same shape as x.
        balance: one of ``"running"``, ``"learned"``, ``"batch"``, ``"fixed"``.
        kl_weight: multiplier k of the KL term. The presets use the reference
            code's ``(2 * side / latent_dim) ** 2``.
        momentum: momentum of the running average, in (0, 1).
        running_rule: ``"min"`` (the paper: the average can only decrease),
            ``"ema"`` (a free exponential average) or ``"ema_min"`` (the
            author's later variant: gamma^2 = min(free EMA, previous gamma^2)).
        fixed_gamma: the constant gamma of ``balance="fixed"`` (default 1);
            only for that balance, the others refuse it. The live gamma of
            every balance is the read-only `gamma` property.
        min_gamma: floor of gamma for every strategy, so the reconstruction
            weight 1 / (2 gamma^2) stays finite.
        input_range: ``(low, high)`` checked on every batch, or None.
        seed: seed of the reparameterisation noise.

    Example:

    >>> vae = vae_balance.build_vae("tiny")
    >>> vae.compile()  # the paper's Adam; or compile(optimizer=...)
    >>> vae.fit(images, epochs=1, batch_size=8)  # logs loss, ..., gamma

    Reference:
        A. Asperti, M. Trentin, "Balancing Reconstruction Error and
        Kullback-Leibler Divergence in Variational Autoencoders", IEEE Access
        8:199440-199448, 2020. B. Dai, D. Wipf, "Diagnosing and Enhancing VAE
        Models", ICLR 2019.
    """

    def __init__(
        self,
        encoder,
        decoder,
        balance="running",
        kl_weight=1.0,
        momentum=0.99,
        running_rule="min",
        fixed_gamma=None,
        min_gamma=1e-3,
        input_range=(0.0, 1.0),
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        fixed_gamma = balancing.check_arguments(
            balance, running_rule, momentum, fixed_gamma, min_gamma, kl_weight
        )
        check_networks(encoder, decoder)
        self.encoder = encoder
        self.decoder = decoder
        self.balance = balance
        self.kl_weight = float(kl_weight)
        self.momentum = float(momentum)
        self.running_rule = running_rule
        # The constant of balance="fixed" (None for the others); `gamma` is
        # the live value of every balance (a read-only property).
        self.fixed_gamma = fixed_gamma
        self.min_gamma = float(min_gamma)
        self.input_range = None if input_range is None else tuple(input_range)
        self.seed = seed
        self.num_elements = math.prod(encoder.inputs[0].shape[1:])
        self.seed_generator = keras.random.SeedGenerator(seed)

        self._add_balance_state()
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(
            name="reconstruction_loss"
        )
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self.mse_tracker = keras.metrics.Mean(name="mse")
        self.gamma_tracker = keras.metrics.Mean(name="gamma")
        # The networks are built, so the model is: an unbuilt subclassed model
        # silently drops its optimizer state when reloaded.
        _keras_compat.mark_built(self)

    def compile(self, optimizer=None, **kwargs):
        """Keras' ``compile``; no optimizer: the paper's Adam (`paper_adam`).

        Args:
            optimizer: a Keras optimizer (or its name); None: `paper_adam()`.
            **kwargs: the other arguments of `keras.Model.compile`
                (``jit_compile``, ``run_eagerly``, ...).
        """
        if optimizer is None:
            optimizer = paper_adam()
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips this when compile() is overridden (it cannot know the
        # override's arguments): ours takes Keras' own, so do what Keras does
        # (keras/src/trainers/trainer.py, Trainer.compile_from_config).
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:  # the optimizer's slots, for the saved ones to load
            self.optimizer.build(self.trainable_variables)

    # ----------------------------------------------------------------- state
    def _add_balance_state(self):
        """Creates running_mse, ema_mse and (balance="learned") log_gamma."""
        # Balancing state, a Keras weight like BatchNormalization's moving
        # statistics: saved with the weights, written only by _update_balance.
        # "only_first_replica": every replica computes the same global-batch
        # value, so the first replica's assignment is the agreed one.
        self.running_mse = self.add_weight(
            shape=(),
            initializer="ones",
            trainable=False,
            name="running_mse",
            aggregation="only_first_replica",
        )
        # Free exponential average, used only by running_rule="ema_min".
        self.ema_mse = self.add_weight(
            shape=(),
            initializer="ones",
            trainable=False,
            name="ema_mse",
            aggregation="only_first_replica",
        )
        self.log_gamma = None
        if self.balance == "learned":
            self.log_gamma = self.add_weight(
                shape=(), initializer="zeros", trainable=True, name="log_gamma"
            )

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.reconstruction_loss_tracker,
            self.kl_loss_tracker,
            self.mse_tracker,
            self.gamma_tracker,
        ]

    @property
    def gamma(self):
        """The current decoder standard deviation gamma (read-only).

        ``sqrt(running_mse)`` for "running" and "batch" (for "batch" the last
        steps' average, the per-batch value being used in the loss), exp of
        the trainable log-gamma for "learned", the constant for "fixed"; never
        below ``min_gamma``.
        """
        return ops.sqrt(self._gamma_squared(None))

    def _gamma_squared(self, batch_mse):
        """gamma^2 used in the loss: a constant of the step except "learned"
        (the rule: `balancing.gamma_squared`)."""
        return balancing.gamma_squared(
            self.balance,
            batch_mse,
            running_mse=self.running_mse,
            log_gamma=self.log_gamma,
            fixed_gamma=self.fixed_gamma,
            min_gamma=self.min_gamma,
        )

    def _update_balance(self, batch_mse):
        """The one writer of the balancing state, called after each step
        (the rule: `balancing.next_running_mse`)."""
        new, ema = balancing.next_running_mse(
            self.running_rule, self.momentum, self.running_mse, self.ema_mse, batch_mse
        )
        if ema is not None:  # running_rule="ema_min"
            self.ema_mse.assign(ema)
        self.running_mse.assign(new)

    def _own_state(self):
        # The seed generator's state is the position in the stream of
        # reparameterisation noise. Keras does not save SeedGenerator states,
        # so a reloaded model would replay the noise of its first steps; it
        # travels with running_mse in .keras files and save_weights instead.
        return _keras_compat.own_variables(self) + [self.seed_generator.state]

    def save_own_variables(self, store):
        for i, variable in enumerate(self._own_state()):
            store[f"{i}"] = variable

    def load_own_variables(self, store):
        variables = self._own_state()
        if len(store.keys()) == len(variables) - 1:
            variables = variables[:-1]  # saved without the seed state
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"BalancedVAE {self.name!r} expects {len(variables)} variables "
                f"of its own (balancing state and noise seed), the file has "
                f"{len(store.keys())}: was it saved with another balance?"
            )
        for i, variable in enumerate(variables):
            variable.assign(store[f"{i}"])

    # ------------------------------------------------------------- forward
    def encode(self, x, training=False):
        """Returns ``(z_mean, z_log_sigma)``."""
        z_mean, z_log_sigma = self.encoder(x, training=training)
        return z_mean, z_log_sigma

    def sample_z(self, z_mean, z_log_sigma):
        """Reparameterisation: z = mu + sigma * epsilon.

        Under a multi-replica strategy every replica draws epsilon for the
        whole global batch (the same seed everywhere) and keeps its own rows,
        so the noise does not depend on how the batch is split.
        """
        epsilon = replica_sliced_normal(
            ops.shape(z_mean), z_mean.dtype, self.seed_generator
        )
        return z_mean + ops.exp(z_log_sigma) * epsilon

    def call(self, inputs, training=False):
        """Reconstruction: decodes a sampled z when training, else z_mean."""
        x = self._prepare(inputs)
        z_mean, z_log_sigma = self.encode(x, training=training)
        z = self.sample_z(z_mean, z_log_sigma) if training else z_mean
        return self.decoder(z, training=training)

    # --------------------------------------------------------------- losses
    def _prepare(self, data):
        """Unpacks (x,), (x, y) or x; converts uint8; checks the batch."""
        return prepare_batch(data, self.input_range)

    def _compute_losses(self, x, training):
        """Forward pass and every loss term; shared by train and test steps."""
        z_mean, z_log_sigma = self.encode(x, training=training)
        z = self.sample_z(z_mean, z_log_sigma)
        reconstruction = self.decoder(z, training=training)
        squared_error = losses.squared_error_sum(x, reconstruction)
        # The MSE of the GLOBAL batch: every replica then holds the same gamma
        # and running average, whatever the number of replicas.
        batch_size = ops.shape(x)[0]
        (mean_squared_error,), global_batch_size = global_batch_means(
            [ops.stop_gradient(ops.mean(squared_error))], batch_size
        )
        batch_mse = mean_squared_error / self.num_elements
        gamma_squared = self._gamma_squared(batch_mse)
        reconstruction_loss = ops.mean(
            losses.gaussian_nll(squared_error, gamma_squared, self.num_elements)
        )
        kl_loss = ops.mean(losses.kl_divergence(z_mean, z_log_sigma))
        total = self.kl_weight * kl_loss + reconstruction_loss
        return {
            "loss": total,
            "reconstruction_loss": reconstruction_loss,
            "kl_loss": kl_loss,
            "mse": batch_mse,
            "gamma": ops.sqrt(gamma_squared),
            # This replica's share of the global batch (1 on one device).
            "batch_share": ops.cast(batch_size, "float32") / global_batch_size,
        }

    def _log(self, values, batch_size):
        # Every replica logs the global batch's values ("mse" and "gamma"
        # already are), so any reduction of per-replica logs is right.
        names = ("loss", "reconstruction_loss", "kl_loss")
        means, _ = global_batch_means(
            [ops.stop_gradient(values[name]) for name in names], batch_size
        )
        values = {**values, **dict(zip(names, means))}
        for tracker in self.metrics:
            tracker.update_state(values[tracker.name])
        logs = {tracker.name: tracker.result() for tracker in self.metrics}
        if in_multi_worker_mode():
            # Keras 3 reduces multi-worker logs with strategy.reduce(..., axis=0),
            # which fails on scalars (tensorflow/tensorflow#72388): give them a
            # batch axis of 1; the reduction then returns the scalar.
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def train_step(self, data):
        x = self._prepare(data)
        with tf.GradientTape() as tape:
            values = self._compute_losses(x, training=True)
            # Keras' TF optimizer SUMS gradients over replicas: weighting each
            # replica's batch mean by its share of the global batch makes the
            # sum the global-batch mean (also for an uneven last batch).
            loss = values["loss"] * values["batch_share"]
            if self.losses:  # regularisers of the networks, one per replica
                replicas = tf.distribute.get_strategy().num_replicas_in_sync
                loss = loss + ops.sum(self.losses) / replicas
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        self._update_balance(values["mse"])
        return self._log(values, ops.shape(x)[0])

    def test_step(self, data):
        x = self._prepare(data)
        values = self._compute_losses(x, training=False)
        return self._log(values, ops.shape(x)[0])

    # -------------------------------------------------------- serialisation
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "balance": self.balance,
                "kl_weight": self.kl_weight,
                "momentum": self.momentum,
                "running_rule": self.running_rule,
                "fixed_gamma": self.fixed_gamma,
                "min_gamma": self.min_gamma,
                "input_range": self.input_range,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        # Files saved before fixed_gamma wrote the constant as "gamma" (1.0
        # for every balance): it is the fixed_gamma of balance="fixed" only.
        old_gamma = config.pop("gamma", None)
        if config.get("balance", "running") == "fixed":
            config.setdefault("fixed_gamma", old_gamma)
        return cls(**config)


def paper_adam(learning_rate=1e-4):
    """The paper's optimizer: Adam with beta_1 0.9, beta_2 0.999, epsilon 1e-8.

    What `BalancedVAE.compile` uses when given no optimizer (epsilon is not
    Keras' default 1e-7). The paper halves the learning rate every few
    hundred epochs: pass a `vae_balance.StaircaseSchedule` (model/schedules.py) as
    ``learning_rate`` for that.
    """
    return keras.optimizers.Adam(
        learning_rate=learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8
    )
