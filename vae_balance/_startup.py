"""Command-line start-up: TensorFlow without its screen of start-up logs.

TF-free, and imported first by ``vae_balance/__init__.py``, so it runs before
TensorFlow loads. It acts only for the command-line entry points (``python -m
vae_balance``, ``vae-balance``, ``train_cifar.py``, ``train_celeba.py``);
``import vae_balance`` in user code leaves TensorFlow's logging alone.
"""

import os
import sys

ENTRY_POINTS = ("vae-balance", "train_cifar.py", "train_celeba.py")


def is_command_line():
    """True in one of the package's command-line entry points.

    While ``python -m vae_balance`` imports the package, ``sys.argv[0]`` is
    ``"-m"`` (Python's documented behaviour for -m).
    """
    first = sys.argv[0] if sys.argv else ""
    return first == "-m" or os.path.basename(first) in ENTRY_POINTS


def quiet_tensorflow_start():
    """Starts TensorFlow with errors only, unless the user chose a level.

    ``TF_CPP_MIN_LOG_LEVEL`` is set to 2 when unset. TensorFlow 2.21 writes
    its import and device-probe lines (oneDNN, CUDA stubs, cuInit on a
    machine without GPU) before that level takes effect, straight to file
    descriptor 2, so they go to /dev/null during the import and the device
    listing only; Python errors are raised after stderr is restored.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        # Imported here, with stderr silenced: TensorFlow's import is what
        # prints the log lines this module hides.
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
