"""``python -m vae_balance``: see vae_balance/cli.py."""

import sys

from vae_balance.cli import main

if __name__ == "__main__":
    sys.exit(main())
