"""The PyTorch peer's networks: this package's stage-1 encoders and decoders in PyTorch.

The same networks as `vae_balance.model.networks` builds (Dai & Wipf's
ResNet, or their Infogan net with `KerasSpectralNorm`), in idiomatic PyTorch
(NCHW), initialised as Keras initialises them. `torch_peer.py` puts the
balanced loss, Adam and the timing around them; docs/benchmarks.md, "The
PyTorch peer", says what makes each layer equal to Keras'. Only torch is
imported here (a preset comes in as ``VAEConfig.to_dict()``).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------- networks
def resolve_config(preset):
    """The preset as a dict, from its name (imports the package and
    TensorFlow), a `VAEConfig` or its ``to_dict()``."""
    if isinstance(preset, str):
        from vae_balance.config import get_preset

        preset = get_preset(preset)
    config = dict(preset.to_dict() if hasattr(preset, "to_dict") else preset)
    config["image_shape"] = tuple(config["image_shape"])
    if config["balance"] != "running":
        raise ValueError(
            f"The PyTorch peer implements balance='running' (the paper, every "
            f"preset), got balance={config['balance']!r}."
        )
    return config


def decoder_filters(side, base_filters, max_filters):
    """Channels per resolution 2, 4, ..., side, coarsest first
    (`vae_balance.model.networks.decoder_filters`, without TensorFlow)."""
    scales = range(round(math.log2(side)))
    return [min(base_filters * 2**i, max_filters) for i in scales][::-1]


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
    momentum = 1.0 - config["bn_momentum"]  # PyTorch weighs the new batch
    return kind(channels, eps=config["bn_epsilon"], momentum=momentum)


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
    """Two ReLU-Dense units plus a dense shortcut (`networks.res_fc_block`)."""

    def __init__(self, in_units, units):
        super().__init__()
        self.dense1 = nn.Linear(in_units, units)
        self.dense2 = nn.Linear(units, units)
        self.shortcut = nn.Linear(in_units, units)

    def forward(self, x):
        y = self.dense2(F.relu(self.dense1(F.relu(x))))
        return y + self.shortcut(x)


class Encoder(nn.Module):
    """Image (N, C, H, W) -> (z_mean, z_log_sigma) (`networks.build_encoder`);
    submodules carry the Keras layer names (``scale0`` + ``_bn1``)."""

    def __init__(self, config):
        super().__init__()
        filters = config["base_filters"]
        self.stem = nn.Conv2d(config["image_shape"][2], filters, 3, padding=1)
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

    def __init__(self, config):
        super().__init__()
        side, _, channels = config["image_shape"]  # square (the Keras side checks)
        self.dims = decoder_filters(side, config["base_filters"], config["max_filters"])
        self.project = nn.Linear(config["latent_dim"], 4 * self.dims[0])
        for i, (previous, filters) in enumerate(zip(self.dims, self.dims[1:])):
            self.add_module(f"up{i}", StridedSameConvTranspose(previous, filters))
            self.add_module(f"scale{i}", ResBlock(filters, filters, config))
        self.to_image = nn.Conv2d(self.dims[-1], channels, 3, padding=1)

    def forward(self, z):  # Keras' Reshape((2, 2, C)): (h, w, c) order, NCHW
        x = self.project(z).view(-1, 2, 2, self.dims[0])
        x = x.permute(0, 3, 1, 2).contiguous()
        for i in range(len(self.dims) - 1):
            x = getattr(self, f"scale{i}")(getattr(self, f"up{i}")(x))
        return torch.sigmoid(self.to_image(x))


class KerasSpectralNorm(nn.Module):
    """``keras.layers.SpectralNormalization(layer, power_iterations=1)``: in
    training mode one power iteration (u: Keras' ``vector_u``), then the kernel
    is *replaced* by kernel / sigma, as Keras assigns it (the gradient does not
    go through sigma, unlike PyTorch's ``spectral_norm``)."""

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
    TensorFlow too; the flatten keeps Keras' (h, w, c) order."""

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
    4x4 stride-2 'same' transposed convolutions crop 1 pixel on each side;
    fc2 and its BatchNorm keep Keras' (h, w, c) order."""

    def __init__(self, config):
        super().__init__()
        height, width, channels = config["image_shape"]
        base, fc_dim = config["base_filters"], config["fc_dim"]
        self.cells = (height // 4, width // 4, 2 * base)
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
        x = x.view(-1, *self.cells).permute(0, 3, 1, 2).contiguous()
        x = F.relu(self.bn3(self.conv3(x)))
        return torch.sigmoid(self.conv4(x))


def init_like_keras(module, infogan):
    """Keras' initialisation: zero biases, BatchNorm (1, 0); kernels
    Glorot-uniform (the ResNet; PyTorch's fans of a transposed kernel
    (in, out, k, k) are Keras' of (k, k, out, in): the same limit), or the
    Infogan anchor's N(0, 0.02), truncated at 2 sigma for convolutions."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.reset_parameters()
        elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.zeros_(layer.bias)
            if not infogan:
                nn.init.xavier_uniform_(layer.weight)
            elif isinstance(layer, nn.Conv2d):
                nn.init.trunc_normal_(layer.weight, std=0.02, a=-0.04, b=0.04)
            else:
                nn.init.normal_(layer.weight, std=0.02)
