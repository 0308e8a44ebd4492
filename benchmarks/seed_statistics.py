"""Statistics over seeds for the balancing comparison: spread, paired verdicts.

A seed fixes the initial weights, the data order and the noise, so two
strategies trained with the same seed form a pair: their per-seed
difference cancels what the seed does to both. With 3 seeds a sign test
cannot reach p < 0.25 (all three the same way: 2 x 1/8): only the Student-t
interval can exclude zero, and only when the differences are consistent.
"""

import numpy as np
from scipy import stats


def summarise(values):
    """``{"n", "mean", "std", "min", "max", "values"}`` of a list of numbers;
    ``std`` is the sample standard deviation (ddof=1), None for one value."""
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
    """Exact two-sided sign test p-value of the nonzero differences (1 if none)."""
    signs = [d for d in differences if d != 0]
    if not signs:
        return 1.0
    return float(stats.binomtest(sum(d > 0 for d in signs), len(signs)).pvalue)


def paired_difference(a, b, confidence=0.95):
    """Per-seed ``a - b`` of two ``{seed: value}`` over the seeds both have:
    ``{"seeds", "differences", "mean", "std", "interval", "confidence",
    "sign_test_p", "positive", "negative"}``; ``interval``, of the mean
    difference (Student t), is None with fewer than 2 seeds."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two strategies share no seed: nothing to pair")
    differences = [float(a[s]) - float(b[s]) for s in seeds]
    result = {
        "seeds": seeds,
        "differences": differences,
        "mean": float(np.mean(differences)),
        "std": None,
        "interval": None,
        "confidence": confidence,
        "sign_test_p": sign_test(differences),
        "positive": sum(d > 0 for d in differences),
        "negative": sum(d < 0 for d in differences),
    }
    if len(differences) > 1:
        interval = stats.ttest_1samp(differences, 0.0).confidence_interval(confidence)
        result["std"] = float(np.std(differences, ddof=1))
        result["interval"] = [float(interval.low), float(interval.high)]
    return result


def verdict(pair, name_a, name_b, lower_is_better=True):
    """One sentence: which is better, and whether the seeds decide it."""
    mean = pair["mean"]
    if not any(pair["differences"]):
        return "tied on every seed"
    a_better = (mean < 0) == lower_is_better
    better, worse = (name_a, name_b) if a_better else (name_b, name_a)
    if pair["interval"] is None:
        return f"{better} ahead by {abs(mean):.3g} on 1 seed: undecided"
    low, high = pair["interval"]
    level = round(100 * pair["confidence"])
    evidence = (
        f"{pair['positive']}+ / {pair['negative']}- over {len(pair['seeds'])} "
        f"seeds, sign test p = {pair['sign_test_p']:.2g}"
    )
    if low > 0 or high < 0:
        return (
            f"{better} better by {abs(mean):.3g} ({level}% interval "
            f"[{low:.3g}, {high:.3g}] excludes 0; {evidence})"
        )
    return (
        f"undecided: {better} ahead by {abs(mean):.3g} on average, {level}% "
        f"interval [{low:.3g}, {high:.3g}] contains 0 ({evidence}); {worse} is "
        "not shown worse"
    )


def band(curves):
    """``(steps, mean, low, high)`` over seeds of per-step curves, a list of
    ``(steps, values)`` pairs, on the steps every curve has."""
    if not curves:
        raise ValueError("no curves to average")
    lookups = [dict(zip(np.asarray(s).tolist(), np.asarray(v))) for s, v in curves]
    steps = sorted(set.intersection(*(set(lookup) for lookup in lookups)))
    stacked = np.array([[lookup[s] for s in steps] for lookup in lookups], float)
    return np.array(steps), stacked.mean(0), stacked.min(0), stacked.max(0)
