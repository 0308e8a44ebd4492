"""Statistics over seeds for the balancing comparison: spread, paired verdicts.

The comparison trains every strategy once per seed. A seed fixes the
initial weights, the data order and the noise, so two strategies trained
with the same seed form a pair: their per-seed difference cancels what the
seed does to both, and the verdict rests on those differences.

- `summarise`: mean, sample standard deviation, min and max of one metric.
- `paired_difference`: the mean per-seed difference of two strategies, a
  Student-t confidence interval on it, and an exact two-sided sign test.
- `verdict`: one sentence that says how sure the comparison is.
- `band`: the mean and the min-max band of per-step curves over seeds.

With 3 seeds a sign test cannot reach p < 0.25 (all three the same way:
2 x 1/8): only the t interval can exclude zero, and only when the
differences are consistent. Both are reported so that the reader sees how
little 3 seeds decide.
"""

import math

import numpy as np


def summarise(values):
    """``{"n", "mean", "std", "min", "max", "values"}`` of a list of numbers.

    ``std`` is the sample standard deviation (ddof=1); None for one value.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to summarise: no seed has this metric yet")
    array = np.array(values)
    return {
        "n": len(values),
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if len(values) > 1 else None,
        "min": float(array.min()),
        "max": float(array.max()),
        "values": values,
    }


def sign_test(differences):
    """Exact two-sided sign test p-value of the nonzero differences (1 if none).

    Under the null each nonzero difference is positive with probability 1/2;
    the p-value is twice the binomial tail of the rarer sign, capped at 1.
    """
    signs = [d for d in differences if d != 0]
    n = len(signs)
    if n == 0:
        return 1.0
    k = min(sum(d > 0 for d in signs), sum(d < 0 for d in signs))
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def paired_difference(a, b, confidence=0.95):
    """Per-seed ``a - b`` over the seeds both dicts have.

    Args:
        a, b: ``{seed: value}`` of one metric for two strategies.
        confidence: of the Student-t interval on the mean difference.

    Returns:
        ``{"seeds", "differences", "mean", "std", "interval", "confidence",
        "sign_test_p", "positive", "negative"}``; ``interval`` is None with
        fewer than 2 seeds.
    """
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two strategies share no seed: nothing to pair")
    differences = [float(a[s]) - float(b[s]) for s in seeds]
    n = len(differences)
    mean = float(np.mean(differences))
    result = {
        "seeds": seeds,
        "differences": differences,
        "mean": mean,
        "std": None,
        "interval": None,
        "confidence": confidence,
        "sign_test_p": sign_test(differences),
        "positive": sum(d > 0 for d in differences),
        "negative": sum(d < 0 for d in differences),
    }
    if n > 1:
        std = float(np.std(differences, ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n)
        result.update(std=std, interval=[mean - half, mean + half])
    return result


def verdict(pair, name_a, name_b, lower_is_better=True):
    """One sentence: which is better, and whether the seeds decide it."""
    mean = pair["mean"]
    if not any(pair["differences"]):
        return "tied on every seed"
    better, worse = (
        (name_a, name_b)
        if (mean < 0) == lower_is_better
        else (
            name_b,
            name_a,
        )
    )
    seeds = len(pair["seeds"])
    if pair["interval"] is None:
        return f"{better} ahead by {abs(mean):.3g} on 1 seed: undecided"
    low, high = pair["interval"]
    level = round(100 * pair["confidence"])
    if low > 0 or high < 0:
        return (
            f"{better} better by {abs(mean):.3g} ({level}% interval "
            f"[{low:.3g}, {high:.3g}] excludes 0; {pair['positive']}+ / "
            f"{pair['negative']}- over {seeds} seeds, sign test p = "
            f"{pair['sign_test_p']:.2g})"
        )
    return (
        f"undecided: {better} ahead by {abs(mean):.3g} on average, {level}% "
        f"interval [{low:.3g}, {high:.3g}] contains 0 ({pair['positive']}+ / "
        f"{pair['negative']}- over {seeds} seeds, sign test p = "
        f"{pair['sign_test_p']:.2g}); {worse} is not shown worse"
    )


def band(curves):
    """Mean, min and max over seeds of per-step curves, on their common steps.

    Args:
        curves: a list of ``(steps, values)`` pairs, one per seed.

    Returns:
        ``(steps, mean, low, high)`` arrays over the steps every curve has.
    """
    if not curves:
        raise ValueError("no curves to average")
    common = set(np.asarray(curves[0][0]).tolist())
    for steps, _ in curves[1:]:
        common &= set(np.asarray(steps).tolist())
    steps = np.array(sorted(common))
    stacked = []
    for curve_steps, values in curves:
        lookup = dict(zip(np.asarray(curve_steps).tolist(), np.asarray(values)))
        stacked.append([lookup[s] for s in steps.tolist()])
    stacked = np.array(stacked, dtype=float)
    return steps, stacked.mean(axis=0), stacked.min(axis=0), stacked.max(axis=0)
