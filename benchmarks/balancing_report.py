"""The balancing comparison's report: per-run cells, seed summaries, tables, plot.

`compare_balancing.py` makes and records the runs; this module turns the
records into the numbers and the Markdown of
benchmarks/results/compare_balancing_seeds.{json,md,png} (docs/benchmarks.md
reads them).
"""

import os

import common
import numpy as np
import seed_statistics
from common import markdown_table

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


def cell(evaluation, timing, dynamics):
    """The metrics of one (strategy, seed) run, as METRICS names them;
    ``train_stops``: times stopped and resumed (None in older records)."""
    values = {
        **{f"fid_{name}": evaluation[name]["fid"] for name in ("rec", "gen1", "gen2")},
        "precision_gen2": evaluation["gen2"]["precision"],
        "recall_gen2": evaluation["gen2"]["recall"],
        "reconstruction_mse": evaluation["reconstruction_mse"],
        "train_cpu_seconds": timing.get("cpu_seconds"),
        "train_seconds": timing.get("seconds"),
        "train_stops": timing.get("stops"),
    }
    for key in ("final_gamma2_over_mse", "steps_to_balance") if dynamics else ():
        values[key] = dynamics[key]
    return {k: (None if v is None else float(v)) for k, v in values.items()}


def summarise_cells(cells):
    """``{strategy: {metric: summary}}`` and ``{"a-b": {metric: pair}}`` of
    ``{strategy: {seed: {metric: value}}}``."""
    summaries = {}
    for strategy, by_seed in cells.items():
        summaries[strategy] = {}
        for key, *_ in METRICS:
            values = [c[key] for c in by_seed.values() if c.get(key) is not None]
            if values:
                summaries[strategy][key] = seed_statistics.summarise(values)
    pairs = {}
    for a, b in (pair for pair in PAIRS if set(pair) <= set(cells)):
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


# ------------------------------------------------------------------ report
def _value(value, fmt):
    return None if value is None else f"{value:{fmt}}"


def _mean_std(summary, fmt):
    if summary is None or summary["std"] is None:
        return summary and f"{summary['mean']:{fmt}} (1 seed)"
    return f"{summary['mean']:{fmt}} +- {summary['std']:{fmt}}"


def _pair_row(name, label, pair, fmt):
    interval = pair["interval"] and "[{:{f}}, {:{f}}]".format(*pair["interval"], f=fmt)
    differences = ", ".join(f"{d:{fmt}}" for d in pair["differences"])
    return [name, label, differences, f"{pair['mean']:{fmt}}", interval,
            f"{pair['sign_test_p']:.2g}", pair["verdict"]]  # fmt: skip


def _tables(report):
    """The three tables: means, paired differences, every run."""
    labels = [label for _, label, *_ in METRICS]
    means = [
        [strategy, len(report["cells"].get(strategy, {}))]
        + [_mean_std(summary.get(key), fmt) for key, _, _, fmt in METRICS]
        for strategy, summary in report["summaries"].items()
    ]
    pairs = [
        _pair_row(name, label, by_metric[key], fmt)
        for name, by_metric in report["pairs"].items()
        for key, label, _, fmt in METRICS
        if "verdict" in by_metric.get(key, {})
    ]
    runs = [
        [strategy, seed] + [_value(values.get(key), fmt) for key, _, _, fmt in METRICS]
        for strategy, by_seed in report["cells"].items()
        for seed, values in sorted(by_seed.items(), key=lambda i: int(i[0]))
    ]
    pair_headers = ["pair", "metric", "per seed", "mean", "95% interval",
                    "sign test p", "verdict"]  # fmt: skip
    return (
        markdown_table(["strategy", "seeds", *labels], means),
        markdown_table(pair_headers, pairs),
        markdown_table(["strategy", "seed", *labels], runs),
    )  # fmt: skip


def report_lines(report):
    """The Markdown report: the data only, docs/benchmarks.md reads it."""
    made = "no runs recorded yet"
    if report["records_finished_utc"]:
        first, last = report["records_finished_utc"]
        made = f"{'; '.join(report['machines'])}, finished {first} to {last} UTC"
    stopped = [
        f"{strategy}, seed {seed} ({values['train_stops']:.0f}x)"
        for strategy, by_seed in report["cells"].items()
        for seed, values in by_seed.items()
        if values.get("train_stops")
    ]
    means, pairs, runs = _tables(report)
    lines = [
        "# Balancing strategies over seeds (Fashion-MNIST)", "",
        f"Command: `{report['command']}`", "",
        f"Runs: {made}; {report['epochs']} + {report['epochs2']} epochs on "
        f"{report['train_images']} training images; seeds "
        f"{', '.join(map(str, report['seeds']))}; {report['fid_images']} test "
        f"images. Records: `{report['records']}/<strategy>-seed<seed>/`.", "",
        "## Mean +- standard deviation over seeds", "", means, "",
        "## Paired per-seed differences (a - b)", "", pairs, "",
        "## Every run", "", runs,
    ]  # fmt: skip
    if stopped:
        stopped = "; ".join(stopped)
        lines += ["", f"Stopped and resumed from their checkpoints: {stopped}."]
    if report.get("curve"):
        name = os.path.basename(report["curve"])
        lines += ["", f"![gamma^2 / batch MSE, mean and min-max over seeds]({name})"]
    return lines + [""]


def plot_ratio_bands(records, path, window=100):
    """gamma^2 / batch MSE (``window``-step moving averages) per strategy of
    ``{strategy: {seed: record}}``: the mean over seeds and min-max band."""
    fig, ax = common.figure(8, 4.5)
    for strategy, by_seed in records.items():
        curves = []
        for steps in (record["steps"] for record in by_seed.values()):
            if len(steps["mse"]) >= window:
                ratio = steps["gamma"].astype(np.float64) ** 2 / steps["mse"]
                smooth = np.convolve(ratio, np.ones(window) / window, mode="valid")
                curves.append((steps["step"][window - 1 :], smooth))
        if curves:
            x, mean, low, high = seed_statistics.band(curves)
            (line,) = ax.plot(x, mean, label=f"{strategy} ({len(curves)} seeds)")
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25)
    if not ax.lines:
        return common.save_figure(fig, None)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set(
        yscale="log", xlabel="stage-1 step (batch 100)", ylabel="gamma^2 / batch MSE"
    )
    ax.set_title("fashion_mnist: balance over training, mean and min-max over seeds")
    ax.legend()
    return common.save_figure(fig, path)
