"""vae_balance.config: VAEConfig, the presets, get_preset, config.json."""

import dataclasses
import json

import pytest

from vae_balance.config import PRESETS, VAEConfig, get_preset
from vae_balance.datasets import pipeline


def test_config_pad_must_match_the_loader_padding():
    for config in PRESETS.values():
        assert config.pad == pipeline.config_padding(config)
    with pytest.raises(ValueError, match=r"pad=0.*pads its images by 2.*Set pad=2"):
        get_preset("fashion_mnist", pad=0)
    with pytest.raises(ValueError, match="Set pad=18"):
        get_preset("fashion_mnist", image_shape=(64, 64, 1))
    assert get_preset("fashion_mnist", image_shape=(64, 64, 1), pad=18).pad == 18
    # Folders: the native size is unknown in advance, pad is the user's.
    assert get_preset("tiny", pad=3).pad == 3


def test_pad_is_derived_from_the_dataset_registry_when_omitted():
    config = VAEConfig(name="m", dataset="mnist", image_shape=(32, 32, 1))
    assert config.pad == 2
    assert VAEConfig(name="c", dataset="celeba", image_shape=(64, 64, 3)).pad == 0
    assert VAEConfig(name="f", dataset="folder", image_shape=(8, 8, 1)).pad == 0
    assert PRESETS["fashion_mnist"].pad == PRESETS["fashion_mnist_full"].pad == 2


def test_config_json_round_trip_and_older_runs():
    for config in PRESETS.values():
        saved = json.loads(json.dumps(config.to_dict()))
        assert isinstance(saved["pad"], int)
        assert VAEConfig.from_dict(saved) == config
    # An older run's config.json: the "celeba" dataset alias, extra keys.
    old = PRESETS["celeba"].to_dict() | {"dataset": "celeba", "unknown_key": 1}
    config = VAEConfig.from_dict(old)
    assert config.dataset == "celeba" and config.pad == 0
    assert pipeline.config_padding(config) == 0


def test_get_preset_overrides_and_errors():
    config = get_preset("cifar10", epochs=3, balance="learned")
    assert (config.epochs, config.balance) == (3, "learned")
    assert get_preset(config) is config
    assert get_preset("cifar10") is PRESETS["cifar10"]
    assert dataclasses.replace(PRESETS["tiny"], epochs=5).epochs == 5
    with pytest.raises(ValueError, match="Unknown preset 'nope'"):
        get_preset("nope")
    with pytest.raises(ValueError, match=r"Unknown config field\(s\) \['epoch'\]"):
        get_preset("cifar10", epoch=3)


def test_gamma_is_only_for_the_fixed_balance():
    fixed = get_preset("tiny", balance="fixed", gamma=0.5)
    assert fixed.gamma == 0.5
    with pytest.raises(ValueError, match="balance='running' sets gamma itself"):
        get_preset("tiny", gamma=0.5)
    # config.json of earlier runs holds gamma 1.0 whatever the balance.
    assert VAEConfig.from_dict(get_preset("tiny", balance="batch").to_dict()).gamma == 1
