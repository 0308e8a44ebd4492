"""Per-step curves of several runs over one range of steps, side by side.

    python benchmarks/step_curves.py WORKDIR:LABEL [WORKDIR:LABEL ...] \
        --from-step 41229 --to-step 44976 --window 50 --out DIR

Reads each work directory's ``steps_stage1.csv`` (``--stage`` for stage 2),
averages ``mse``, ``kl_loss``, ``gamma`` and ``running_mse`` over windows of
``--window`` steps, and writes ``DIR/step_curves.csv`` (run, first step of
the window, epoch, the four means), ``DIR/step_curves.md`` (per run and
epoch) and ``DIR/step_curves.png`` (the KL and the MSE against the step).
It compares runs continued from one checkpoint with different settings: the
quality study's stage 1 past its epoch-44 snapshot.
"""

import argparse
import csv
import os

import numpy as np

COLUMNS = ("mse", "kl_loss", "gamma", "running_mse")


def read_steps(path, first, last):
    """``{column: array}`` of the rows with ``first <= step <= last``."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if first <= int(r["step"]) <= last]
    if not rows:
        raise ValueError(f"{path} has no steps in [{first}, {last}].")
    table = {"step": np.array([int(r["step"]) for r in rows])}
    table["epoch"] = np.array([int(r["epoch"]) for r in rows])
    for column in COLUMNS:
        table[column] = np.array([float(r[column]) for r in rows])
    return table


def windows(table, size):
    """Means of each column over consecutive windows of ``size`` steps (the
    last window may be shorter); ``step`` and ``epoch`` of the window's first
    row."""
    out = {key: [] for key in ("step", "epoch", *COLUMNS)}
    for start in range(0, len(table["step"]), size):
        part = slice(start, start + size)
        out["step"].append(int(table["step"][start]))
        out["epoch"].append(int(table["epoch"][start]))
        for column in COLUMNS:
            out[column].append(float(np.mean(table[column][part])))
    return {key: np.array(value) for key, value in out.items()}


def per_epoch(table):
    """``[(epoch, mean mse, mean KL, last gamma)]`` of the rows of each epoch."""
    found = []
    for epoch in np.unique(table["epoch"]):
        rows = table["epoch"] == epoch
        found.append(
            (
                int(epoch),
                float(np.mean(table["mse"][rows])),
                float(np.mean(table["kl_loss"][rows])),
                float(table["gamma"][rows][-1]),
            )
        )
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="WORKDIR:LABEL")
    parser.add_argument("--stage", default="stage1", choices=("stage1", "stage2"))
    parser.add_argument("--from-step", type=int, required=True)
    parser.add_argument("--to-step", type=int, required=True)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    curves, lines = {}, []
    for spec in args.runs:
        workdir, _, label = spec.partition(":")
        label = label or os.path.basename(workdir.rstrip("/"))
        path = os.path.join(workdir, f"steps_{args.stage}.csv")
        table = read_steps(path, args.from_step, args.to_step)
        curves[label] = windows(table, args.window)
        lines.append(f"\n## {label}\n\n| epoch | mean MSE | mean KL | gamma (end) |")
        lines.append("|---|---|---|---|")
        for epoch, mse, kl, gamma in per_epoch(table):
            lines.append(f"| {epoch} | {mse:.5f} | {kl:.1f} | {gamma:.5f} |")
    with open(os.path.join(args.out, "step_curves.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "step", "epoch", *COLUMNS])
        for label, curve in curves.items():
            for i in range(len(curve["step"])):
                row = [curve[c][i] for c in COLUMNS]
                writer.writerow([label, curve["step"][i], curve["epoch"][i], *row])
    title = f"# Steps {args.from_step}-{args.to_step} of {args.stage} (per epoch)\n"
    with open(os.path.join(args.out, "step_curves.md"), "w") as f:
        f.write(title + "\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, curve in curves.items():
        axes[0].plot(curve["step"], curve["kl_loss"], label=label)
        axes[1].plot(curve["step"], curve["mse"], label=label)
    axes[0].set_ylabel(f"KL (mean of {args.window} steps)")
    axes[1].set_ylabel(f"training MSE (mean of {args.window} steps)")
    for axis in axes:
        axis.set_xlabel("step")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(args.out, "step_curves.png"), dpi=110)
    print(f"wrote {args.out}/step_curves.{{csv,md,png}}")


if __name__ == "__main__":
    main()
