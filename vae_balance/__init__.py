"""vae_balance: balanced two-stage variational autoencoders in Keras 3.

Asperti & Trentin, "Balancing Reconstruction Error and Kullback-Leibler
Divergence in Variational Autoencoders" (IEEE Access 2020), on top of Dai &
Wipf's Two-Stage VAE.
"""

from vae_balance import _backend, _startup

_backend.check_backend()  # before Keras loads: TensorFlow's backend only
if _startup.is_command_line():
    _startup.quiet_tensorflow_start()

from vae_balance._version import __version__ as __version__  # noqa: E402
from vae_balance.config import PRESETS, VAEConfig, get_preset  # noqa: E402
from vae_balance.export.savedmodel import export_sampler  # noqa: E402
from vae_balance.model.balancing import BALANCES  # noqa: E402
from vae_balance.model.batchnorm import check_batchnorm, recalibrate_batchnorm  # noqa: E402
from vae_balance.model.builders import build_second_stage, build_vae  # noqa: E402
from vae_balance.model.schedules import StaircaseSchedule  # noqa: E402
from vae_balance.model.vae import BalancedVAE, paper_adam  # noqa: E402
from vae_balance.sampling.two_stage import (  # noqa: E402
    TwoStageSampler,
    encode_dataset,
    latent_dataset,
)
from vae_balance.training.user_run import train  # noqa: E402

__all__ = [
    "BALANCES",
    "BalancedVAE",
    "PRESETS",
    "StaircaseSchedule",
    "TwoStageSampler",
    "VAEConfig",
    "build_second_stage",
    "check_batchnorm",
    "build_vae",
    "encode_dataset",
    "export_sampler",
    "get_preset",
    "latent_dataset",
    "paper_adam",
    "recalibrate_batchnorm",
    "train",
]
