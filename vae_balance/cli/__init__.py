"""The command-line wing: ``python -m vae_balance`` (train, sample, export,
fid, evaluate). Public name: `main` (`vae_balance.cli.main`).
"""
