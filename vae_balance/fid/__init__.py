"""The FID wing: the standard FID Inception network in Keras 3, its weights.

Public names: `get_feature_extractor` (`vae_balance.fid.inception`),
`load_fid_inception` (`vae_balance.fid.convert`), `FeatureCache`
(`vae_balance.fid.feature_cache`).
"""

from vae_balance.fid.convert import load_fid_inception
from vae_balance.fid.feature_cache import FeatureCache
from vae_balance.fid.inception import get_feature_extractor

__all__ = ["FeatureCache", "get_feature_extractor", "load_fid_inception"]
