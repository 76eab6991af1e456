"""MCMC convergence diagnostics: rank-normalised split R-hat, bulk and tail ESS (Vehtari et al. 2021).

Plain NumPy on arrays shaped ``(chain, draw)``; NumPyro's autocorrelation-based ESS does the core work.
"""
from __future__ import annotations

import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from scipy.special import ndtri
from scipy.stats import rankdata

RHAT_LIMIT = 1.01
DIVERGENCE_LIMIT = 0.01


def _rank_normalise(x: np.ndarray) -> np.ndarray:
    ranks = rankdata(x, method="average").reshape(x.shape)
    return ndtri((ranks - 0.375) / (x.size + 0.25))


def _finite_or(value: float, fallback: float) -> float:
    return float(value) if np.isfinite(value) else fallback


def rhat(x: np.ndarray) -> float:
    """Rank-normalised split R-hat: the max of the bulk and folded versions."""
    x = np.asarray(x, dtype=np.float64)
    if np.ptp(x) == 0:
        return 1.0
    bulk = split_gelman_rubin(_rank_normalise(x)[..., None])[0]
    folded = split_gelman_rubin(_rank_normalise(np.abs(x - np.median(x)))[..., None])[0]
    return _finite_or(max(bulk, folded), np.inf)


def ess_bulk(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    if np.ptp(x) == 0:
        return float(x.size)
    return _finite_or(effective_sample_size(_rank_normalise(x)[..., None])[0], 0.0)


def ess_tail(x: np.ndarray) -> float:
    """Min ESS of the 5 % and 95 % quantile indicators."""
    x = np.asarray(x, dtype=np.float64)
    values = []
    for q in (0.05, 0.95):
        indicator = (x <= np.quantile(x, q)).astype(np.float64)
        if np.ptp(indicator) == 0:
            values.append(float(x.size))
        else:
            values.append(_finite_or(effective_sample_size(indicator[..., None])[0], 0.0))
    return min(values)


def parameter_diagnostics(posterior: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """R-hat, bulk ESS and tail ESS for every ``(chain, draw)`` array."""
    return {
        "rhat": {k: rhat(v) for k, v in posterior.items()},
        "ess_bulk": {k: ess_bulk(v) for k, v in posterior.items()},
        "ess_tail": {k: ess_tail(v) for k, v in posterior.items()},
    }


def convergence_verdict(diag: dict, diverging: np.ndarray, chain_lp: np.ndarray) -> dict:
    """Converged flag and the reasons it is not: R-hat > 1.01, divergences > 1 %, chains in other modes."""
    reasons = []
    max_rhat = max(diag["rhat"].values()) if diag["rhat"] else 1.0
    if max_rhat > RHAT_LIMIT:
        worst = max(diag["rhat"], key=diag["rhat"].get)
        reasons.append(f"R-hat {max_rhat:.3f} > {RHAT_LIMIT} (worst: {worst})")
    divergence_fraction = float(np.mean(diverging)) if np.size(diverging) else 0.0
    if divergence_fraction > DIVERGENCE_LIMIT:
        reasons.append(f"divergences {100 * divergence_fraction:.1f} % > {100 * DIVERGENCE_LIMIT:.0f} %")
    # a well-mixed chain's mean log posterior differs from the others by ~spread/sqrt(ESS); a gap of two
    # whole posterior spreads means the chains sit in different modes
    chain_means = np.mean(chain_lp, axis=1)
    spread = max(float(np.median(np.std(chain_lp, axis=1))), 1.0)
    if chain_means.size > 1 and np.ptp(chain_means) > 2 * spread:
        reasons.append(
            "chains disagree: mean log posterior per chain "
            + ", ".join(f"{m:.1f}" for m in chain_means)
        )
    return {
        "converged": not reasons,
        "max_rhat": float(max_rhat),
        "min_ess_bulk": float(min(diag["ess_bulk"].values())) if diag["ess_bulk"] else 0.0,
        "divergence_fraction": divergence_fraction,
        "reasons": reasons,
    }
