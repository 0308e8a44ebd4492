"""Run configurations: `VAEConfig`, the `PRESETS` and `get_preset`.

A preset is a document: every number a run depends on. Override fields with
``dataclasses.replace(PRESETS["cifar10"], epochs=10)`` or the keyword
arguments of `get_preset`.

TensorFlow-free: it depends only on `vae_balance.datasets.registry` (for the
padding); the data pipeline depends on this module, never the reverse.
"""

import dataclasses

from vae_balance.datasets.registry import pad_value, padding

NETWORKS = ("resnet", "infogan")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Everything that defines a two-stage balanced VAE run.

    Attributes are grouped as networks, balancing, then the two training
    schedules (paper-notes sections 2-4).
    """

    name: str
    # "cifar10", "celeb_a" (alias "celeba"), "fashion_mnist", "mnist", "folder".
    dataset: str
    image_shape: tuple = (32, 32, 3)  # what the network sees (after padding)
    # The zero border the loader adds per side (28 -> 32: 2). None: derived
    # from the dataset registry (0 where unknown, e.g. folders). Kept as a
    # field for config.json; an explicit value must match the registry.
    # Your own images may be padded unevenly: (top, bottom, left, right).
    pad: int | tuple | None = None
    # Stage-1 network family: "resnet" (Dai & Wipf's ResNet, the paper's) or
    # "infogan" (Dai & Wipf's InfoGAN-like net, the anchor of their Table 1:
    # base_filters and 2 base_filters convolution channels, fc_dim units).
    network: str = "resnet"
    # Infogan only: spectral norm on the encoder's layers; the encoder's
    # sigma as "softplus" (1e-6 + softplus, the anchor's) or "exp" (log sigma).
    spectral_norm: bool = True
    latent_sigma: str = "exp"
    # Stage-1 ResNet (Dai & Wipf).
    base_filters: int = 32
    num_scales: int = 3
    latent_dim: int = 64
    fc_dim: int = 512
    max_filters: int = 1024
    bn_momentum: float = 0.999  # not the Keras default 0.99
    bn_epsilon: float = 1e-5  # not the Keras default 1e-3
    # Stage-2 dense VAE.
    second_dim: int = 2048
    second_depth: int = 3
    # Balancing.
    balance: str = "running"
    # None: the reference code's (2 * side / latent_dim) ** 2; see kl_weight().
    kl_weight: float | None = None
    momentum: float = 0.99  # of the running MSE: about 100 steps of memory
    running_rule: str = "min"
    # The constant gamma of balance="fixed" (BalancedVAE's fixed_gamma); the
    # other balances set gamma themselves and refuse another value than 1.
    gamma: float = 1.0
    min_gamma: float = 1e-3  # floor: the reconstruction weight stays finite
    # Training: batch 100, Adam(0.9, 0.999, 1e-8), lr halved every lr_epochs.
    batch_size: int = 100
    adam_epsilon: float = 1e-8  # not the Keras default 1e-7
    epochs: int = 700
    learning_rate: float = 1e-4
    lr_epochs: int = 250
    epochs2: int = 1400
    learning_rate2: float = 1e-4
    lr_epochs2: int = 400
    seed: int = 0
    # Your own images (`vae_balance.datasets.user_data`): where they are and
    # which are held out (kind, path, files' sha256, counts, native shape);
    # None for the presets' datasets.
    data: dict | None = dataclasses.field(default=None, hash=False)

    def __post_init__(self):
        if self.network not in NETWORKS:
            raise ValueError(
                f"Config {self.name!r}: network={self.network!r}; valid: "
                f"{', '.join(NETWORKS)}."
            )
        if self.latent_sigma not in ("exp", "softplus"):
            raise ValueError(
                f"Config {self.name!r}: latent_sigma={self.latent_sigma!r}; "
                "valid: 'exp', 'softplus'."
            )
        if self.balance != "fixed" and self.gamma != 1.0:
            raise ValueError(
                f"Config {self.name!r}: gamma={self.gamma} is the constant of "
                f"balance='fixed', but balance={self.balance!r} sets gamma "
                "itself and would ignore it: leave gamma at 1.0, or set "
                "balance='fixed'."
            )
        # The loader derives its padding from the dataset's native size; pad
        # (what plots, sample and evaluate crop off) must say the same.
        expected = padding(self.dataset, self.image_shape)
        if self.pad is not None:
            object.__setattr__(self, "pad", pad_value(self.pad))
        if self.pad is None:
            object.__setattr__(self, "pad", expected or 0)
        elif expected is not None and self.pad != expected:
            raise ValueError(
                f"Config {self.name!r}: pad={self.pad}, but the {self.dataset} "
                f"loader pads its images by {expected} pixels per side to reach "
                f"image_shape {tuple(self.image_shape)}. Set pad={expected}."
            )

    @property
    def side(self):
        """The network's image height (= width)."""
        return self.image_shape[0]

    def resolved_kl_weight(self):
        """The KL multiplier k: explicit, or (2 * side / latent_dim) ** 2."""
        if self.kl_weight is not None:
            return float(self.kl_weight)
        return (2.0 * self.side / self.latent_dim) ** 2

    def to_dict(self):
        """The fields as written to a run's ``config.json``, plus the
        ``resolved_kl_weight``."""
        config = dataclasses.asdict(self)
        config["image_shape"] = list(self.image_shape)
        if isinstance(self.pad, tuple):
            config["pad"] = list(self.pad)
        config["resolved_kl_weight"] = self.resolved_kl_weight()
        return config

    @classmethod
    def from_dict(cls, config):
        """A config from `to_dict`'s output (a run's ``config.json``); unknown
        keys are ignored, a missing ``pad`` is derived, ``data`` is kept."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.items() if k in fields}
        values["image_shape"] = tuple(values["image_shape"])
        return cls(**values)


PRESETS = {
    # The paper's CIFAR-10 run: 5.19M stage-1 parameters, k = 1. About 16 min
    # per epoch on 2 CPU cores: meant for a GPU (700 + 1400 epochs).
    "cifar10": VAEConfig(name="cifar10", dataset="cifar10"),
    # The paper's CelebA 64x64 run: 19.3M stage-1 parameters, k = 4.
    "celeba": VAEConfig(
        name="celeba",
        dataset="celeb_a",
        image_shape=(64, 64, 3),
        num_scales=4,
        second_dim=4096,
        epochs=70,
        learning_rate=5e-5,
        lr_epochs=60,
        epochs2=140,
        learning_rate2=5e-5,
        lr_epochs2=120,
    ),
    # The README's main job on 2 CPU cores: Fashion-MNIST padded to 32x32x1,
    # the cifar10 architecture with a quarter of the filters and a short
    # schedule. `python -m vae_balance train --preset fashion_mnist`.
    "fashion_mnist": VAEConfig(
        name="fashion_mnist",
        dataset="fashion_mnist",
        image_shape=(32, 32, 1),
        base_filters=8,
        latent_dim=32,
        fc_dim=256,
        # BatchNorm momentum: the paper's 0.999. Its moving statistics would
        # still hold 0.999**2400 = 9% of their initial values after this
        # schedule; the job recomputes them after stage 1 (precise BN).
        second_dim=512,
        kl_weight=1.0,
        epochs=4,
        learning_rate=1e-3,
        lr_epochs=2,
        epochs2=8,
        learning_rate2=1e-3,
        lr_epochs2=4,
    ),
    # Dai & Wipf's own setting for their Table 1 row (Fashion-MNIST, 2-Stage
    # VAE, FID 29.3): the Infogan network at the native 28x28 (no padding),
    # latent 64, batch 64, Adam 1e-4 halved every 150 of 400 epochs; stage 2
    # three dense layers of 1024, 1e-4 halved every 300 of 800 epochs.
    # Stage 1: 13,331,585 trainable parameters (encoder 6,689,344 with
    # spectral norm, decoder 6,642,241); stage 2: 4,540,608.
    # `--balance learned` is Dai & Wipf's model itself.
    "fashion_mnist_infogan": VAEConfig(
        name="fashion_mnist_infogan",
        dataset="fashion_mnist",
        image_shape=(28, 28, 1),
        network="infogan",
        spectral_norm=True,
        latent_sigma="softplus",
        base_filters=64,
        fc_dim=1024,
        latent_dim=64,
        second_dim=1024,
        second_depth=3,
        kl_weight=1.0,
        batch_size=64,
        epochs=400,
        learning_rate=1e-4,
        lr_epochs=150,
        epochs2=800,
        learning_rate2=1e-4,
        lr_epochs2=300,
    ),
    # The same data with the paper-size cifar10 network: for a GPU.
    "fashion_mnist_full": VAEConfig(
        name="fashion_mnist_full",
        dataset="fashion_mnist",
        image_shape=(32, 32, 1),
        epochs=100,
        lr_epochs=40,
        epochs2=200,
        lr_epochs2=80,
    ),
    # For tests and smoke runs: 8x8x1 images, a few filters, seconds per run.
    "tiny": VAEConfig(
        name="tiny",
        dataset="folder",  # --data-dir: a folder of 8x8 images
        image_shape=(8, 8, 1),
        base_filters=4,
        num_scales=2,
        latent_dim=4,
        fc_dim=16,
        second_dim=16,
        kl_weight=1.0,
        batch_size=8,
        epochs=2,
        learning_rate=1e-3,
        lr_epochs=1,
        epochs2=2,
        learning_rate2=1e-3,
        lr_epochs2=1,
    ),
}


def get_preset(preset, **overrides):
    """A `VAEConfig` from a preset name or config, with fields replaced.

    Raises:
        ValueError: for an unknown preset name (the valid ones are listed) or
            an unknown field.
    """
    if isinstance(preset, VAEConfig):
        config = preset
    elif preset in PRESETS:
        config = PRESETS[preset]
    else:
        raise ValueError(
            f"Unknown preset {preset!r}. Valid presets: {', '.join(PRESETS)}."
        )
    fields = {f.name for f in dataclasses.fields(VAEConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"Unknown config field(s) {unknown}. Valid fields: {sorted(fields)}."
        )
    return dataclasses.replace(config, **overrides) if overrides else config
