"""The balancing comparison over several seeds: ``compare_balancing.py --seeds``.

Every (strategy, seed) pair is one training run in its own work directory,
``--out/<strategy>-seed<seed>``, resumed where it stopped and skipped once
trained, and evaluated right after with `evaluation.protocol.evaluate_workdir`
on the first ``--fid-images`` test images (default 5,000): FID, KID,
precision and recall of REC, GEN-1 and GEN-2 and the reconstruction MSE
(features cached per run, the test images' once under ``--out/features``).

What a finished run leaves is its *record*, a small directory
``--records/<strategy>-seed<seed>/`` (by default next to the report, in
``benchmarks/results/compare_balancing_seeds/``, and committed): the
evaluation (``evaluation.json``), the training time and the balance
dynamics (``record.json``) and the per-step gamma and batch MSE of stage 1
(``steps.npz``, for the bands). A run with a record is neither trained nor
evaluated again, so the comparison can be stopped at any point, continued
in a later session or on another machine from a fresh clone (the work
directories are only needed for the run in progress), and split between
machines by copying records. The report is rewritten after every new
record, from the records alone.

This module holds the records, the balance dynamics and the report;
`compare_balancing.run_seeds` trains and evaluates the runs (this module
imports nothing of it). The report (``compare_balancing_seeds.{json,md,png}``
in ``--results``):

- every (strategy, seed) cell, with the training CPU time of the run;
- per strategy, the mean and standard deviation over seeds;
- ``running`` against ``learned`` and against ``batch``: the per-seed paired
  differences with a 95% Student-t interval and a sign test
  (`seed_statistics`), and the verdict they support;
- the curve the paper's argument rests on: gamma^2 / batch MSE over the
  stage-1 steps, per strategy, the mean over seeds with a min-max band.

    python benchmarks/compare_balancing.py --seeds 0 1 2 \\
        --strategies running,learned,batch

On the project's idle 2-core machine a run takes about 10 min of training
(12 + 24 epochs) and 10 min of evaluation (5,000 images per set through the
Inception network, plus 2 min once for the test images'): about 3 h for
the 9 runs.
"""

import json
import os
import time

import common
import numpy as np
import seed_statistics
from common import markdown_table

from vae_balance.files import write_json

DEFAULT_STRATEGIES = ("running", "learned", "batch")
DEFAULT_FID_IMAGES = 5000
PAIRS = (("running", "learned"), ("running", "batch"))
# (key, label, lower is better, format)
METRICS = (
    ("fid_rec", "REC FID", True, ".1f"),
    ("fid_gen1", "GEN-1 FID", True, ".1f"),
    ("fid_gen2", "GEN-2 FID", True, ".1f"),
    ("precision_gen2", "GEN-2 precision", False, ".3f"),
    ("recall_gen2", "GEN-2 recall", False, ".3f"),
    ("reconstruction_mse", "rec. MSE", True, ".5f"),
    ("final_gamma2_over_mse", "final gamma^2 / MSE", None, ".2f"),
    ("steps_to_balance", "steps to balance", True, ".0f"),
    ("train_cpu_seconds", "train CPU time (s)", None, ".0f"),
)


def balance_dynamics(steps, factor=2.0, window=100, tail=600):
    """How fast gamma^2 reaches the reconstruction error, from the step log.

    The batch MSE is smoothed by a ``window``-step moving average; returns the
    first step at which gamma^2 <= ``factor`` x that average (None: never),
    and the median of gamma^2 / batch MSE over the last ``tail`` steps.
    """
    if steps is None or len(steps["mse"]) < window:
        return None
    average = np.convolve(steps["mse"], np.ones(window) / window, mode="valid")
    gamma_squared = steps["gamma"][window - 1 :] ** 2
    within = np.nonzero(gamma_squared <= factor * average)[0]
    ratio = steps["gamma"] ** 2 / steps["mse"]
    return {
        "balance_factor": factor,
        "steps_to_balance": (
            int(steps["step"][window - 1 + within[0]]) if len(within) else None
        ),
        "final_gamma2_over_mse": float(np.median(ratio[-tail:])),
    }


def run_dir(out, strategy, seed):
    """The work directory (or record directory) of one (strategy, seed) run."""
    return os.path.join(out, f"{strategy}-seed{seed}")


def budget(args):
    """What a record must have been made with to stand for this comparison."""
    return {
        "epochs": args.epochs,
        "epochs2": args.epochs2,
        "train_images": args.limit or 60000,
        "fid_images": args.fid_images,
    }


class RecordError(ValueError):
    """A record that cannot stand for the run asked for."""


def _budget_differences(made, asked):
    return ", ".join(
        f"{key}: record {made.get(key)}, asked {value}"
        for key, value in asked.items()
        if made.get(key) != value
    )


def read_record(path, strategy, seed, args):
    """The record of (``strategy``, ``seed``) in ``path``, or None if unfinished.

    A directory without ``record.json`` is an unfinished record: the run is
    made again and overwrites it.

    Raises:
        RecordError: the record is unreadable, incomplete, of another run
            (a copied or renamed directory) or of another budget. Nothing is
            overwritten: the comparison stops and says what to do.
    """
    record_path = os.path.join(path, "record.json")
    if not os.path.exists(record_path):
        return None
    try:
        with open(record_path) as f:
            record = json.load(f)
        with np.load(os.path.join(path, "steps.npz")) as steps:
            record["steps"] = {key: steps[key] for key in steps.files}
        made, run = record["budget"], (record["strategy"], int(record["seed"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RecordError(
            f"{path} is an incomplete or unreadable record ({error!r}). Delete "
            "the directory to make that run again."
        ) from error
    if run != (strategy, seed):
        raise RecordError(
            f"{record_path} is the record of {run[0]}, seed {run[1]}, not of "
            f"{strategy}, seed {seed}: a copied or renamed directory? Move it "
            f"to {run_dir(os.path.dirname(path), *run)} or delete it."
        )
    if made != budget(args):
        raise RecordError(
            f"{record_path} was made with another budget "
            f"({_budget_differences(made, budget(args))}); records of different "
            "budgets cannot be compared. Pass --records (or --results) and --out "
            "to other directories for this budget, or delete that record to "
            "remake the run."
        )
    return record


def write_record(path, strategy, seed, args, evaluation, timing, steps, dynamics):
    """Writes a finished run's record (see the module docstring); returns it.

    ``dynamics``: `balance_dynamics` of ``steps`` (None for a fixed gamma).
    ``record.json`` is written last: a record without it is unfinished.

    Raises:
        RecordError: the evaluation or the training was not made with this
            comparison's budget (nothing is written).
    """
    made = {
        "epochs": timing["epochs"],
        "epochs2": timing["epochs2"],
        "train_images": timing.get("train_images", budget(args)["train_images"]),
        "fid_images": evaluation["num_images"],
    }
    if made != budget(args):
        raise RecordError(
            f"The run in {evaluation.get('workdir')} does not match this "
            f"comparison ({_budget_differences(made, budget(args))}); delete its "
            "work directory (--out) to train it again."
        )
    os.makedirs(path, exist_ok=True)
    dropped = ("cache", "interpolations", "workdir")  # no machine-specific paths
    kept = {k: v for k, v in evaluation.items() if k not in dropped}
    write_json(os.path.join(path, "evaluation.json"), kept)
    curve = {
        "step": steps["step"].astype(np.int32),
        "gamma": steps["gamma"].astype(np.float32),
        "mse": steps["mse"].astype(np.float32),
    }
    np.savez_compressed(os.path.join(path, "steps.npz"), **curve)
    record = {
        "strategy": strategy,
        "seed": seed,
        "budget": budget(args),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": common.describe_machine(),
        "timing": timing,
        "dynamics": dynamics,
        "cell": cell(evaluation, timing, dynamics),
    }
    write_json(os.path.join(path, "record.json"), record)
    return {**record, "steps": curve}


def all_records(args):
    """``{strategy: {seed: record}}`` of every record in ``--records``: the
    strategies of ``--strategies`` first, then any other recorded."""
    found = {}
    names = os.listdir(args.records) if os.path.isdir(args.records) else []
    for name in sorted(names):
        strategy, _, seed = name.rpartition("-seed")
        if not strategy or not seed.isdigit():
            continue
        path = os.path.join(args.records, name)
        record = read_record(path, strategy, int(seed), args)
        if record is not None:
            found.setdefault(strategy, {})[int(seed)] = record
    order = list(args.strategies) + sorted(set(found) - set(args.strategies))
    return {s: found[s] for s in order if s in found}


def cell(evaluation, timing, dynamics):
    """The metrics of one (strategy, seed) run, as METRICS names them."""
    values = {
        "fid_rec": evaluation["rec"]["fid"],
        "fid_gen1": evaluation["gen1"]["fid"],
        "fid_gen2": evaluation["gen2"]["fid"],
        "precision_gen2": evaluation["gen2"]["precision"],
        "recall_gen2": evaluation["gen2"]["recall"],
        "reconstruction_mse": evaluation["reconstruction_mse"],
        "train_cpu_seconds": timing.get("cpu_seconds"),
        "train_seconds": timing.get("seconds"),
        # Times the training was stopped and resumed (records of older
        # versions do not say: None).
        "train_stops": timing.get("stops"),
    }
    if dynamics:
        values["final_gamma2_over_mse"] = dynamics["final_gamma2_over_mse"]
        values["steps_to_balance"] = dynamics["steps_to_balance"]
    return {k: (None if v is None else float(v)) for k, v in values.items()}


def summarise_cells(cells):
    """``{strategy: {metric: summary}}`` and ``{"a-b": {metric: pair}}``.

    Args:
        cells: ``{strategy: {seed: {metric: value}}}``.
    """
    summaries = {}
    for strategy, by_seed in cells.items():
        summaries[strategy] = {}
        for key, *_ in METRICS:
            values = [c[key] for c in by_seed.values() if c.get(key) is not None]
            if values:
                summaries[strategy][key] = seed_statistics.summarise(values)
    pairs = {}
    for a, b in PAIRS:
        if a not in cells or b not in cells:
            continue
        pairs[f"{a}-{b}"] = {}
        for key, _, lower_is_better, _ in METRICS:
            first = {s: c[key] for s, c in cells[a].items() if c.get(key) is not None}
            second = {s: c[key] for s, c in cells[b].items() if c.get(key) is not None}
            if not set(first) & set(second):
                continue
            pair = seed_statistics.paired_difference(first, second)
            if lower_is_better is not None:
                pair["verdict"] = seed_statistics.verdict(pair, a, b, lower_is_better)
            pairs[f"{a}-{b}"][key] = pair
    return summaries, pairs


def _mean_std(summary, fmt):
    if summary is None:
        return "-"
    if summary["std"] is None:
        return f"{summary['mean']:{fmt}} (1 seed)"
    return f"{summary['mean']:{fmt}} +- {summary['std']:{fmt}}"


def _pair_row(name, label, pair, fmt):
    interval = pair["interval"]
    if interval is not None:
        interval = f"[{interval[0]:{fmt}}, {interval[1]:{fmt}}]"
    return [
        name,
        label,
        ", ".join(f"{d:{fmt}}" for d in pair["differences"]),
        f"{pair['mean']:{fmt}}",
        interval,
        f"{pair['sign_test_p']:.2g}",
        pair["verdict"],
    ]


def report_lines(report):
    """The Markdown report."""
    seeds = report["seeds"]
    labels = [label for _, label, *_ in METRICS]
    made = "no runs recorded yet"
    if report["records_finished_utc"]:
        first, last = report["records_finished_utc"]
        machines = "; ".join(report["machines"])
        made = f"runs made on {machines}, finished {first} to {last} UTC"
    lines = [
        "# Balancing strategies over seeds (Fashion-MNIST)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"{made}; {report['epochs']} + {report['epochs2']} epochs "
        f"per run on {report['train_images']} training images; seeds "
        f"{', '.join(map(str, seeds))} (a seed sets the initial weights, the "
        "data order and the noise: runs with the same seed form a pair); "
        f"evaluation on the first {report['fid_images']} test images against "
        "as many generated ones (standard FID Inception features; precision "
        "and recall with k = 3). Each run's record (evaluation, training "
        f"time, step log) is in `{report['records']}/<strategy>-seed<seed>/`. "
        "Missing cells: runs not recorded yet (rerun the command to continue).",
        "",
        "## Mean +- standard deviation over seeds",
        "",
        markdown_table(
            ["strategy", "seeds", *labels],
            [
                [strategy, len(report["cells"].get(strategy, {}))]
                + [_mean_std(summary.get(key), fmt) for key, _, _, fmt in METRICS]
                for strategy, summary in report["summaries"].items()
            ],
        ),
        "",
        "## Paired per-seed differences",
        "",
        "Difference a - b per seed, its mean, the 95% Student-t interval of the "
        "mean and the exact two-sided sign test (with 3 seeds its smallest "
        "p-value is 0.25).",
        "",
        markdown_table(
            ["pair", "metric", "per seed", "mean", "95% interval", "sign test p",
             "verdict"],
            [
                _pair_row(name, label, by_metric[key], fmt)
                for name, by_metric in report["pairs"].items()
                for key, label, _, fmt in METRICS
                if "verdict" in by_metric.get(key, {})
            ],
        ),
        "",
        "## Every run",
        "",
        markdown_table(
            ["strategy", "seed", *labels],
            [
                [strategy, seed]
                + [
                    None if values.get(key) is None else f"{values[key]:{fmt}}"
                    for key, _, _, fmt in METRICS
                ]
                for strategy, by_seed in report["cells"].items()
                for seed, values in sorted(by_seed.items(), key=lambda i: int(i[0]))
            ],
        ),
    ]  # fmt: skip
    stopped = [
        f"{strategy}, seed {seed} ({values['train_stops']:.0f}x)"
        for strategy, by_seed in report["cells"].items()
        for seed, values in by_seed.items()
        if values.get("train_stops")
    ]
    if stopped:
        lines += [
            "",
            "Stopped and resumed from their checkpoints: "
            + "; ".join(stopped)
            + ". Their times add up the parts; the steps since the last "
            "checkpoint before a stop were made twice.",
        ]
    if report.get("curve"):
        lines += [
            "",
            f"![gamma^2 / batch MSE over seeds]({os.path.basename(report['curve'])})",
            "",
            "gamma^2 / batch MSE per stage-1 step (100-step moving averages), the "
            "mean over seeds (line) and their min-max (band); 1 = balanced.",
        ]
    return lines + [""]


def plot_ratio_bands(records, path, window=100):
    """gamma^2 / batch MSE per strategy: mean over seeds and min-max band.

    Args:
        records: ``{strategy: {seed: record}}`` (`read_record`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    plotted = False
    kernel = np.ones(window) / window
    for strategy, by_seed in records.items():
        curves = []
        for record in by_seed.values():
            steps = record["steps"]
            if len(steps["mse"]) < window:
                continue
            ratio = steps["gamma"].astype(np.float64) ** 2 / steps["mse"]
            smooth = np.convolve(ratio, kernel, mode="valid")
            curves.append((steps["step"][window - 1 :], smooth))
        if not curves:
            continue
        plotted = True
        x, mean, low, high = seed_statistics.band(curves)
        (line,) = ax.plot(x, mean, label=f"{strategy} ({len(curves)} seeds)")
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25)
    if not plotted:
        plt.close(fig)
        return None
    ax.set_yscale("log")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xlabel("stage-1 step (batch 100)")
    ax.set_ylabel("gamma^2 / batch MSE")
    ax.set_title("fashion_mnist: balance over training, mean and min-max over seeds")
    ax.legend()
    return common.save_figure(fig, path)


def write_report(args, command):
    """The report (JSON, Markdown, PNG) of every record in ``--records``.

    Its content depends on the records alone (and the command): a rerun
    with nothing new writes the same files.
    """
    records = all_records(args)
    for strategy in args.strategies:
        records.setdefault(strategy, {})
    cells = {
        strategy: {seed: record["cell"] for seed, record in sorted(by_seed.items())}
        for strategy, by_seed in records.items()
    }
    summaries, pairs = summarise_cells(cells)
    curve = plot_ratio_bands(
        records, os.path.join(args.results, "compare_balancing_seeds.png")
    )
    done = [record for by_seed in records.values() for record in by_seed.values()]
    finished = sorted(record["finished_utc"] for record in done)
    report = {
        "command": command,
        "machines": sorted({record["machine"] for record in done}),
        "records_finished_utc": [finished[0], finished[-1]] if finished else None,
        **budget(args),
        "seeds": sorted(set(args.seeds) | {s for c in cells.values() for s in c}),
        "strategies": list(records),
        "records": os.path.relpath(args.records, args.results),
        "cells": cells,
        "summaries": summaries,
        "pairs": pairs,
        "curve": curve,
    }
    stem = os.path.join(args.results, "compare_balancing_seeds")
    common.write_report(stem, report, report_lines(report))
    return report
