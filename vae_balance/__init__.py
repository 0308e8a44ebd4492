"""vae_balance: balanced two-stage variational autoencoders in Keras 3.

Asperti & Trentin, "Balancing Reconstruction Error and Kullback-Leibler
Divergence in Variational Autoencoders" (IEEE Access 2020), on top of Dai &
Wipf's Two-Stage VAE.
"""

from vae_balance.builders import build_second_stage, build_vae
from vae_balance.model import BALANCES, BalancedVAE
from vae_balance.presets import PRESETS, VAEConfig, get_preset
from vae_balance.sampling import (
    TwoStageSampler,
    encode_dataset,
    export_sampler,
    latent_dataset,
)

__version__ = "0.1.0"

__all__ = [
    "BALANCES",
    "BalancedVAE",
    "PRESETS",
    "TwoStageSampler",
    "VAEConfig",
    "build_second_stage",
    "build_vae",
    "encode_dataset",
    "export_sampler",
    "get_preset",
    "latent_dataset",
]
