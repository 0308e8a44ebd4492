"""``python -m vae_balance``: see vae_balance/cli/main.py."""

import sys

from vae_balance.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
