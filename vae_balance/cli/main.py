"""``python -m vae_balance``: train, sample, export, fid, evaluate.

This module holds the parser, ``train`` and its flags (shared with the
top-level scripts); ``sample`` and ``export`` are in
`vae_balance.cli.sample`, ``fid`` and ``evaluate`` in
`vae_balance.cli.evaluate`.
"""

import argparse
import dataclasses
import math
import os
import shlex
import sys

from vae_balance.cli import evaluate as evaluation_commands
from vae_balance.cli import sample as sampler_commands
from vae_balance.config import PRESETS, get_preset
from vae_balance.datasets import registry
from vae_balance.model.balancing import BALANCES, RUNNING_RULES
from vae_balance.model.distribute import PRECISIONS, STRATEGIES
from vae_balance.training import job as training
from vae_balance.training import user_run
from vae_balance.training.options import DEFAULT_CHECKPOINT_MINUTES
from vae_balance.training.preemption import TrainingInterrupted
from vae_balance.training.stages import TrainingDiverged
from vae_balance.workdir import WorkdirError

# --smoke: the same preset's data and image size, narrow networks, one epoch
# of each stage on a few images: a quick check that everything runs.
SMOKE = {
    "epochs": 1,
    "epochs2": 1,
    "batch_size": 16,
    "base_filters": 8,
    "fc_dim": 64,
    "second_dim": 64,
}
SMOKE_IMAGES = 64


def add_train_arguments(parser, default_preset=None):
    """The training flags shared by the CLI and the top-level scripts."""
    _add_run_arguments(parser, default_preset)
    _add_user_data_arguments(parser)
    _add_config_arguments(parser)
    _add_job_arguments(parser)
    _add_batchnorm_arguments(parser)
    _add_device_arguments(parser)


def _add_run_arguments(parser, default_preset):
    """What to train, on which data, into which work directory."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        choices=sorted(PRESETS),
        help="configuration to train (see vae_balance/config.py); with --data "
        f"its schedule and widths (default {user_run.DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--data-dir",
        help="local data (CIFAR python batches, CelebA folder, IDX files, or "
        "a folder of images); default: tensorflow-datasets / known locations",
    )
    parser.add_argument(
        "--workdir", help="output directory; rerun to resume (default runs/PRESET)"
    )


def _add_user_data_arguments(parser):
    """Your own images (`vae_balance.training.user_run`)."""
    group = parser.add_argument_group("your own images (--data)")
    group.add_argument(
        "--data",
        help="your images: a folder of PNG/JPEG/BMP/WebP files (recursive), an "
        ".npz (key x) or .npy array (N, H, W[, C]), or tfds:NAME",
    )
    group.add_argument(
        "--image-size",
        help="resize every image to HxW (or N for NxN); default: the native "
        "size, zero-padded to what the network needs and cropped back on export",
    )
    group.add_argument(
        "--center-crop",
        action="store_true",
        help="with --image-size: crop the central region of that aspect "
        "ratio before resizing",
    )
    group.add_argument(
        "--val-fraction",
        type=float,
        help="share of the images held out for validation and evaluate when "
        "the data has no test split (default 0.1; a fixed seeded split)",
    )
    group.add_argument(
        "--network",
        choices=("resnet", "infogan"),
        help="resnet: padded to a power-of-two square; infogan: sides padded "
        "to multiples of 4 (default: the preset's)",
    )
    group.add_argument("--latent-dim", type=int, help="stage-1 latent size")
    group.add_argument(
        "--width", type=int, help="base_filters: the first convolutions' channels"
    )


def _add_config_arguments(parser):
    """Overrides of the preset's configuration, and the smoke run."""
    parser.add_argument("--epochs", type=int, help="stage-1 epochs")
    parser.add_argument("--epochs2", type=int, help="stage-2 epochs")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float, help="stage-1 learning rate")
    parser.add_argument(
        "--lr-epochs", type=int, help="stage 1: halve the learning rate every N epochs"
    )
    parser.add_argument(
        "--lr-epochs2", type=int, help="stage 2: halve the learning rate every N epochs"
    )
    parser.add_argument("--balance", choices=BALANCES, help="balancing strategy")
    parser.add_argument("--kl-weight", type=float, help="KL multiplier k")
    parser.add_argument(
        "--running-rule",
        choices=RUNNING_RULES,
        help="how the running gamma^2 follows the batch MSE: min (the paper's: "
        "it can only decrease), ema (a free average), ema_min",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--limit", type=int, help="use only the first N training images"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"quick check: narrow networks, {SMOKE_IMAGES} images, 1 epoch each",
    )


def _add_job_arguments(parser):
    """How the job runs: compilation, resumption, grids, bad files."""
    parser.add_argument(
        "--jit-compile",
        action="store_true",
        help="XLA-compile the train step (slower on CPU; drops the per-batch "
        "NaN and range checks)",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume a work directory made with a different configuration "
        "(not another --balance once a stage has trained)",
    )
    parser.add_argument(
        "--grid-every", type=int, default=5, help="epochs between image grids"
    )
    parser.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=DEFAULT_CHECKPOINT_MINUTES,
        help="write a step checkpoint inside an epoch every M minutes (default "
        "%(default)g; 0 = only at epoch ends): a killed run loses at most this",
    )
    parser.add_argument(
        "--checkpoint-steps",
        type=int,
        help="also write a step checkpoint every N steps",
    )
    parser.add_argument(
        "--snapshot-every",
        type=int,
        help="keep a copy of stage 1's checkpoint every N epochs in "
        "WORKDIR/snapshots/ (with its CPU seconds; for quality-against-"
        "compute studies: benchmarks/quality_study.py)",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable or wrongly sized image files (their count is "
        "logged) instead of stopping at the first one",
    )


def _add_batchnorm_arguments(parser):
    """The recalibration of stage 1's BatchNorm statistics after training."""
    parser.add_argument(
        "--no-recalibrate-bn",
        dest="recalibrate_bn",
        action="store_false",
        help="skip recomputing stage 1's BatchNorm statistics after training "
        "(on by default: short runs otherwise give grey inference images)",
    )
    parser.add_argument(
        "--recalibrate-batches",
        type=int,
        default=100,
        help="training batches read to recompute the BatchNorm statistics",
    )


def _add_device_arguments(parser):
    """The distribution strategy and the dtype policy."""
    parser.add_argument(
        "--strategy",
        default="default",
        choices=STRATEGIES,
        help="tf.distribute strategy: one device, all local GPUs, or one "
        "process per machine (TF_CONFIG); --batch-size is the global batch",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="Keras dtype policy (default: float32); losses, gamma and the "
        "running MSE stay float32",
    )


def _positive(name, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise SystemExit(f"error: --{name} must be positive, got {value}")


def config_from_args(args):
    """The resolved VAEConfig of the train flags."""
    overrides = {}
    for flag, field in (
        ("epochs", "epochs"),
        ("epochs2", "epochs2"),
        ("batch_size", "batch_size"),
        ("learning_rate", "learning_rate"),
        ("lr_epochs", "lr_epochs"),
        ("lr_epochs2", "lr_epochs2"),
        ("balance", "balance"),
        ("kl_weight", "kl_weight"),
        ("running_rule", "running_rule"),
        ("seed", "seed"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[field] = value
    for name in (
        "epochs",
        "epochs2",
        "batch_size",
        "learning_rate",
        "lr_epochs",
        "lr_epochs2",
        "limit",
    ):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.kl_weight is not None and not (
        math.isfinite(args.kl_weight) and args.kl_weight >= 0
    ):
        raise SystemExit(f"error: --kl-weight must be >= 0, got {args.kl_weight}")
    if getattr(args, "recalibrate_batches", None) is not None:
        _positive("recalibrate-batches", args.recalibrate_batches)
    if args.grid_every is not None:
        _positive("grid-every", args.grid_every)
    if getattr(args, "checkpoint_steps", None) is not None:
        _positive("checkpoint-steps", args.checkpoint_steps)
    if getattr(args, "snapshot_every", None) is not None:
        _positive("snapshot-every", args.snapshot_every)
    minutes = getattr(args, "checkpoint_minutes", None)
    if minutes is not None and not (math.isfinite(minutes) and minutes >= 0):
        raise SystemExit(f"error: --checkpoint-minutes must be >= 0, got {minutes}")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        # NumPy's and Keras's seeding take 0 <= seed < 2**32.
        raise SystemExit(f"error: --seed must be in [0, 2**32), got {args.seed}")
    if args.preset is None and not getattr(args, "data", None):
        raise SystemExit("error: give --preset NAME or --data PATH (your images)")
    network = getattr(args, "network", None)
    config = get_preset(args.preset or user_run.default_preset(network))
    if args.smoke:
        config = dataclasses.replace(config, **SMOKE)
    try:
        return get_preset(config, **overrides)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def run_train(args):
    """``train``: the whole two-stage job (`vae_balance.training.job.train`)."""
    config = config_from_args(args)
    data = {}
    if getattr(args, "data", None):  # your own images: the config is fitted to them
        config, data = user_run.for_command_line(args, config)
    workdir = args.workdir or os.path.join(
        "runs", config.name + ("-smoke" if args.smoke else "")
    )
    limit = args.limit or (SMOKE_IMAGES if args.smoke else None)
    try:
        result = training.train(
            config,
            workdir,
            data_dir=args.data_dir,
            limit=limit,
            jit_compile=args.jit_compile,
            allow_config_change=args.allow_config_change,
            grid_every=args.grid_every,
            skip_bad=args.skip_bad,
            strategy=args.strategy,
            precision=args.precision,
            recalibrate_bn=args.recalibrate_bn,
            recalibrate_batches=args.recalibrate_batches,
            checkpoint_minutes=args.checkpoint_minutes or None,
            checkpoint_steps=args.checkpoint_steps,
            snapshot_every=args.snapshot_every,
            **data,
        )
    except TrainingInterrupted as stop:
        print(f"\n[stop] {stop}", flush=True)
        print(f"[stop] to resume, run the same command:\n  {resume_command()}")
        sys.stdout.flush()
        raise SystemExit(stop.exit_status) from None
    except (
        TrainingDiverged,
        WorkdirError,  # and SaveError (disk full)
        registry.DataError,
        registry.DatasetNotFoundError,
    ) as error:
        skippable = config.dataset in ("folder", "celeb_a") and not data
        hint = " (--skip-bad skips bad image files)" * (
            isinstance(error, registry.DataError) and skippable and not args.skip_bad
        )
        raise SystemExit(f"error: {error}{hint}") from None
    print(f"Outputs in {os.path.abspath(result.workdir)}")
    return result


def resume_command():
    """The command line of this process, to print after a stop."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("vae_balance", "__main__.py")):
        argv = ["python", "-m", "vae_balance", *argv[1:]]
    elif argv and argv[0].endswith(".py"):
        argv = ["python", *argv]
    return shlex.join(argv)


# ---------------------------------------------------------------- parser
def build_parser():
    """The ``python -m vae_balance`` parser: train, sample, export, fid,
    evaluate."""
    parser = argparse.ArgumentParser(
        prog="python -m vae_balance",
        description="Balanced two-stage VAEs (Asperti & Trentin 2020) in Keras 3.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    train = subparsers.add_parser("train", help="train both stages and export")
    add_train_arguments(train)
    train.set_defaults(func=run_train)
    sampler_commands.add_subcommands(subparsers)
    evaluation_commands.add_subcommands(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
