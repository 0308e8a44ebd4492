"""The model wing: the balanced VAE, its networks, losses and BatchNorm care.

Public names: `BalancedVAE` (`vae_balance.model.vae`), `BALANCES`
(`vae_balance.model.balancing`), `build_vae`, `build_second_stage`
(`vae_balance.model.builders`), `recalibrate_batchnorm`, `check_batchnorm`
(`vae_balance.model.batchnorm`).
"""

from vae_balance.model.balancing import BALANCES
from vae_balance.model.batchnorm import check_batchnorm, recalibrate_batchnorm
from vae_balance.model.builders import build_second_stage, build_vae
from vae_balance.model.vae import BalancedVAE

__all__ = [
    "BALANCES",
    "BalancedVAE",
    "build_second_stage",
    "build_vae",
    "check_batchnorm",
    "recalibrate_batchnorm",
]
