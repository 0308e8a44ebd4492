"""The balancing comparison over several seeds: ``compare_balancing.py --seeds``.

Every (strategy, seed) pair is one training run in its own work directory,
``--out/<strategy>-seed<seed>``, resumed where it stopped and skipped once
trained, so a long comparison can be stopped, continued later or split
between machines (copy the work directories back). Each run is then
evaluated with `vae_balance.evaluation.evaluate_workdir` on the first
``--fid-images`` test images (default 5,000): FID, KID, precision and recall
of REC, GEN-1 and GEN-2, the reconstruction MSE, on features cached per run
(the test images' once, under ``--out/features``), so a rerun only computes
what is new.

The report (``compare_balancing_seeds.{json,md,png}`` in ``--results``):

- every (strategy, seed) cell, with the training CPU time of the run;
- per strategy, the mean and standard deviation over seeds;
- ``running`` against ``learned`` and against ``batch``: the per-seed paired
  differences with a 95% Student-t interval and a sign test
  (`seed_statistics`), and the verdict they support;
- the curve the paper's argument rests on: gamma^2 / batch MSE over the
  stage-1 steps, per strategy, the mean over seeds with a min-max band.

    python benchmarks/compare_balancing.py --seeds 0 1 2 \\
        --strategies running,learned,batch      # ~4 h training + ~2 h FID here
"""

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
    """The work directory of one (strategy, seed) run."""
    return os.path.join(out, f"{strategy}-seed{seed}")


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
        "and recall with k = 3). Missing cells: runs not trained or evaluated "
        "yet (rerun the command to continue).",
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


def plot_ratio_bands(out, strategies, seeds, path, window=100):
    """gamma^2 / batch MSE per strategy: mean over seeds and min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from compare_balancing import read_steps, save_figure

    fig, ax = plt.subplots(figsize=(8, 4.5))
    plotted = False
    kernel = np.ones(window) / window
    for strategy in strategies:
        curves = []
        for seed in seeds:
            steps = read_steps(run_dir(out, strategy, seed))
            if steps is None or len(steps["mse"]) < window:
                continue
            ratio = steps["gamma"] ** 2 / steps["mse"]
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


def main(args, command):
    """Trains what is missing, evaluates, writes the report; returns it."""
    import compare_balancing as compare

    from vae_balance.inception import get_feature_extractor

    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    timings = {}
    for seed in args.seeds:  # seed by seed: a stopped run has whole pairs
        for strategy in args.strategies:
            workdir = run_dir(args.out, strategy, seed)
            timings[strategy, seed] = compare.train_strategy(
                strategy, args, seed=seed, workdir=workdir
            )
    extractor = get_feature_extractor()
    cells = {strategy: {} for strategy in args.strategies}
    for seed in args.seeds:
        for strategy in args.strategies:
            workdir = run_dir(args.out, strategy, seed)
            print(f"[{strategy}, seed {seed}] evaluating {workdir}", flush=True)
            evaluation = evaluate_run(workdir, args, seed, extractor)
            dynamics = None
            if compare.STRATEGIES[strategy]["balance"] != "fixed":
                dynamics = compare.balance_dynamics(compare.read_steps(workdir))
            cells[strategy][seed] = cell(evaluation, timings[strategy, seed], dynamics)
    summaries, pairs = summarise_cells(cells)
    curve = plot_ratio_bands(
        args.out,
        args.strategies,
        args.seeds,
        os.path.join(args.results, "compare_balancing_seeds.png"),
    )
    report = {
        "command": command,
        "machine": describe_machine(),
        "started_utc": started,
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "epochs": args.epochs,
        "epochs2": args.epochs2,
        "train_images": args.limit or 60000,
        "fid_images": args.fid_images,
        "seeds": list(args.seeds),
        "strategies": list(args.strategies),
        "cells": cells,
        "summaries": summaries,
        "pairs": pairs,
        "curve": curve,
    }
    write_json(os.path.join(args.results, "compare_balancing_seeds.json"), report)
    text = "\n".join(report_lines(report))
    with open(os.path.join(args.results, "compare_balancing_seeds.md"), "w") as f:
        f.write(text)
    print(text)
    return report
