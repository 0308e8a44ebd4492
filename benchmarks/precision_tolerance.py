"""How far ``--precision mixed_bfloat16`` moves a training run, against a seed.

The opt-in bfloat16 mode (bfloat16 activations; float32 weights, BatchNorm
statistics, losses, gamma and running MSE) is 1.6x the float32 step of the
paper-size networks on this CPU (throughput.py). This benchmark states its
tolerance: it trains the paper's CIFAR-10 network (preset
``fashion_mnist_full``: the cifar10 architecture on real Fashion-MNIST
images) three times with the package's own job,

- float32, seed 0 (the reference);
- float32, seed 1 (what changing the seed alone does);
- mixed_bfloat16, seed 0 (same initial weights, data order and noise as the
  reference),

and compares what the job leaves: the batch MSE and gamma^2 over the last
100 stage-1 steps, the held-out MSE of the last epoch and the held-out MSE
in inference mode after the BatchNorm recalibration. The tolerance is met
where bfloat16 moves a number by no more than the seed does.

    python benchmarks/precision_tolerance.py      # ~25 min on the idle 2-core machine

Each run is a work directory under ``--out`` (resumed, skipped once done);
the report is ``precision_tolerance.{json,md,png}`` in ``--results``.
"""

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np
from common import describe_machine

from vae_balance.files import write_json

RUNS = (("float32", 0), ("float32", 1), ("mixed_bfloat16", 0))
REFERENCE, SEED_PEER, CANDIDATE = RUNS
# (key, label, format)
METRICS = (
    ("batch_mse_tail", "batch MSE, last 100 steps", ".5f"),
    ("gamma2_tail", "gamma^2, last 100 steps", ".5f"),
    ("val_mse", "held-out MSE, last epoch", ".5f"),
    ("inference_mse", "held-out MSE, inference mode (recalibrated BN)", ".5f"),
)


def run_name(precision, seed):
    return f"{precision}-seed{seed}"


def train(args, precision, seed):
    """Trains one run with the package's CLI (its own process); its seconds."""
    workdir = os.path.join(args.out, run_name(precision, seed))
    timing_path = os.path.join(workdir, "benchmark_timing.json")
    if os.path.exists(timing_path):
        with open(timing_path) as f:
            return json.load(f)["seconds"]
    command = [
        sys.executable, "-m", "vae_balance", "train",
        "--preset", args.preset,
        "--epochs", str(args.epochs), "--epochs2", "1",
        *(["--limit", str(args.limit)] if args.limit else []),
        "--seed", str(seed),
        "--precision", precision,
        "--grid-every", "1000",
        "--workdir", workdir,
    ]  # fmt: skip
    print(f"[{run_name(precision, seed)}] {shlex.join(command)}", flush=True)
    start = time.time()
    subprocess.run(command, check=True)
    seconds = time.time() - start
    write_json(timing_path, {"seconds": seconds})
    return seconds


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_metrics(workdir, tail=100):
    """What one run's job left, as METRICS names it."""
    steps = _rows(os.path.join(workdir, "steps_stage1.csv"))
    mse = np.array([float(row["mse"]) for row in steps])
    gamma = np.array([float(row["gamma"]) for row in steps])
    history = _rows(os.path.join(workdir, "history_stage1.csv"))
    with open(os.path.join(workdir, "batchnorm.json")) as f:
        batchnorm = json.load(f)["stage1"]
    return {
        "steps": len(steps),
        "batch_mse_tail": float(mse[-tail:].mean()),
        "gamma2_tail": float((gamma[-tail:] ** 2).mean()),
        "val_mse": float(history[-1]["val_mse"]),
        "inference_mse": float(batchnorm["val_mse_after"]),
        "curve": {"mse": mse.tolist(), "gamma2": (gamma**2).tolist()},
    }


def compare(metrics):
    """Per metric: the relative move of bfloat16 and of the seed, and the verdict.

    Args:
        metrics: ``{run name: run_metrics(...)}`` of the three RUNS.
    """
    reference = metrics[run_name(*REFERENCE)]
    rows = {}
    for key, *_ in METRICS:
        base = reference[key]
        by_precision = metrics[run_name(*CANDIDATE)][key] / base - 1
        by_seed = metrics[run_name(*SEED_PEER)][key] / base - 1
        rows[key] = {
            "bfloat16_vs_float32": by_precision,
            "seed1_vs_seed0": by_seed,
            "within_seed_spread": abs(by_precision) <= abs(by_seed),
        }
    return rows


def plot(metrics, path, window=20):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    kernel = np.ones(window) / window
    for (precision, seed), style in zip(RUNS, ("-", ":", "--"), strict=True):
        curve = metrics[run_name(precision, seed)]["curve"]
        for ax, key in zip(axes, ("mse", "gamma2"), strict=True):
            smooth = np.convolve(curve[key], kernel, mode="valid")
            ax.plot(np.arange(window, len(curve[key]) + 1), smooth, style,
                    label=f"{precision}, seed {seed}")  # fmt: skip
    for ax, label in zip(axes, ("batch MSE", "gamma^2"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("stage-1 step (batch 100)")
        ax.set_ylabel(f"{label} ({window}-step average)")
        ax.legend()
    fig.suptitle("paper CIFAR-10 network on Fashion-MNIST: bfloat16 against a seed")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return os.path.basename(path)


def report_lines(report):
    lines = [
        "# bfloat16 against float32 and against a seed",
        "",
        f"Command: `{report['command']}`",
        "",
        f"{report['machine']}, {report['finished_utc']} UTC. Preset "
        f"`{report['preset']}` (the paper's CIFAR-10 network on Fashion-MNIST), "
        f"{report['epochs']} stage-1 epoch(s) on {report['limit'] or 60000} "
        "training images, batch 100, the package's job (`python -m vae_balance "
        "train`) in its own process per run. Relative moves against float32 "
        "seed 0; the tolerance holds where bfloat16 moves a number no more than "
        "the seed does.",
        "",
        "| | "
        + " | ".join(run_name(*run) for run in RUNS)
        + " | bfloat16 vs float32 | seed 1 vs seed 0 | within the seed's spread |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label, fmt in METRICS:
        values = " | ".join(
            f"{report['runs'][run_name(*run)][key]:{fmt}}" for run in RUNS
        )
        row = report["comparison"][key]
        within = "yes" if row["within_seed_spread"] else "**no**"
        lines.append(
            f"| {label} | {values} | {row['bfloat16_vs_float32']:+.1%} | "
            f"{row['seed1_vs_seed0']:+.1%} | {within} |"
        )
    times = ", ".join(
        f"{name} {values['job_seconds']:.0f} s"
        for name, values in report["runs"].items()
    )
    lines += ["", f"Whole job (both stages, export): {times}.", ""]
    lines += [f"![curves]({report['plot']})", ""]
    return lines


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fashion_mnist_full")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, help="first N training images only")
    parser.add_argument("--out", default=os.path.join("runs", "precision_tolerance"))
    parser.add_argument("--results", default=os.path.join(here, "results"))
    args = parser.parse_args(argv)
    command = shlex.join(
        ["python", "benchmarks/precision_tolerance.py"]
        + list(sys.argv[1:] if argv is None else argv)
    )
    os.makedirs(args.results, exist_ok=True)
    metrics = {}
    for precision, seed in RUNS:
        seconds = train(args, precision, seed)
        name = run_name(precision, seed)
        metrics[name] = run_metrics(os.path.join(args.out, name))
        metrics[name]["job_seconds"] = seconds  # the whole job, both stages
    report = {
        "command": command,
        "machine": describe_machine(),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "preset": args.preset,
        "epochs": args.epochs,
        "limit": args.limit,
        "runs": {
            name: {k: v for k, v in m.items() if k != "curve"}
            for name, m in metrics.items()
        },  # fmt: skip
        "comparison": compare(metrics),
        "plot": plot(metrics, os.path.join(args.results, "precision_tolerance.png")),
    }
    write_json(os.path.join(args.results, "precision_tolerance.json"), report)
    text = "\n".join(report_lines(report))
    with open(os.path.join(args.results, "precision_tolerance.md"), "w") as f:
        f.write(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
