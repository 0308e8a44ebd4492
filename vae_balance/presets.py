"""Deprecated location of the run configurations: use `vae_balance.config`.

A thin re-export kept for one release, so that ``from vae_balance.presets
import PRESETS, VAEConfig, get_preset`` keeps working. New code imports them
from `vae_balance.config` (or from `vae_balance` itself).
"""

from vae_balance.config import PRESETS, VAEConfig, get_preset

__all__ = ["PRESETS", "VAEConfig", "get_preset"]
