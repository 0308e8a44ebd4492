"""The PyTorch peer: this package's stage-1 model and training step in PyTorch.

The networks of `torch_networks.py` (Dai & Wipf's ResNet, or their Infogan
net), the same balanced
loss (``balance="running"``) and Adam, in idiomatic PyTorch (NCHW), for
`throughput.py` to time beside the package; docs/benchmarks.md, "The
PyTorch peer", says what makes each layer equal to Keras'. The timing needs
only torch (a preset comes in as ``VAEConfig.to_dict()``); the checks
against Keras (`check_parameter_counts`, `check_forward`, `check_loss`)
import the package and TensorFlow inside them, so that the timing process
never loads TensorFlow.
"""

import math
import os
import types

import common
import numpy as np
import torch
import torch_networks
from torch import nn

HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


# ------------------------------------------------------------------ model
class TorchBalancedVAE(nn.Module):
    """Encoder, decoder and the balancing state of `BalancedVAE` (running):
    ``running_mse`` and ``ema_mse``, buffers as Keras' non-trainable weights
    of the same names."""

    def __init__(self, preset):
        super().__init__()
        config = self.config = torch_networks.resolve_config(preset)
        infogan = config["network"] == "infogan"
        nets = torch_networks
        self.encoder = (nets.InfoganEncoder if infogan else nets.Encoder)(config)
        self.decoder = (nets.InfoganDecoder if infogan else nets.Decoder)(config)
        self.register_buffer("running_mse", torch.ones(()))
        self.register_buffer("ema_mse", torch.ones(()))
        self.num_elements = math.prod(config["image_shape"])
        self.kl_weight = float(config["resolved_kl_weight"])
        self.momentum = float(config["momentum"])
        self.running_rule = config["running_rule"]
        self.min_gamma = float(config["min_gamma"])
        torch_networks.init_like_keras(self, infogan)

    def loss_terms(self, x, noise=None):
        """``(loss, batch_mse)`` of one training forward pass
        (`BalancedVAE._compute_losses` with balance="running"); ``noise``:
        the reparameterisation's epsilon (default: drawn)."""
        z_mean, z_log_sigma = self.encoder(x)
        if noise is None:
            noise = torch.randn_like(z_mean)
        reconstruction = self.decoder(z_mean + torch.exp(z_log_sigma) * noise)
        squared_error = (x - reconstruction).square().flatten(1).sum(1)
        batch_mse = squared_error.detach().mean() / self.num_elements
        gamma_squared = self.running_mse.clamp_min(self.min_gamma**2)
        d = float(self.num_elements)
        reconstruction_loss = (
            squared_error / (2.0 * gamma_squared)
            + 0.5 * d * torch.log(gamma_squared)
            + d * HALF_LOG_TWO_PI
        ).mean()
        kl = 0.5 * (
            z_mean.square() + torch.exp(2.0 * z_log_sigma) - 2.0 * z_log_sigma - 1.0
        ).sum(1)
        return self.kl_weight * kl.mean() + reconstruction_loss, batch_mse

    @torch.no_grad()
    def update_balance(self, batch_mse):
        """``BalancedVAE._update_balance``: after each optimizer step."""
        m, mu = self.running_mse, self.momentum
        if self.running_rule == "min":
            new = torch.minimum(m, mu * m + (1.0 - mu) * batch_mse)
        elif self.running_rule == "ema":
            new = mu * m + (1.0 - mu) * batch_mse
        else:  # "ema_min"
            self.ema_mse.copy_(mu * self.ema_mse + (1.0 - mu) * batch_mse)
            new = torch.minimum(m, self.ema_mse)
        m.copy_(new)


def build_torch_vae(preset):
    """The peer of ``vae_balance.build_vae(preset)``, in training mode."""
    return TorchBalancedVAE(preset).train()


def make_optimizer(model):
    """The preset's Adam; ``fused=True``: one kernel, the fastest on CPU."""
    lr, eps = model.config["learning_rate"], model.config["adam_epsilon"]
    return torch.optim.Adam(model.parameters(), lr, (0.9, 0.999), eps, fused=True)


def make_train_step(model, optimizer, bfloat16=False):
    """``step(x) -> (loss, batch_mse)``: one balanced training step;
    ``bfloat16``: the forward pass and loss under ``torch.autocast`` (weights
    and optimizer float32), the peer of the package's ``mixed_bfloat16``."""
    loss_terms = model.loss_terms
    if bfloat16:
        loss_terms = torch.autocast("cpu", dtype=torch.bfloat16)(loss_terms)

    def step(x):
        optimizer.zero_grad(set_to_none=True)
        loss, batch_mse = loss_terms(x)
        loss.backward()
        optimizer.step()
        model.update_balance(batch_mse)
        return loss.detach(), batch_mse

    return step


def synthetic_batch(model, batch_size, seed=0):
    """Uniform images in [0, 1], (N, C, H, W)."""
    height, width, channels = model.config["image_shape"]
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch_size, channels, height, width, generator=generator)


def time_training(preset, warmup=2, steps=5, batch_size=100, bfloat16=False):
    """Images/second of the peer's training steps on one synthetic batch,
    on every core, after ``warmup`` untimed steps (at least 1)."""
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = build_torch_vae(preset)
    step = make_train_step(model, make_optimizer(model), bfloat16=bfloat16)
    x = synthetic_batch(model, batch_size)
    warmup, losses = max(warmup, 1), []
    # CPU ops are synchronous: each step has finished when it returns.
    first, times = common.clock(lambda: losses.append(step(x)[0]), warmup, steps)
    if not math.isfinite(float(losses[-1])):
        raise FloatingPointError(
            f"The peer's loss is {losses[-1]} after {steps} steps."
        )
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "parameters": count_parameters(model)["total"],
        **common.step_speed(first, times, warmup, batch_size),
        "running_mse": float(model.running_mse),
    }


# ----------------------------------------------------- checks against Keras
def count_parameters(model):
    """``{"trainable", "total"}`` as Keras counts them: total adds every
    floating-point buffer (BatchNorm statistics, ``running_mse``, ``ema_mse``:
    Keras' non-trainable weights), not the integer ``num_batches_tracked``."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return {"trainable": trainable, "total": trainable + frozen + buffers}


def check_parameter_counts(preset):
    """``{"trainable", "total"}`` of ``build_vae(preset)``, which the peer
    must have too (else ValueError, naming both)."""
    import vae_balance

    vae = vae_balance.build_vae(preset)
    trainable = int(sum(math.prod(w.shape) for w in vae.trainable_weights))
    keras_counts = {"trainable": trainable, "total": int(vae.count_params())}
    torch_counts = count_parameters(build_torch_vae(preset))
    if keras_counts != torch_counts:
        raise ValueError(
            f"Preset {preset}: the PyTorch peer is not the package's network: "
            f"Keras has {keras_counts['trainable']} trainable / "
            f"{keras_counts['total']} total parameters, PyTorch "
            f"{torch_counts['trainable']} / {torch_counts['total']}."
        )
    return keras_counts


def keras_named_modules(network):
    """``(keras_layer_name, module)`` for every module with weights."""
    for name, module in network.named_children():
        if isinstance(module, (torch_networks.ResBlock, torch_networks.ResFCBlock)):
            for child, layer in module.named_children():
                yield f"{name}_{child}", layer
        else:
            yield name, module


def _targets(module):
    """A module's tensors in the order of its Keras layer's weights."""
    if isinstance(module, torch_networks.KerasSpectralNorm):  # kernel, vector_u, bias
        return [module.layer.weight, module.u, module.layer.bias]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return [module.weight, module.bias, module.running_mean, module.running_var]
    return [module.weight, module.bias]


def _copy_layer(layer, module):
    """One Keras layer's weights into its PyTorch module (shapes checked):
    convolution kernels (k, k, a, b) -> (b, a, k, k), for transposed ones
    too; Dense (in, out) -> (out, in); ``vector_u`` (1, out) -> (out,)."""
    values = [torch.tensor(np.asarray(w, "float32")) for w in layer.weights]
    targets = _targets(module)
    if len(targets) != len(values):
        raise ValueError(
            f"Layer {layer.name}: {len(values)} Keras weights for "
            f"{len(targets)} PyTorch tensors."
        )
    for target, value in zip(targets, values):
        if value.ndim == 4:
            value = value.permute(3, 2, 0, 1)
        elif value.ndim == 2 and target.ndim == 2:
            value = value.T
        elif value.ndim == 2 and value.shape[0] == 1:
            value = value[0]
        if target.shape != value.shape:
            raise ValueError(
                f"Layer {layer.name}: Keras weight {tuple(value.shape)} does not "
                f"fit PyTorch's {tuple(target.shape)}."
            )
        with torch.no_grad():
            target.copy_(value)


def _copy_networks(vae, model, source=lambda layer: layer):
    """Every Keras layer with weights (through ``source``) into its module;
    they must match one to one."""
    for keras_net, torch_net in zip(
        (vae.encoder, vae.decoder), (model.encoder, model.decoder)
    ):
        layers = {layer.name: layer for layer in keras_net.layers if layer.weights}
        modules = dict(keras_named_modules(torch_net))
        if set(layers) != set(modules):
            raise ValueError(
                f"{keras_net.name}: Keras layers and PyTorch modules differ: "
                f"{sorted(set(layers) ^ set(modules))}."
            )
        for name, module in modules.items():
            _copy_layer(source(layers[name]), module)


def _randomise_batchnorm_statistics(vae, seed):
    """Non-trivial moving statistics, so that inference exercises them."""
    from vae_balance.model.batchnorm import batchnorm_layers

    rng = np.random.default_rng(seed)
    for net in (vae.encoder, vae.decoder):
        for layer in batchnorm_layers(net):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0.0, 0.5, shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.2, shape).astype("float32"))


def _keras_and_peer(preset, seed, batch_size, randomise_bn=False):
    """A seeded Keras `BalancedVAE`, the peer with its weights, uniform images
    (N, H, W, C) and as ``x`` (N, C, H, W), and the generator that drew them."""
    import keras

    import vae_balance

    keras.utils.set_random_seed(seed)
    vae = vae_balance.build_vae(preset)
    if randomise_bn:
        _randomise_batchnorm_statistics(vae, seed)
    model = build_torch_vae(preset)
    _copy_networks(vae, model)
    model.running_mse.fill_(float(vae.running_mse.numpy()))
    model.ema_mse.fill_(float(vae.ema_mse.numpy()))
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(batch_size, *model.config["image_shape"]))
    images = images.astype("float32")
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    return vae, model, images, x, rng


def check_forward(preset, batch_size=8, seed=0, tolerance=1e-4):
    """The largest absolute difference per output (z_mean, z_log_sigma,
    ``decoder(z_mean)``) of Keras and the peer with its weights, ``{"inference"
    (randomised BatchNorm statistics), "training"}``; ValueError above
    ``tolerance``. Batch 8: at 2 the Infogan's dense BatchNorm in training
    mode amplifies rounding to 2e-4."""
    vae, model, images, x, _ = _keras_and_peer(preset, seed, batch_size, True)
    differences = {}
    for mode, training in (("inference", False), ("training", True)):
        model.train(training)
        z_mean, z_log_sigma = vae.encoder(images, training=training)
        reconstruction = vae.decoder(z_mean, training=training)
        with torch.no_grad():
            t_mean, t_log_sigma = model.encoder(x)
            t_reconstruction = model.decoder(t_mean).permute(0, 2, 3, 1)
        pairs = zip(("z_mean", "z_log_sigma", "reconstruction"),
                    (z_mean, z_log_sigma, reconstruction),
                    (t_mean, t_log_sigma, t_reconstruction))  # fmt: skip
        differences[mode] = {
            name: float(np.max(np.abs(np.asarray(a) - b.numpy())))
            for name, a, b in pairs
        }
    model.train()
    worst = max(v for mode in differences.values() for v in mode.values())
    if worst > tolerance:
        raise ValueError(
            f"Preset {preset}: the PyTorch peer's forward pass differs from the "
            f"package's by up to {worst:.3g} (> {tolerance}): {differences}."
        )
    return differences


def check_loss(preset, batch_size=4, seed=0, tolerance=2e-3):
    """The balanced loss, batch MSE and gradients (BatchNorm in training mode)
    of Keras and the peer, with the same weights, images and noise:
    ``{"loss", "batch_mse"}`` as (keras, torch), the largest gradient
    difference and gradient; ValueError above ``tolerance`` (relative to the
    loss, to the largest gradient; measured: docs/benchmarks.md)."""
    import tensorflow as tf

    vae, model, images, x, rng = _keras_and_peer(preset, seed, batch_size)
    noise = rng.normal(size=(batch_size, model.config["latent_dim"]))
    noise = noise.astype("float32")
    vae.sample_z = lambda z_mean, z_log_sigma: z_mean + tf.exp(z_log_sigma) * noise
    with tf.GradientTape() as tape:
        values = vae._compute_losses(tf.constant(images), training=True)
    keras_gradients = tape.gradient(values["loss"], vae.trainable_weights)
    gradients = {
        id(w): g.numpy() for w, g in zip(vae.trainable_weights, keras_gradients)
    }
    loss, batch_mse = model.loss_terms(x, torch.from_numpy(noise))
    loss.backward()

    def gradients_of(layer):  # in the place of its weights, zeros if frozen
        zero = np.zeros
        weights = [
            gradients.get(id(w), zero(w.shape, "float32")) for w in layer.weights
        ]
        return types.SimpleNamespace(name=layer.name, weights=weights)

    expected = build_torch_vae(preset)
    _copy_networks(vae, expected, gradients_of)
    with torch.no_grad():
        pairs = list(zip(model.parameters(), expected.parameters()))
        difference = max(float((p.grad - q).abs().max()) for p, q in pairs)
        largest = max(float(q.abs().max()) for _, q in pairs)
    result = {
        "loss": (float(values["loss"]), float(loss.detach())),
        "batch_mse": (float(values["mse"]), float(batch_mse)),
        "gradient_max_abs_difference": difference,
        "gradient_max_abs": largest,
    }
    loss_error = abs(result["loss"][0] - result["loss"][1]) / abs(result["loss"][0])
    if loss_error > tolerance or difference > tolerance * largest:
        raise ValueError(
            f"Preset {preset}: the PyTorch peer's loss or gradients differ from "
            f"the package's: {result}."
        )
    return result
