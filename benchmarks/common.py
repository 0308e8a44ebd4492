"""What the benchmark scripts share: the machine description of their reports.

The scripts run as ``python benchmarks/NAME.py``, so this folder is on
``sys.path`` and they import this module as ``common``.
"""

import json
import os
import platform
import shlex
import subprocess
import sys


def cpu_model():
    """The CPU's model name from /proc/cpuinfo ("AMD EPYC"), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None


def describe_machine():
    """``"x86_64 (AMD EPYC), 2 CPU cores, no GPU"``: the line each report
    starts from. Absolute speeds differ from one machine (and one day's
    neighbours on the host) to the next; ratios within one run are what the
    reports compare."""
    import tensorflow as tf  # the scripts parse their arguments before TF loads

    gpus = tf.config.list_physical_devices("GPU")
    accelerator = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
    model = cpu_model()
    arch = f"{platform.machine()} ({model})" if model else platform.machine()
    return f"{arch}, {os.cpu_count()} CPU cores, {accelerator}"


def command_line(script, argv=None):
    """``python benchmarks/<script> <arguments>``, as a report records it:
    ``argv`` (a ``main(argv)`` call's list) or else the process' own."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", f"benchmarks/{script}"] + arguments)


def run_worker(script, name, kwargs, env=None, label=None):
    """Runs ``script --worker name --kwargs <JSON>`` in a fresh Python
    process (its own thread pools) and returns the JSON result it prints
    last; raises RuntimeError with the end of its stderr if it fails.
    ``label`` names the worker in that error (default ``name``)."""
    command = [sys.executable, os.path.abspath(script), "--worker", name]
    command += ["--kwargs", json.dumps(kwargs)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise RuntimeError(f"worker {label or name} failed:\n{tail}")
    return json.loads(lines[-1])
