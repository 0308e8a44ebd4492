"""``import vae_balance`` refuses a Keras backend other than TensorFlow."""

import json
import os
import subprocess
import sys

import pytest

from vae_balance import _backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_vae_balance(**environ):
    env = {**os.environ, "PYTHONPATH": ROOT, **environ}
    env = {key: value for key, value in env.items() if value is not None}
    return subprocess.run(
        [sys.executable, "-c", "import vae_balance"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_with_keras_backend_jax_fails_at_once_naming_the_fix():
    # jax is not installed: Keras' own import would fail inside keras; the
    # check runs before Keras loads and says what to do instead.
    result = _import_vae_balance(KERAS_BACKEND="jax")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: vae_balance needs Keras' TensorFlow")
    assert "'jax' (set by the KERAS_BACKEND variable)" in last
    assert "KERAS_BACKEND=tensorflow" in last
    assert "No module named 'jax'" not in result.stderr


def test_backend_chosen_in_keras_json_is_named_with_its_file(tmp_path, monkeypatch):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    monkeypatch.delitem(sys.modules, "keras")  # as before the first import
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert _backend.configured_backend() == (
        "torch",
        f'set by "backend" in {tmp_path / "keras.json"}',
    )
    with pytest.raises(ImportError, match=r"'torch'.*KERAS_BACKEND=tensorflow"):
        _backend.check_backend()
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # the variable wins
    assert _backend.configured_backend()[0] == "tensorflow"
    _backend.check_backend()
    monkeypatch.delenv("KERAS_BACKEND")
    (tmp_path / "keras.json").write_text("{}")
    assert _backend.configured_backend() == ("tensorflow", "the default")


def test_a_keras_already_imported_is_asked_for_its_live_backend():
    assert _backend.configured_backend() == (
        "tensorflow",
        "Keras was imported before vae_balance with it",
    )
