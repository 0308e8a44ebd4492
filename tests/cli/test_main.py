"""``python -m vae_balance``'s parser and `config_from_args`: flags, their
defaults, overrides of the preset, and the errors of bad values. No training:
`training.train` is replaced where a command would start one."""

import os

import pytest
from cli_helpers import cli_in_process

from vae_balance.cli import main as cli
from vae_balance.config import PRESETS, get_preset
from vae_balance.model.balancing import BALANCES, RUNNING_RULES
from vae_balance.training import job as training
from vae_balance.workdir import WorkdirError


def _args(*flags):
    return cli.build_parser().parse_args(["train", "--preset", "tiny", *flags])


def test_train_without_overrides_resolves_to_the_preset():
    args = _args()
    assert cli.config_from_args(args) == get_preset("tiny")
    assert (args.workdir, args.data_dir, args.limit) == (None, None, None)
    assert (args.grid_every, args.recalibrate_bn, args.recalibrate_batches) == (
        5,
        True,
        100,
    )
    assert (args.strategy, args.precision, args.skip_bad) == ("default", None, False)
    assert args.func is cli.run_train


def test_flags_override_the_presets_fields():
    args = _args(
        "--epochs", "3", "--epochs2", "4", "--batch-size", "2",
        "--learning-rate", "0.01", "--lr-epochs", "7", "--lr-epochs2", "9",
        "--balance", "batch", "--kl-weight", "0.5", "--seed", "11",
        "--running-rule", "ema",
    )  # fmt: skip
    config = cli.config_from_args(args)
    assert (config.epochs, config.epochs2, config.batch_size) == (3, 4, 2)
    assert (config.learning_rate, config.lr_epochs, config.lr_epochs2) == (
        0.01,
        7,
        9,
    )
    assert (config.balance, config.kl_weight, config.seed) == ("batch", 0.5, 11)
    assert config.running_rule == "ema"
    assert config.name == "tiny" and config.latent_dim == get_preset("tiny").latent_dim


def test_smoke_narrows_the_networks_and_explicit_flags_still_win():
    config = cli.config_from_args(_args("--smoke", "--epochs", "2"))
    assert config.epochs == 2  # the flag over the smoke run's 1
    smoke = {k: v for k, v in cli.SMOKE.items() if k != "epochs"}
    assert {k: getattr(config, k) for k in smoke} == smoke


def test_train_needs_a_preset_or_data_and_the_parser_a_command(capsys):
    args = cli.build_parser().parse_args(["train"])
    with pytest.raises(SystemExit, match="--preset NAME or --data PATH"):
        cli.config_from_args(args)
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args([])
    assert exit_.value.code == 2


@pytest.mark.parametrize(
    "flag, value, valid",
    [
        ("--preset", "imagenet", PRESETS),
        ("--balance", "adaptive", BALANCES),
        ("--running-rule", "max", RUNNING_RULES),
        ("--strategy", "tpu", ("default", "mirrored", "multiworker")),
        ("--precision", "float16", ("float32", "mixed_float16", "mixed_bfloat16")),
    ],
)
def test_unknown_choices_are_refused_listing_the_valid_ones(flag, value, valid, capsys):
    argv = ["train", "--preset", "tiny", flag, value]
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(argv)
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    assert f"invalid choice: '{value}'" in stderr
    assert all(name in stderr for name in valid)


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--epochs", "0"),
        ("--epochs2", "-1"),
        ("--learning-rate", "nan"),
        ("--learning-rate", "inf"),
        ("--learning-rate", "-0.001"),
        ("--lr-epochs", "0"),
        ("--kl-weight", "nan"),
        ("--kl-weight", "-1"),
        ("--batch-size", "0"),
        ("--limit", "0"),
        ("--grid-every", "0"),
        ("--recalibrate-batches", "0"),
        ("--checkpoint-steps", "0"),
        ("--checkpoint-minutes", "-1"),
        ("--snapshot-every", "0"),
        ("--seed", "-1"),
        ("--seed", "4294967296"),
    ],
)
def test_non_finite_or_out_of_range_values_are_refused(flag, value):
    with pytest.raises(SystemExit, match=f"error: {flag} must be .*got"):
        cli.config_from_args(_args(flag, value))


def test_cli_passes_strategy_precision_and_skip_bad_to_train(monkeypatch):
    seen = {}

    def train(config, workdir, **kwargs):
        seen.update(kwargs, config=config, workdir=workdir)
        raise WorkdirError("stop here")

    monkeypatch.setattr(training, "train", train)
    code, _ = cli_in_process(
        "train", "--preset", "tiny", "--strategy", "mirrored",
        "--precision", "mixed_float16", "--skip-bad", "--learning-rate", "0.01",
    )  # fmt: skip
    assert code == "error: stop here"
    assert (seen["strategy"], seen["precision"]) == ("mirrored", "mixed_float16")
    assert seen["skip_bad"] is True and seen["config"].learning_rate == 0.01
    code, _ = cli_in_process("train", "--preset", "tiny")
    assert (seen["strategy"], seen["precision"]) == ("default", None)
    assert seen["workdir"] == os.path.join("runs", "tiny")
    # --smoke: its own default work directory and a limit on the images.
    cli_in_process("train", "--preset", "tiny", "--smoke")
    assert seen["workdir"] == os.path.join("runs", "tiny-smoke")
    assert seen["limit"] == cli.SMOKE_IMAGES
    # --checkpoint-minutes 0: only at epoch ends (no timer).
    cli_in_process("train", "--preset", "tiny", "--checkpoint-minutes", "0")
    assert seen["checkpoint_minutes"] is None


def test_resume_command_names_the_module_or_the_script(monkeypatch):
    main = os.path.join("x", "vae_balance", "__main__.py")
    monkeypatch.setattr("sys.argv", [main, "train", "--preset", "tiny"])
    assert cli.resume_command() == "python -m vae_balance train --preset tiny"
    monkeypatch.setattr("sys.argv", ["train_cifar.py", "--workdir", "a b"])
    assert cli.resume_command() == "python train_cifar.py --workdir 'a b'"
