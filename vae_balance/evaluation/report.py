"""The Markdown report of an evaluation (``evaluation.md``)."""

SET_LABELS = {
    "rec": "REC",
    "gen1": "GEN-1",
    "gen2": "GEN-2",
    "gen2_adjusted": "GEN-2 adjusted",
    "gen2_matched": "GEN-2 matched",
    "gmm": "GMM",
}

OPT_IN = ("gen2_matched",)  # sets not in the default evaluation (nor stretched twins)


def _fraction(value):
    return "n/a" if value is None else f"{value:.3f}"


def _scores_table(results):
    labels = {**SET_LABELS, **results.get("labels", {})}
    lines = [
        "| | FID | KID x 1000 | precision | recall |",
        "|---|---|---|---|---|",
    ]
    chosen = (results.get("protocol") or {}).get("sets")
    for name, label in labels.items():
        score = results.get(name)
        base = name.replace("_stretched", "")
        if score is None and base in OPT_IN and base not in (chosen or ()):
            continue  # scored only when asked for: no row otherwise
        if score is None:
            if chosen is not None and base not in chosen:
                reason = "not asked for (--sets)"
            else:
                reason = results.get("gmm_fit", {}).get("skipped", "not measured")
            lines.append(f"| {label} | not measured: {reason} | | | |")
            continue
        lines.append(
            f"| {label} | {score['fid']:.2f} | {1000 * score['kid']:.2f} "
            f"+- {1000 * score['kid_std']:.2f} | {_fraction(score['precision'])} | "
            f"{_fraction(score['recall'])} |"
        )
    return lines


def _likelihood_lines(results):
    settings = results.get("likelihood")
    if results.get("nll_nats") is None or settings is None:
        return ["Likelihood: not measured.", ""]
    elbo = results["elbo"]
    return [
        f"Negative log-likelihood of {settings['num_images']} test images "
        f"(stage 1, importance-weighted, K = {settings['num_samples']}, "
        f"gamma^2 = {settings['gamma_squared']:.3g}, D = {settings['dimensions']}):"
        f" {results['nll_nats']:.2f} nats = "
        f"**{results['nll_bits_per_dim']:.4f} bits/dim** (8-bit pixels, bins of "
        f"{settings['bin_width']}); ELBO {elbo['nats']:.2f} nats = "
        f"{elbo['bits_per_dim']:.4f} bits/dim.",
        "",
    ]


def _latent_table(results):
    s1, s2 = results["stage1"], results["stage2"]
    if s2 is None:  # evaluated without stage 2 (``--sets`` of stage 1's sets)
        return _stage1_latent_table(s1)
    return [
        "| latent diagnostics | stage 1 | stage 2 |",
        "|---|---|---|",
        f"| latent dim | {s1['latent_dim']} | {s2['latent_dim']} |",
        f"| variance law mean_j [Var(mu_j) + E(sigma_j^2)] | "
        f"{s1['variance_law']:.3f} | {s2['variance_law']:.3f} |",
        f"| same with E(sigma_j) (reference code) | "
        f"{s1['variance_law_reference_code']:.3f} | "
        f"{s2['variance_law_reference_code']:.3f} |",
        f"| inactive, mean sigma > 0.8 (reference code) | "
        f"{s1['inactive_mean_sigma']} | {s2['inactive_mean_sigma']} |",
        f"| inactive, Var(mu) < 0.01 | {s1['inactive_var_mean']} | "
        f"{s2['inactive_var_mean']} |",
        "",
        f"Mean variance of the stage-2 generated latents: "
        f"{s2['generated_latent_variance']:.3f} (1 after adjust).",
        "",
    ]


def _stage1_latent_table(s1):
    return [
        "| latent diagnostics | stage 1 |",
        "|---|---|",
        f"| latent dim | {s1['latent_dim']} |",
        "| variance law mean_j [Var(mu_j) + E(sigma_j^2)] | "
        f"{s1['variance_law']:.3f} |",
        f"| same with E(sigma_j) (reference code) | "
        f"{s1['variance_law_reference_code']:.3f} |",
        "| inactive, mean sigma > 0.8 (reference code) | "
        f"{s1['inactive_mean_sigma']} |",
        f"| inactive, Var(mu) < 0.01 | {s1['inactive_var_mean']} |",
        "",
        "Stage 2: not loaded (the sets asked for do not use it).",
        "",
    ]


def markdown(results):
    """The text of ``evaluation.md`` from the results dict."""
    protocol = results["protocol"]
    comparable = results["feature_extractor"] == "fid_inception"
    weights = protocol.get("weights_sha256")
    lines = [
        f"# Evaluation of {results['name']} ({results['dataset']})",
        "",
        f"{protocol['num_images']} test images against {protocol['num_generated']} "
        f"generated images per set, seed {results['seed']}; features: "
        f"{results['feature_extractor']}"
        + (f" (weights sha256 {weights[:12]}...)" if weights else "")
        + ("" if comparable else " (NOT comparable with published FIDs)")
        + f", on {'x'.join(map(str, protocol['image_shape']))} images"
        + (f", resized {protocol['resize']}" if protocol.get("resize") else "")
        + f". KID over {protocol['kid']['num_subsets']} subsets of "
        f"{protocol['kid']['subset_size']}; precision and recall with "
        f"k = {protocol['precision_recall']['k']}.",
        "",
        *_scores_table(results),
        "",
        *_likelihood_lines(results),
        f"Reconstruction MSE: {results['reconstruction_mse']:.5f}",
        "",
        *_latent_table(results),
    ]
    if protocol.get("minmax_stretch"):
        lines += [
            "Stretched: each generated image min-max stretched to the full range "
            "before the features, as Dai & Wipf's fid_score.py; comparable with "
            "their Table 1, not with the standard rows above.",
            "",
        ]
    if results.get("interpolations"):
        lines += [f"Latent interpolations: {results['interpolations']}", ""]
    cache = results.get("cache", {})
    if cache.get("reused"):
        lines += [f"Reused from the cache: {', '.join(cache['reused'])}.", ""]
    return "\n".join(lines)
