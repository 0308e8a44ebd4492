"""What the benchmark scripts share: the machine description of their reports.

The scripts run as ``python benchmarks/NAME.py``, so this folder is on
``sys.path`` and they import this module as ``common``.
"""

import os
import platform


def describe_machine():
    """``"x86_64, 2 CPU cores, no GPU"``: the line each report starts from."""
    import tensorflow as tf  # the scripts parse their arguments before TF loads

    gpus = tf.config.list_physical_devices("GPU")
    accelerator = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {accelerator}"
