"""What the benchmark scripts share: the machine and command line of their
reports, worker processes, timing, and the report writers (`markdown_table`,
the one table helper of every Markdown report; `write_report`; `figure`).

Not a script: the scripts run as ``python benchmarks/NAME.py`` and import it
as ``common``; it imports no other benchmark module. TensorFlow, matplotlib
and the package load inside the functions that need them, so that the
PyTorch worker processes (`torch_peer.py`) import this module without them.
"""

import json
import os
import platform
import shlex
import subprocess
import sys
import time


def describe_machine():
    """``"x86_64 (AMD EPYC), 2 CPU cores, no GPU"``: each report's first line."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    accelerator = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
    arch = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            models = [
                line.split(":", 1)[1].strip() for line in f if "model name" in line
            ]
        arch += f" ({models[0]})" if models and models[0] else ""
    except OSError:
        pass
    return f"{arch}, {os.cpu_count()} CPU cores, {accelerator}"


def command_line(script, argv=None):
    """``python benchmarks/<script> <arguments>``, as a report records it:
    ``argv`` (a ``main(argv)`` call's list) or else the process' own."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", f"benchmarks/{script}"] + arguments)


def run_worker(script, name, kwargs, label=None):
    """Runs ``script --worker name --kwargs <JSON>`` in a fresh Python
    process (its own thread pools) and returns the JSON result it prints
    last; raises RuntimeError with the end of its stderr if it fails.
    ``label`` names the worker in that error (default ``name``)."""
    command = [sys.executable, os.path.abspath(script), "--worker", name]
    command += ["--kwargs", json.dumps(kwargs)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise RuntimeError(f"worker {label or name} failed:\n{tail}")
    return json.loads(lines[-1])


def read_json(path):
    with open(path) as f:
        return json.load(f)


def markdown_table(headers, rows):
    """A Markdown table: the header row, its rule, one line per row; cells
    are written with ``str``, None as "-"."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = ("-" if cell is None else str(cell) for cell in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(path_stem, data, markdown):
    """Writes ``<path_stem>.json`` (``data``) and ``.md`` (``markdown``, a
    string or lines), each atomically; returns the Markdown text."""
    from vae_balance.files import atomic_write, write_json

    markdown = markdown if isinstance(markdown, str) else "\n".join(markdown)
    os.makedirs(os.path.dirname(path_stem) or ".", exist_ok=True)
    write_json(path_stem + ".json", data)
    atomic_write(path_stem + ".md", markdown)
    return markdown


def figure(width, height, columns=1):
    """``(fig, ax)`` of a new report figure (matplotlib's Agg backend); ``ax``
    is a tuple of ``columns`` axes if more than one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, height))


def save_figure(fig, path, dpi=100):
    """Lays out, writes (unless ``path`` is None) and closes a figure;
    returns ``path``."""
    import matplotlib.pyplot as plt

    if path is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def clock(call, warmup, repeats):
    """Calls ``call()`` ``warmup`` times, then ``repeats`` times one by one:
    ``(seconds of the warm-up calls, [seconds of each timed call])``."""
    start = time.perf_counter()
    for _ in range(warmup):
        call()
    first, times = time.perf_counter() - start, []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return first, times


def step_speed(first, times, warmup, batch_size):
    """A training timing's entries, from `clock`'s ``(first, times)``."""
    return {"warmup_steps": warmup, "timed_steps": len(times),
            "first_steps_seconds": round(first, 2),
            "seconds_per_step": sum(times) / len(times),
            "images_per_second": len(times) * batch_size / sum(times)}  # fmt: skip


def ratio(value):
    """``"2.50x"``, or "-" for None."""
    return "-" if value is None else f"{value:.2f}x"
