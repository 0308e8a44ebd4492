"""Train the balanced two-stage VAE on CIFAR-10 (Asperti & Trentin 2020).

Paper settings (preset "cifar10"): 700 + 1400 epochs, batch 100, meant for a
GPU. Quick check on a few images: ``python train_cifar.py --smoke``.
Local data: ``--data-dir`` pointing at ``cifar-10-batches-py/``.
"""

import argparse

from vae_balance.cli import main as cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_train_arguments(parser, default_preset="cifar10")
    cli.run_train(parser.parse_args())
