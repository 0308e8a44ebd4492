"""The balancing rule: which gamma^2 a step's loss uses, and how it moves.

`BalancedVAE` (`vae_balance.model.vae`) holds the state (``running_mse``,
``ema_mse``, ``log_gamma``) and calls these functions, which hold the rule:

- `BALANCES`: ``"running"`` (the paper: gamma^2 is a running average of the
  minibatch MSE, no gradient), ``"learned"`` (Dai & Wipf's trainable
  log-gamma), ``"batch"`` (sigma-VAE: this batch's MSE, no gradient) and
  ``"fixed"`` (a constant ``fixed_gamma``).
- `RUNNING_RULES`: how the running average moves after each step
  (`next_running_mse`): ``"min"`` (the paper: ``m <- min(m, mu m + (1 - mu)
  mse)``), ``"ema"`` (a free exponential average) or ``"ema_min"`` (gamma^2 =
  min(free EMA, previous gamma^2)).
- `gamma_squared`: the gamma^2 of a step, never below ``min_gamma**2``.
- `check_arguments`: the constructor's balancing arguments, refused with the
  valid values.
"""

from keras import ops

BALANCES = ("running", "learned", "batch", "fixed")
RUNNING_RULES = ("min", "ema", "ema_min")


def gamma_squared(
    balance, batch_mse, *, running_mse, log_gamma, fixed_gamma, min_gamma
):
    """gamma^2 used in the loss: a constant of the step except "learned".

    Args:
        balance: one of `BALANCES`.
        batch_mse: this global batch's MSE (used by "batch"), or None for the
            live value between steps (then "batch" reads ``running_mse``).
        running_mse: the running average (a scalar variable).
        log_gamma: the trainable log-gamma of "learned" (else unused).
        fixed_gamma: the constant of "fixed" (else unused).
        min_gamma: the floor of gamma.
    """
    if balance == "learned":
        value = ops.exp(2.0 * ops.cast(log_gamma, "float32"))
    elif balance == "fixed":
        value = ops.convert_to_tensor(fixed_gamma**2, "float32")
    elif balance == "batch" and batch_mse is not None:
        value = ops.stop_gradient(batch_mse)
    else:
        value = ops.stop_gradient(ops.cast(running_mse, "float32"))
    return ops.maximum(value, min_gamma**2)


def next_running_mse(running_rule, momentum, running_mse, ema_mse, batch_mse):
    """``(new running_mse, new ema_mse or None)`` after a step of ``batch_mse``.

    The free average ``ema_mse`` moves only under ``"ema_min"`` (None: keep
    it); the caller assigns both.
    """
    m = ops.cast(running_mse, "float32")
    mu = momentum
    if running_rule == "min":
        return ops.minimum(m, mu * m + (1.0 - mu) * batch_mse), None
    if running_rule == "ema":
        return mu * m + (1.0 - mu) * batch_mse, None
    # "ema_min"
    ema = mu * ops.cast(ema_mse, "float32") + (1.0 - mu) * batch_mse
    return ops.minimum(m, ema), ema


def check_arguments(balance, running_rule, momentum, fixed_gamma, min_gamma, kl_weight):
    """Raises a ValueError naming the valid values for a bad constructor argument.

    Returns:
        ``fixed_gamma`` as a float for ``balance="fixed"`` (default 1), else None.
    """
    if balance not in BALANCES:
        raise ValueError(
            f"Unknown balance={balance!r}. Valid values: {', '.join(BALANCES)}."
        )
    if running_rule not in RUNNING_RULES:
        raise ValueError(
            f"Unknown running_rule={running_rule!r}. Valid values: "
            f"{', '.join(RUNNING_RULES)}."
        )
    if not 0.0 < float(momentum) < 1.0:
        raise ValueError(
            f"momentum must be strictly between 0 and 1, got {momentum}. "
            "The paper uses 0.99 (about 100 steps of memory)."
        )
    if balance != "fixed" and fixed_gamma is not None:
        raise ValueError(
            f"fixed_gamma={fixed_gamma} is the constant gamma of balance='fixed', "
            f"but balance={balance!r} sets gamma itself and would ignore it: "
            "drop fixed_gamma, or use balance='fixed'. (The live gamma of any "
            "balance is the model's read-only `gamma` property.)"
        )
    if balance == "fixed" and fixed_gamma is None:
        fixed_gamma = 1.0
    if float(min_gamma) <= 0.0:
        raise ValueError(f"min_gamma must be > 0, got {min_gamma}.")
    if fixed_gamma is not None and float(fixed_gamma) < float(min_gamma):
        raise ValueError(
            f"Need min_gamma <= fixed_gamma, got min_gamma={min_gamma}, "
            f"fixed_gamma={fixed_gamma}."
        )
    if float(kl_weight) < 0.0:
        raise ValueError(f"kl_weight must be >= 0, got {kl_weight}.")
    return None if fixed_gamma is None else float(fixed_gamma)
