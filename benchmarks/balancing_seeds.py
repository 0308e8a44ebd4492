"""The balancing comparison over several seeds: ``compare_balancing.py --seeds``.

Every (strategy, seed) pair is one training run in its own work directory,
``--out/<strategy>-seed<seed>``, resumed where it stopped and skipped once
trained, and evaluated right after with `vae_balance.evaluation.evaluate_workdir`
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

The report (``compare_balancing_seeds.{json,md,png}`` in ``--results``):

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

import numpy as np
import seed_statistics
from common import describe_machine

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


def read_record(path, args):
    """The record in ``path``, or None when the run has not finished.

    Raises:
        RecordError: the record was made with another budget; nothing is
            overwritten, the comparison stops and says how to keep both.
    """
    record_path = os.path.join(path, "record.json")
    if not os.path.exists(record_path):
        return None
    with open(record_path) as f:
        record = json.load(f)
    if record["budget"] != budget(args):
        raise RecordError(
            f"{record_path} was made with {record['budget']}, this comparison "
            f"asks for {budget(args)}. Records of different budgets cannot be "
            "compared: pass --results (and --out) to another directory for "
            "this budget, or delete that record to remake it."
        )
    steps = np.load(os.path.join(path, "steps.npz"))
    record["steps"] = {key: steps[key] for key in steps.files}
    return record


def write_record(path, strategy, seed, args, evaluation, timing, steps):
    """Writes a finished run's record (see the module docstring); returns it.

    ``record.json`` is written last: a record without it is unfinished.
    """
    import compare_balancing as compare

    os.makedirs(path, exist_ok=True)
    dynamics = None
    if compare.STRATEGIES[strategy]["balance"] != "fixed":
        dynamics = compare.balance_dynamics(steps)
    kept = {k: v for k, v in evaluation.items() if k not in ("cache", "interpolations")}
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
        "machine": describe_machine(),
        "timing": timing,
        "dynamics": dynamics,
        "cell": cell(evaluation, timing, dynamics),
    }
    write_json(os.path.join(path, "record.json"), record)
    return {**record, "steps": curve}


def evaluate_run(workdir, args, seed, extractor):
    """`evaluate_workdir` of one run, reused while its evaluation is current."""
    from vae_balance.evaluation import evaluate_workdir

    return evaluate_workdir(
        workdir,
        num_images=args.fid_images,
        data_dir=args.data_dir,
        feature_extractor=extractor,
        seed=seed,
        verbose=0,
        gmm_components=0,
        nll_images=0,
        interpolation_pairs=0,
        shared_feature_cache=os.path.join(args.out, "features"),
    )


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


def report_lines(report):
    """The Markdown report."""
    seeds = report["seeds"]
    lines = [
        "# Balancing strategies over seeds (Fashion-MNIST)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"{report['machine']}; {report['epochs']} + {report['epochs2']} epochs "
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
        "| strategy | seeds | " + " | ".join(label for _, label, *_ in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for strategy, summary in report["summaries"].items():
        done = len(report["cells"].get(strategy, {}))
        cells = [_mean_std(summary.get(key), fmt) for key, _, _, fmt in METRICS]
        lines.append(f"| {strategy} | {done} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Paired per-seed differences",
        "",
        "Difference a - b per seed, its mean, the 95% Student-t interval of the "
        "mean and the exact two-sided sign test (with 3 seeds its smallest "
        "p-value is 0.25).",
        "",
        "| pair | metric | per seed | mean | 95% interval | sign test p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_metric in report["pairs"].items():
        for key, label, _, fmt in METRICS:
            pair = by_metric.get(key)
            if pair is None or "verdict" not in pair:
                continue
            interval = (
                "-"
                if pair["interval"] is None
                else f"[{pair['interval'][0]:{fmt}}, {pair['interval'][1]:{fmt}}]"
            )
            per_seed = ", ".join(f"{d:{fmt}}" for d in pair["differences"])
            lines.append(
                f"| {name} | {label} | {per_seed} | {pair['mean']:{fmt}} | "
                f"{interval} | {pair['sign_test_p']:.2g} | {pair['verdict']} |"
            )
    lines += ["", "## Every run", ""]
    lines.append(
        "| strategy | seed | " + " | ".join(lab for _, lab, *_ in METRICS) + " |"
    )
    lines.append("|---|---|" + "---|" * len(METRICS))
    for strategy, by_seed in report["cells"].items():
        for seed, values in sorted(by_seed.items(), key=lambda item: int(item[0])):
            cells = [
                "-" if values.get(key) is None else f"{values[key]:{fmt}}"
                for key, _, _, fmt in METRICS
            ]
            lines.append(f"| {strategy} | {seed} | " + " | ".join(cells) + " |")
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
    from compare_balancing import save_figure

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
    return save_figure(fig, path)


def write_report(args, command, started, records):
    """The report (JSON, Markdown, PNG) of the records so far; returns it."""
    cells = {
        strategy: {seed: record["cell"] for seed, record in by_seed.items()}
        for strategy, by_seed in records.items()
    }
    summaries, pairs = summarise_cells(cells)
    curve = plot_ratio_bands(
        records, os.path.join(args.results, "compare_balancing_seeds.png")
    )
    report = {
        "command": command,
        "machine": describe_machine(),
        "started_utc": started,
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        **budget(args),
        "seeds": list(args.seeds),
        "strategies": list(args.strategies),
        "records": os.path.relpath(args.records, args.results),
        "cells": cells,
        "summaries": summaries,
        "pairs": pairs,
        "curve": curve,
    }
    write_json(os.path.join(args.results, "compare_balancing_seeds.json"), report)
    text = "\n".join(report_lines(report))
    with open(os.path.join(args.results, "compare_balancing_seeds.md"), "w") as f:
        f.write(text)
    return report


def main(args, command):
    """Trains and evaluates the runs without a record, reports; returns it.

    Seed by seed (a stopped comparison has whole pairs); the report is
    rewritten after every new record.
    """
    import compare_balancing as compare

    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    if args.records is None:
        args.records = os.path.join(args.results, "compare_balancing_seeds")
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    records = {strategy: {} for strategy in args.strategies}
    for seed in args.seeds:
        for strategy in args.strategies:
            record = read_record(run_dir(args.records, strategy, seed), args)
            if record is not None:
                records[strategy][seed] = record
    missing = [
        (strategy, seed)
        for seed in args.seeds
        for strategy in args.strategies
        if seed not in records[strategy]
    ]
    print(
        f"{len(args.seeds) * len(args.strategies) - len(missing)} runs recorded in "
        f"{args.records}; {len(missing)} to train and evaluate: "
        + (", ".join(f"{s}-seed{seed}" for s, seed in missing) or "none"),
        flush=True,
    )
    extractor = None
    for strategy, seed in missing:
        workdir = run_dir(args.out, strategy, seed)
        timing = compare.train_strategy(strategy, args, seed=seed, workdir=workdir)
        if extractor is None:
            from vae_balance.inception import get_feature_extractor

            extractor = get_feature_extractor()
        print(f"[{strategy}, seed {seed}] evaluating {workdir}", flush=True)
        evaluation = evaluate_run(workdir, args, seed, extractor)
        records[strategy][seed] = write_record(
            run_dir(args.records, strategy, seed),
            strategy,
            seed,
            args,
            evaluation,
            timing,
            compare.read_steps(workdir),
        )
        write_report(args, command, started, records)
        print(f"[{strategy}, seed {seed}] recorded", flush=True)
    report = write_report(args, command, started, records)
    print("\n".join(report_lines(report)))
    return report
