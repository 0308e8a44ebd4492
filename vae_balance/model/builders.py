"""Build the two stages of a preset as uncompiled BalancedVAE models."""

import tensorflow as tf

from vae_balance.config import get_preset
from vae_balance.model import networks
from vae_balance.model.vae import BalancedVAE


def _balancing_kwargs(config):
    kwargs = {
        "balance": config.balance,
        "momentum": config.momentum,
        "running_rule": config.running_rule,
        "min_gamma": config.min_gamma,
    }
    if config.balance == "fixed":  # VAEConfig checks gamma is 1 otherwise
        kwargs["fixed_gamma"] = config.gamma
    return kwargs


def stage_settings(config, stage):
    """The plain settings (not state) of a stage's `BalancedVAE` under
    ``config``: what `build_vae` (``"stage1"``) and `build_second_stage`
    (``"stage2"``) pass it, and what a resumed stage takes from the
    configuration (`vae_balance.training.stages`)."""
    kl_weight = config.resolved_kl_weight() if stage == "stage1" else 1.0
    return {"kl_weight": kl_weight, **_balancing_kwargs(config)}


def build_vae(preset="cifar10", synchronized_bn=None, fused_bn=True, **overrides):
    """The first-stage BalancedVAE of a preset (uncompiled).

    Build it inside ``strategy.scope()`` to train under a tf.distribute
    strategy.

    Args:
        preset: a preset name (see `vae_balance.PRESETS`) or a `VAEConfig`.
        synchronized_bn: BatchNormalization statistics over the global batch
            rather than each replica's share of it. None (default): on when
            built under a strategy with more than one replica, so that
            training matches one device with the same global batch (the
            paper's statistics over 100 images) at the cost of small
            all-reduces per BN layer.
        fused_bn: BatchNormalization through TensorFlow's fused kernel
            (`networks.FusedBatchNormalization`): the same results as
            `keras.layers.BatchNormalization` in faster training steps
            (benchmarks/results/throughput.md). False: the plain Keras layer.
        **overrides: `VAEConfig` fields to replace, e.g. ``balance="learned"``.

    Example:

    >>> vae = build_vae("cifar10")
    >>> vae.encoder.count_params(), vae.decoder.count_params()
    """
    config = get_preset(preset, **overrides)
    if synchronized_bn is None:
        synchronized_bn = tf.distribute.get_strategy().num_replicas_in_sync > 1
    encoder, decoder = _first_stage_networks(config, synchronized_bn, fused_bn)
    return BalancedVAE(
        encoder,
        decoder,
        seed=config.seed,
        name="vae",
        **stage_settings(config, "stage1"),
    )


def _first_stage_networks(config, synchronized_bn, fused_bn):
    """The (encoder, decoder) of ``config.network``."""
    common = {
        "latent_dim": config.latent_dim,
        "base_filters": config.base_filters,
        "bn_momentum": config.bn_momentum,
        "bn_epsilon": config.bn_epsilon,
        "synchronized_bn": synchronized_bn,
        "fused_bn": fused_bn,
    }
    if config.network == "infogan":
        encoder = networks.build_infogan_encoder(
            config.image_shape,
            fc_dim=config.fc_dim,
            spectral_norm=config.spectral_norm,
            latent_sigma=config.latent_sigma,
            **common,
        )
        decoder = networks.build_infogan_decoder(
            config.image_shape, fc_dim=config.fc_dim, **common
        )
        return encoder, decoder
    encoder = networks.build_encoder(
        config.image_shape,
        num_scales=config.num_scales,
        fc_dim=config.fc_dim,
        **common,
    )
    decoder = networks.build_decoder(
        config.image_shape, max_filters=config.max_filters, **common
    )
    return encoder, decoder


def build_second_stage(preset="cifar10", **overrides):
    """The second-stage BalancedVAE on latent vectors (uncompiled).

    Same class and balancing rule as stage 1, KL weight 1, its own running_mse
    from 1.0, dense networks of ``second_dim`` units, no input range check.
    """
    config = get_preset(preset, **overrides)
    kwargs = {"latent_dim": config.latent_dim, "second_dim": config.second_dim}
    kwargs["depth"] = config.second_depth
    return BalancedVAE(
        networks.build_second_encoder(**kwargs),
        networks.build_second_decoder(**kwargs),
        input_range=None,
        seed=config.seed + 1,
        name="vae2",
        **stage_settings(config, "stage2"),
    )
