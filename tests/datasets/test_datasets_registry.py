"""vae_balance.datasets.registry: dataset specs, aliases, padding; the
re-export modules of the old layout; the TensorFlow-free configuration."""

import os
import subprocess
import sys

import pytest

from vae_balance.datasets import registry

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)


def test_padding_is_derived_from_the_native_and_network_shapes():
    specs = registry.DATASETS
    assert specs["fashion_mnist"].padding == specs["mnist"].padding == 2
    assert specs["cifar10"].padding == 0
    assert specs["celeb_a"].padding == 0  # cropped and resized, not padded
    assert specs["folder"].padding is None  # unknown in advance
    assert specs["fashion_mnist"].padding_for((64, 64, 1)) == 18
    assert registry.padding("fashion", (32, 32, 1)) == 2
    assert registry.padding("celeba", (128, 128, 3)) == 0
    assert registry.padding("imagenet", (32, 32, 3)) is None
    with pytest.raises(AttributeError):
        specs["mnist"].native_shape = (32, 32, 1)  # frozen


def test_canonical_names_and_aliases():
    assert registry.canonical_name("celeba") == "celeb_a"
    assert registry.canonical_name("celeb_a") == "celeb_a"
    assert registry.get_spec("cifar").name == "cifar10"
    assert registry.get_spec("nope") is None
    assert set(registry.ALIASES.values()) <= set(registry.DATASETS)


def test_registry_and_config_import_no_tensorflow():
    """The configuration depends on the registry only: no TensorFlow, no NumPy,
    no pipeline (run without vae_balance/__init__, which loads TensorFlow)."""
    code = (
        "import sys, types\n"
        "package = types.ModuleType('vae_balance')\n"
        f"package.__path__ = [{os.path.join(ROOT, 'vae_balance')!r}]\n"
        "sys.modules['vae_balance'] = package\n"
        "import vae_balance.config\n"
        "import vae_balance.datasets.registry\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'numpy', 'keras')]\n"
        "assert not heavy, heavy\n"
        "assert 'vae_balance.datasets.pipeline' not in sys.modules\n"
        "assert vae_balance.config.PRESETS['fashion_mnist'].pad == 2\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
