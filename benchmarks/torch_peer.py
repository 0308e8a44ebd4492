"""The PyTorch peer: this package's stage-1 networks and training step in PyTorch.

For `benchmarks/throughput.py` to time side by side with the package (not
run on its own; its checks run in `tests/test_torch_peer.py`). The same
networks as `vae_balance.model.networks` builds (Dai & Wipf's ResNet, or
their Infogan net with `KerasSpectralNorm`), the same balanced loss
(``balance="running"``) and Adam, in idiomatic PyTorch (NCHW;
``channels_last=True``: NHWC). What makes them equal, layer by layer:

- stride-2 ``Conv2D(3, padding="same")``: TensorFlow pads an even input by 0
  before and 1 after: ``F.pad(x, (0, 1, 0, 1))``, then no padding;
  ``Conv2DTranspose(3, strides=2, padding="same")``, its adjoint: the full
  transposed convolution with its last row and column cropped (PyTorch's
  ``output_padding=1`` would crop the first: a one-pixel shift);
- ``FusedBatchNormalization(momentum=m)``: ``nn.BatchNorm2d(momentum=1 - m)``
  (PyTorch's running variance averages the unbiased batch variance, a
  factor 1.00001 at batch 100 on 32x32, inference only);
- the decoder's ``Dense`` + ``Reshape((2, 2, C))``: ``nn.Linear`` +
  ``view(B, C, 2, 2)`` (`copy_keras_weights` permutes the kernel's columns);
- Keras' initialisation; Adam's epsilon enters as in PyTorch (a difference
  of order epsilon in the update, the same cost).

The timing code needs only torch (a preset comes in as ``VAEConfig.to_dict()``);
the checks against Keras (`check_parameter_counts`, `check_forward`,
`check_loss`) import the package and TensorFlow: run them in another process
than the timing (throughput.py does).
"""

import math
import os
import types

import common
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
FIELDS = (
    "image_shape", "network", "spectral_norm", "latent_sigma", "base_filters",
    "num_scales", "latent_dim", "fc_dim", "max_filters", "bn_momentum",
    "bn_epsilon", "balance", "kl_weight", "momentum", "running_rule",
    "min_gamma", "learning_rate", "adam_epsilon", "resolved_kl_weight",
)  # fmt: skip


# ------------------------------------------------------------------ config
def resolve_config(preset):
    """The fields the peer needs, as a dict, from a preset name (imports
    `vae_balance` and TensorFlow), a `VAEConfig` or its ``to_dict()``."""
    if isinstance(preset, str):
        from vae_balance.config import get_preset

        preset = get_preset(preset)
    config = dict(preset.to_dict() if hasattr(preset, "to_dict") else preset)
    missing = [f for f in FIELDS if f not in config]
    if missing:
        raise ValueError(
            "The peer needs a preset name, a VAEConfig or VAEConfig.to_dict(); "
            f"the given config lacks {missing}."
        )
    config["image_shape"] = tuple(config["image_shape"])
    if config["balance"] != "running":
        raise ValueError(
            f"The PyTorch peer implements balance='running' (the paper, every "
            f"preset), got balance={config['balance']!r}."
        )
    return config


def decoder_filters(side, base_filters=32, max_filters=1024):
    """Channels per resolution 2, 4, ..., side, coarsest first (as
    `vae_balance.model.networks.decoder_filters`, without importing TensorFlow)."""
    if side < 2 or side & (side - 1):
        raise ValueError(f"The decoder needs a power-of-two image side, got {side}.")
    filters, f, resolution = [], base_filters, 2
    while resolution <= side:
        filters.append(min(f, max_filters))
        f *= 2
        resolution *= 2
    return filters[::-1]


# ---------------------------------------------------------------- layers
class StridedSameConv(nn.Conv2d):
    """``Conv2D(k=3, strides=2, padding="same")`` with TensorFlow's padding
    of an even input: nothing before, one pixel after."""

    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels, 3, stride=2, padding=0)

    def forward(self, x):
        return super().forward(F.pad(x, (0, 1, 0, 1)))


class StridedSameConvTranspose(nn.ConvTranspose2d):
    """``Conv2DTranspose(k=3, strides=2, padding="same")``: H -> 2H, the full
    transposed convolution (2H + 1) without its last row and column."""

    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels, 3, stride=2, padding=0)

    def forward(self, x):
        return super().forward(x)[:, :, :-1, :-1]


def _batch_norm(channels, config, kind=nn.BatchNorm2d):
    return kind(
        channels, eps=config["bn_epsilon"], momentum=1.0 - config["bn_momentum"]
    )


class ResBlock(nn.Module):
    """Two BN-ReLU-Conv3x3 units plus a 3x3 convolutional shortcut
    (`vae_balance.model.networks.res_block`)."""

    def __init__(self, in_channels, filters, config):
        super().__init__()
        self.bn1 = _batch_norm(in_channels, config)
        self.conv1 = nn.Conv2d(in_channels, filters, 3, padding=1)
        self.bn2 = _batch_norm(filters, config)
        self.conv2 = nn.Conv2d(filters, filters, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, filters, 3, padding=1)

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        return y + self.shortcut(x)


class ResFCBlock(nn.Module):
    """Two ReLU-Dense units plus a dense shortcut
    (`vae_balance.model.networks.res_fc_block`)."""

    def __init__(self, in_units, units):
        super().__init__()
        self.dense1 = nn.Linear(in_units, units)
        self.dense2 = nn.Linear(units, units)
        self.shortcut = nn.Linear(in_units, units)

    def forward(self, x):
        y = self.dense2(F.relu(self.dense1(F.relu(x))))
        return y + self.shortcut(x)


# --------------------------------------------------------------- networks
class Encoder(nn.Module):
    """Image (N, C, H, W) -> (z_mean, z_log_sigma) (`networks.build_encoder`).

    Submodules carry the Keras layer names (``scale0`` + ``_bn1`` is Keras'
    ``scale0_bn1``), which `copy_keras_weights` relies on.
    """

    def __init__(self, config):
        super().__init__()
        channels = config["image_shape"][2]
        filters = config["base_filters"]
        self.stem = nn.Conv2d(channels, filters, 3, padding=1)
        self.num_scales = config["num_scales"]
        for scale in range(self.num_scales):
            self.add_module(f"scale{scale}", ResBlock(filters, filters, config))
            if scale < self.num_scales - 1:
                self.add_module(f"down{scale}", StridedSameConv(filters, 2 * filters))
                filters *= 2
        self.fc = ResFCBlock(filters, config["fc_dim"])
        self.z_mean = nn.Linear(config["fc_dim"], config["latent_dim"])
        self.z_log_sigma = nn.Linear(config["fc_dim"], config["latent_dim"])

    def forward(self, x):
        x = self.stem(x)
        for scale in range(self.num_scales):
            x = getattr(self, f"scale{scale}")(x)
            if scale < self.num_scales - 1:
                x = getattr(self, f"down{scale}")(x)
        x = self.fc(x.mean(dim=(2, 3)))
        return self.z_mean(x), self.z_log_sigma(x)


class Decoder(nn.Module):
    """z -> image (N, C, H, W) in [0, 1] (`networks.build_decoder`)."""

    def __init__(self, config, channels_last=False):
        super().__init__()
        height, width, channels = config["image_shape"]
        if height != width:
            raise ValueError(f"The decoder needs square images, got {height}x{width}.")
        self.dims = decoder_filters(
            height, config["base_filters"], config["max_filters"]
        )
        self.channels_last = channels_last
        self.project = nn.Linear(config["latent_dim"], 4 * self.dims[0])
        previous = self.dims[0]
        for i, filters in enumerate(self.dims[1:]):
            self.add_module(f"up{i}", StridedSameConvTranspose(previous, filters))
            self.add_module(f"scale{i}", ResBlock(filters, filters, config))
            previous = filters
        self.to_image = nn.Conv2d(previous, channels, 3, padding=1)

    def forward(self, z):
        x = self.project(z).view(-1, self.dims[0], 2, 2)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for i in range(len(self.dims) - 1):
            x = getattr(self, f"scale{i}")(getattr(self, f"up{i}")(x))
        return torch.sigmoid(self.to_image(x))


class KerasSpectralNorm(nn.Module):
    """``keras.layers.SpectralNormalization(layer, power_iterations=1)``.

    In training mode one power iteration on the kernel (u: a buffer, Keras'
    ``vector_u``) and then the kernel is *replaced* by kernel / sigma, as
    Keras assigns it: the gradient reaches the normalised kernel directly,
    not through sigma (unlike ``torch.nn.utils.parametrizations
    .spectral_norm``). In inference mode the kernel as it is.
    """

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        out = layer.weight.shape[0]  # Keras' kernel.shape[-1]
        self.register_buffer("u", nn.init.trunc_normal_(torch.empty(out), std=0.02))

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                w = self.layer.weight.flatten(1)  # (out, fan_in): Keras' W.T
                v = F.normalize(self.u @ w, dim=0)
                u = F.normalize(w @ v, dim=0)
                self.layer.weight.div_(u @ (w @ v))
                self.u.copy_(u)
        return self.layer(x)


def _spectral(layer, config):
    return KerasSpectralNorm(layer) if config["spectral_norm"] else layer


class InfoganEncoder(nn.Module):
    """Image -> (z_mean, z_log_sigma) (`networks.build_infogan_encoder`).

    4x4 stride-2 'same' convolutions pad an even input by 1 on each side in
    TensorFlow too: ``padding=1``. The flatten keeps Keras' (h, w, c) order.
    """

    def __init__(self, config):
        super().__init__()
        height, width, channels = config["image_shape"]
        base, fc_dim = config["base_filters"], config["fc_dim"]
        self.latent_dim = config["latent_dim"]
        self.softplus = config["latent_sigma"] == "softplus"
        conv1 = nn.Conv2d(channels, base, 4, stride=2, padding=1)
        self.conv1_sn = _spectral(conv1, config)
        conv2 = nn.Conv2d(base, 2 * base, 4, stride=2, padding=1)
        self.conv2_sn = _spectral(conv2, config)
        self.bn2 = _batch_norm(2 * base, config)
        flat = (height // 4) * (width // 4) * 2 * base
        self.fc3_sn = _spectral(nn.Linear(flat, fc_dim), config)
        self.bn3 = _batch_norm(fc_dim, config, nn.BatchNorm1d)
        gaussian = nn.Linear(fc_dim, 2 * self.latent_dim)
        self.gaussian_sn = _spectral(gaussian, config)

    def forward(self, x):
        x = F.leaky_relu(self.conv1_sn(x), 0.2)
        x = F.leaky_relu(self.bn2(self.conv2_sn(x)), 0.2)
        x = x.permute(0, 2, 3, 1).flatten(1)
        x = F.leaky_relu(self.bn3(self.fc3_sn(x)), 0.2)
        z_mean, raw = self.gaussian_sn(x).split(self.latent_dim, dim=1)
        if self.softplus:
            return z_mean, torch.log(1e-6 + F.softplus(raw))
        return z_mean, raw


class InfoganDecoder(nn.Module):
    """z -> image (N, C, H, W) in [0, 1] (`networks.build_infogan_decoder`).

    4x4 stride-2 'same' transposed convolutions crop 1 pixel on each side:
    ``padding=1``. fc2 and its BatchNorm keep Keras' (h, w, c) order.
    """

    def __init__(self, config, channels_last=False):
        super().__init__()
        height, width, channels = config["image_shape"]
        base, fc_dim = config["base_filters"], config["fc_dim"]
        self.cells = (height // 4, width // 4, 2 * base)
        self.channels_last = channels_last
        self.fc1 = nn.Linear(config["latent_dim"], fc_dim)
        self.bn1 = _batch_norm(fc_dim, config, nn.BatchNorm1d)
        self.fc2 = nn.Linear(fc_dim, math.prod(self.cells))
        self.bn2 = _batch_norm(math.prod(self.cells), config, nn.BatchNorm1d)
        self.conv3 = nn.ConvTranspose2d(2 * base, base, 4, stride=2, padding=1)
        self.bn3 = _batch_norm(base, config)
        self.conv4 = nn.ConvTranspose2d(base, channels, 4, stride=2, padding=1)

    def forward(self, z):
        x = F.relu(self.bn1(self.fc1(z)))
        x = F.relu(self.bn2(self.fc2(x)))
        x = x.view(-1, *self.cells).permute(0, 3, 1, 2)  # channels_last memory
        if not self.channels_last:
            x = x.contiguous()
        x = F.relu(self.bn3(self.conv3(x)))
        return torch.sigmoid(self.conv4(x))


def init_infogan_like_keras(module):
    """The anchor's: N(0, 0.02) kernels (truncated at 2 sigma for the
    convolutions), zero biases, BatchNorm (1, 0)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.trunc_normal_(layer.weight, std=0.02, a=-0.04, b=0.04)
        elif isinstance(layer, (nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, std=0.02)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.reset_parameters()
            continue
        else:
            continue
        nn.init.zeros_(layer.bias)


def keras_named_modules(network):
    """``(keras_layer_name, module)`` for every module with weights."""
    for name, module in network.named_children():
        if isinstance(module, (ResBlock, ResFCBlock)):
            for child, layer in module.named_children():
                yield f"{name}_{child}", layer
        else:
            yield name, module


def init_like_keras(module):
    """Keras' defaults: Glorot-uniform kernels, zero biases, BN (1, 0)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            # PyTorch's fans of a transposed kernel (in, out, k, k) are Keras'
            # of (k, k, out, in): Glorot's limit is the same.
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            layer.reset_parameters()


# ------------------------------------------------------------------ model
class TorchBalancedVAE(nn.Module):
    """Encoder, decoder and the balancing state of `BalancedVAE` (running).

    ``running_mse`` and ``ema_mse`` are buffers, as Keras' non-trainable
    weights of the same names (``ema_mse`` only moves with
    ``running_rule="ema_min"``).
    """

    def __init__(self, preset, channels_last=False):
        super().__init__()
        config = resolve_config(preset)
        self.config = config
        self.channels_last = channels_last
        infogan = config["network"] == "infogan"
        self.encoder = (InfoganEncoder if infogan else Encoder)(config)
        self.decoder = (InfoganDecoder if infogan else Decoder)(config, channels_last)
        self.register_buffer("running_mse", torch.ones(()))
        self.register_buffer("ema_mse", torch.ones(()))
        height, width, channels = config["image_shape"]
        self.num_elements = height * width * channels
        self.kl_weight = float(config["resolved_kl_weight"])
        self.momentum = float(config["momentum"])
        self.running_rule = config["running_rule"]
        self.min_gamma = float(config["min_gamma"])
        (init_infogan_like_keras if infogan else init_like_keras)(self)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x):
        """Reconstruction of ``x`` from z_mean (the inference path)."""
        z_mean, _ = self.encoder(x)
        return self.decoder(z_mean)

    def loss_terms(self, x, noise=None):
        """``(loss, batch_mse)`` of one training forward pass
        (`BalancedVAE._compute_losses` with balance="running"); ``noise``:
        the reparameterisation's epsilon (default: drawn)."""
        z_mean, z_log_sigma = self.encoder(x)
        if noise is None:
            noise = torch.randn_like(z_mean)
        z = z_mean + torch.exp(z_log_sigma) * noise
        reconstruction = self.decoder(z)
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


def build_torch_vae(preset, channels_last=False):
    """The peer of ``vae_balance.build_vae(preset)``, in training mode."""
    return TorchBalancedVAE(preset, channels_last).train()


def make_optimizer(model):
    """Adam of the preset: ``lr``, betas (0.9, 0.999), ``adam_epsilon``.

    ``fused=True``: PyTorch's one-kernel Adam, the fastest on CPU (the default
    for CPU tensors is a Python loop over the parameters).
    """
    config = model.config
    return torch.optim.Adam(
        model.parameters(),
        lr=config["learning_rate"],
        betas=(0.9, 0.999),
        eps=config["adam_epsilon"],
        fused=True,
    )


def make_train_step(model, optimizer, compile=False, bfloat16=False):
    """``step(x) -> (loss, batch_mse)``: one balanced training step.

    ``bfloat16=True``: the forward pass and loss under ``torch.autocast("cpu",
    dtype=torch.bfloat16)`` (weights and optimizer float32), PyTorch's side
    of the package's ``mixed_bfloat16``. ``compile=True``: the forward pass
    and loss through ``torch.compile`` (TorchInductor; AOTAutograd compiles
    the backward pass); the first call compiles (5 s to minutes) and can
    raise (no C++ compiler, an unsupported op). The fused Adam step stays
    eager: compiled, it took over 2 minutes on the 2-core machine for
    fashion_mnist and recompiled in the next steps.
    """
    loss_terms = model.loss_terms
    if bfloat16:
        loss_terms = torch.autocast("cpu", dtype=torch.bfloat16)(loss_terms)
    if compile:
        loss_terms = torch.compile(loss_terms)

    def step(x):
        optimizer.zero_grad(set_to_none=True)
        loss, batch_mse = loss_terms(x)
        loss.backward()
        optimizer.step()
        model.update_balance(batch_mse)
        return loss.detach(), batch_mse

    return step


def synthetic_batch(model, batch_size, seed=0):
    """Uniform images in [0, 1], (N, C, H, W) in the model's memory format."""
    height, width, channels = model.config["image_shape"]
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, channels, height, width, generator=generator)
    if model.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def use_all_cores():
    """``torch.set_num_threads(os.cpu_count())``; returns the thread count."""
    torch.set_num_threads(os.cpu_count())
    return torch.get_num_threads()


def time_training(preset, compile=False, warmup=2, steps=5, batch_size=100, **options):
    """Images/second of the peer's training steps on one synthetic batch.

    ``warmup`` untimed steps first (with ``compile=True`` at least 2: the
    first compiles); ``options``: ``channels_last``, ``bfloat16``. A
    compilation error does not raise: the dict says ``"available": False``.
    """
    torch.manual_seed(0)
    model = build_torch_vae(preset, options.get("channels_last", False))
    optimizer = make_optimizer(model)
    step = make_train_step(
        model, optimizer, compile=compile, bfloat16=options.get("bfloat16", False)
    )
    x = synthetic_batch(model, batch_size)
    warmup = max(warmup, 2 if compile else 1)
    losses = []
    try:  # CPU ops are synchronous: each step has finished when it returns
        first, times = common.clock(lambda: losses.append(step(x)[0]), warmup, steps)
    except Exception as error:  # reported, not raised: "not available"
        if not compile:
            raise
        return {"available": False, "error": f"{type(error).__name__}: {error}"}
    if not math.isfinite(float(losses[-1])):
        raise FloatingPointError(
            f"The peer's loss is {losses[-1]} after {steps} steps."
        )
    return {
        "available": True,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "channels_last": bool(options.get("channels_last")),
        "bfloat16": bool(options.get("bfloat16")),
        "parameters": count_parameters(model)["total"],
        **common.step_speed(first, times, warmup, batch_size),
        "running_mse": float(model.running_mse),
    }


# ----------------------------------------------------- checks against Keras
def count_parameters(model):
    """``{"trainable", "total"}`` as Keras counts them.

    Total: the trainable parameters plus every floating-point buffer (the
    BatchNorm running mean and variance, ``running_mse``, ``ema_mse``), as
    Keras' non-trainable weights. PyTorch's integer ``num_batches_tracked``
    counters have no Keras counterpart (used only with ``momentum=None``) and
    are left out.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return {"trainable": trainable, "total": trainable + frozen + buffers}


def keras_parameter_counts(vae):
    """``{"trainable", "total"}`` of a Keras `BalancedVAE`."""
    trainable = sum(math.prod(w.shape) for w in vae.trainable_weights)
    return {"trainable": int(trainable), "total": int(vae.count_params())}


def check_parameter_counts(preset):
    """Builds ``build_vae(preset)`` and the peer; their counts, equal or raise.

    Returns:
        ``{"trainable": n, "total": n}`` (the same for both).

    Raises:
        ValueError: naming both counts when the trainable or the total counts
            differ.
    """
    import vae_balance

    keras_counts = keras_parameter_counts(vae_balance.build_vae(preset))
    torch_counts = count_parameters(build_torch_vae(preset))
    if keras_counts != torch_counts:
        raise ValueError(
            f"Preset {preset}: the PyTorch peer is not the package's network: "
            f"Keras has {keras_counts['trainable']} trainable / "
            f"{keras_counts['total']} total parameters, PyTorch "
            f"{torch_counts['trainable']} / {torch_counts['total']}."
        )
    return keras_counts


def _targets(module):
    """A module's tensors in the order of its Keras layer's weights."""
    if isinstance(module, KerasSpectralNorm):  # kernel, vector_u, bias
        return [module.layer.weight, module.u, module.layer.bias]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return [module.weight, module.bias, module.running_mean, module.running_var]
    return [module.weight, module.bias]


def _copy_layer(layer, module, project_channels=None):
    """One Keras layer's weights into its PyTorch module (shapes checked).

    Conv2D (k, k, in, out) -> (out, in, k, k); Conv2DTranspose (k, k, out,
    in) -> (in, out, k, k): the same permutation; Dense (in, out) -> (out,
    in); ``vector_u`` (1, out) -> (out,). ``project_channels``: the ResNet
    decoder's ``project`` Dense, whose output Keras reshapes to (2, 2, C)
    and PyTorch views as (C, 2, 2).
    """
    values = [torch.tensor(np.asarray(w, "float32")) for w in layer.weights]
    targets = _targets(module)
    if len(targets) != len(values):
        raise ValueError(
            f"Layer {layer.name}: {len(values)} Keras weights for "
            f"{len(targets)} PyTorch tensors."
        )
    if project_channels:  # columns (h, w, c) -> rows (c, h, w)
        c = project_channels
        values = [
            values[0].reshape(-1, 2, 2, c).permute(3, 1, 2, 0).reshape(4 * c, -1),
            values[1].reshape(2, 2, c).permute(2, 0, 1).reshape(-1),
        ]
    for target, value in zip(targets, values):
        if value.ndim == 4:
            value = value.permute(3, 2, 0, 1)
        elif value.ndim == 2 and target.ndim == 2 and not project_channels:
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
    for keras_net, torch_net in (
        (vae.encoder, model.encoder),
        (vae.decoder, model.decoder),
    ):
        layers = {layer.name: layer for layer in keras_net.layers if layer.weights}
        modules = dict(keras_named_modules(torch_net))
        if set(layers) != set(modules):
            raise ValueError(
                f"{keras_net.name}: Keras layers and PyTorch modules differ: "
                f"{sorted(set(layers) ^ set(modules))}."
            )
        for name, module in modules.items():
            project = torch_net.dims[0] if name == "project" else None
            _copy_layer(source(layers[name]), module, project)


def copy_keras_weights(vae, model):
    """Copies a Keras `BalancedVAE`'s weights and states into the peer."""
    _copy_networks(vae, model)
    with torch.no_grad():
        model.running_mse.copy_(torch.tensor(float(vae.running_mse.numpy())))
        model.ema_mse.copy_(torch.tensor(float(vae.ema_mse.numpy())))


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


def _keras_and_peer(preset, seed, batch_size, channels_last=False, randomise_bn=False):
    """A fresh seeded Keras `BalancedVAE`, the peer with its weights copied
    in, one batch of uniform images (N, H, W, C) for Keras and as ``x``
    (N, C, H, W) for PyTorch, and the generator that drew them."""
    import keras

    import vae_balance

    keras.utils.set_random_seed(seed)
    vae = vae_balance.build_vae(preset)
    if randomise_bn:
        _randomise_batchnorm_statistics(vae, seed)
    model = build_torch_vae(preset, channels_last)
    copy_keras_weights(vae, model)
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(batch_size, *model.config["image_shape"]))
    images = images.astype("float32")
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return vae, model, images, x, rng


def check_forward(preset, batch_size=8, seed=0, tolerance=1e-4, channels_last=False):
    """Copies a fresh Keras model into the peer; compares their forward passes.

    z_mean, z_log_sigma and the reconstruction ``decoder(z_mean)`` of one
    random batch, in inference mode (BatchNorm moving statistics, randomised
    first so that they matter) and in training mode (batch statistics).
    Batch 8: at batch 2 the Infogan's dense BatchNorm layers in training
    mode amplify float32 rounding to 2e-4 (4e-6 at batch 8).

    Returns ``{"inference": {...}, "training": {...}}``, the largest absolute
    difference per output; raises ValueError above ``tolerance``.
    """
    vae, model, images, x, _ = _keras_and_peer(
        preset, seed, batch_size, channels_last, randomise_bn=True
    )
    differences = {}
    for mode, training in (("inference", False), ("training", True)):
        model.train(training)
        z_mean, z_log_sigma = vae.encoder(images, training=training)
        reconstruction = vae.decoder(z_mean, training=training)
        with torch.no_grad():
            t_mean, t_log_sigma = model.encoder(x)
            t_reconstruction = model.decoder(t_mean).permute(0, 2, 3, 1)
        pairs = {
            "z_mean": (z_mean, t_mean),
            "z_log_sigma": (z_log_sigma, t_log_sigma),
            "reconstruction": (reconstruction, t_reconstruction),
        }
        differences[mode] = {
            name: float(np.max(np.abs(np.asarray(a) - b.numpy())))
            for name, (a, b) in pairs.items()
        }
    model.train()
    worst = max(v for mode in differences.values() for v in mode.values())
    if worst > tolerance:
        raise ValueError(
            f"Preset {preset}: the PyTorch peer's forward pass differs from the "
            f"package's by up to {worst:.3g} (> {tolerance}): {differences}."
        )
    return differences


def _gradients_of(layer, gradients):
    """A Keras layer's gradients in the place of its weights (zeros for the
    non-trainable ones), for `_copy_layer`."""
    zero = np.zeros
    weights = [gradients.get(id(w), zero(w.shape, "float32")) for w in layer.weights]
    return types.SimpleNamespace(name=layer.name, weights=weights)


def check_loss(preset, batch_size=4, seed=0, tolerance=2e-3):
    """The balanced loss and its gradients, Keras against the peer.

    The same weights, images and reparameterisation noise; the loss, the
    batch MSE and every parameter's gradient (BatchNorm in training mode).
    Measured at batch 4: the same loss to float32 rounding; the largest
    gradient difference 2e-6 (fashion_mnist), 9e-7 (cifar10), 1.2e-5
    (fashion_mnist_infogan) and 5e-4 (celeba) of the largest gradient. The
    celeba one is float32 rounding amplified by BatchNorm's backward pass
    over a batch of 4: against the peer in float64 both frameworks' float32
    gradients are off by as much. A wrong layer or loss term differs by the
    order of the gradients themselves.

    Returns ``{"loss": (keras, torch), "batch_mse": (keras, torch),
    "gradient_max_abs_difference", "gradient_max_abs"}``; raises ValueError
    when the loss differs by more than ``tolerance`` relatively, or a
    gradient by more than ``tolerance`` times the largest gradient.
    """
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
    expected = build_torch_vae(preset)
    _copy_networks(vae, expected, lambda layer: _gradients_of(layer, gradients))
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
