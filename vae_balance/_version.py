"""The package version, in a leaf module that imports nothing.

Modules that record the version (e.g. `vae_balance.export.savedmodel`'s metadata) import
it from here; ``vae_balance.__version__`` re-exports it.
"""

__version__ = "0.2.0"
