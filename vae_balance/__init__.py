"""vae_balance: balanced two-stage variational autoencoders in Keras 3.

Asperti & Trentin, "Balancing Reconstruction Error and Kullback-Leibler
Divergence in Variational Autoencoders" (IEEE Access 2020), on top of Dai &
Wipf's Two-Stage VAE.
"""

import importlib

# Public names and the module that defines each. They are imported on first
# use, so `python -m vae_balance` can configure TensorFlow's logging before
# TensorFlow loads (vae_balance/cli.py).
_EXPORTS = {
    "build_second_stage": "builders",
    "build_vae": "builders",
    "BALANCES": "model",
    "BalancedVAE": "model",
    "PRESETS": "presets",
    "VAEConfig": "presets",
    "get_preset": "presets",
    "TwoStageSampler": "sampling",
    "encode_dataset": "sampling",
    "export_sampler": "sampling",
    "latent_dataset": "sampling",
    "recalibrate_batchnorm": "batchnorm",
    "check_batchnorm": "batchnorm",
}


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"vae_balance.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'vae_balance' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


__version__ = "0.1.0"

__all__ = [
    "BALANCES",
    "BalancedVAE",
    "PRESETS",
    "TwoStageSampler",
    "VAEConfig",
    "build_second_stage",
    "check_batchnorm",
    "build_vae",
    "encode_dataset",
    "export_sampler",
    "get_preset",
    "latent_dataset",
    "recalibrate_batchnorm",
]
