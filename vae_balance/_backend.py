"""The Keras backend check: vae_balance runs on Keras' TensorFlow backend only.

TF-free and imported first by ``vae_balance/__init__.py``, before Keras: with
another backend the package would import, then fail deep inside ``fit``
(tf.GradientTape, tf.data, tf.distribute, SavedModel export). Keras 3 picks
its backend once, at its first import, from ``KERAS_BACKEND``, else the
``"backend"`` of ``keras.json`` in ``$KERAS_HOME`` (else ``~/.keras``), else
TensorFlow; `configured_backend` reads the same places without importing
Keras (another backend's import may itself fail, e.g. jax not installed).
"""

import json
import os
import sys

FIX = (
    "Run with the environment variable KERAS_BACKEND=tensorflow (e.g. "
    "`KERAS_BACKEND=tensorflow python -m vae_balance ...`), or set "
    "os.environ['KERAS_BACKEND'] = 'tensorflow' before the first `import keras`."
)


def _keras_json():
    """Path of the keras.json Keras reads (keras/src/backend/config.py)."""
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        if not os.access(base, os.W_OK):
            base = "/tmp"
        home = os.path.join(base, ".keras")
    return os.path.expanduser(os.path.join(home, "keras.json"))


def configured_backend():
    """``(backend, where it was chosen)`` of Keras, without importing it.

    Keras already imported: its live backend. Otherwise ``KERAS_BACKEND``,
    else keras.json's ``"backend"``, else ``"tensorflow"`` (Keras' order).
    """
    keras = sys.modules.get("keras")
    backend = getattr(getattr(keras, "config", None), "backend", None)
    if callable(backend):
        return backend(), "Keras was imported before vae_balance with it"
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "set by the KERAS_BACKEND variable"
    path = _keras_json()
    try:
        with open(path) as f:
            chosen = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        chosen = None
    if chosen:
        return chosen, f'set by "backend" in {path}'
    return "tensorflow", "the default"


def check_backend():
    """Raises an ImportError naming the backend and the fix unless TensorFlow."""
    backend, where = configured_backend()
    if backend != "tensorflow":
        raise ImportError(
            f"vae_balance needs Keras' TensorFlow backend, but Keras' backend is "
            f"{backend!r} ({where}). {FIX}"
        )
