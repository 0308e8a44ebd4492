"""Train the balanced two-stage VAE on CelebA 64x64 (Asperti & Trentin 2020).

Paper settings (preset "celeba"): 70 + 140 epochs, batch 100, meant for a GPU.
Quick check on a few images: ``python train_celeba.py --smoke``.
Local data: ``--data-dir`` holding ``img_align_celeba/`` and
``list_eval_partition.txt``.
"""

import argparse

from vae_balance.cli import main as cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_train_arguments(parser, default_preset="celeba")
    cli.run_train(parser.parse_args())
