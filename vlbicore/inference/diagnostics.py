"""Did the sampler work? Convergence diagnostics and the gate behind a fit's ``converged`` flag.

Diagnostics come from arviz-stats (``arviz_stats.base.array_stats``): split-chain rank-normalised R-hat
(the max of the bulk and folded versions, Vehtari et al. 2021), bulk ESS and tail ESS (the 5 % and 95 %
quantiles), E-BFMI per chain. Chains are grouped by the posterior mode they were started in: R-hat and
ESS are computed within each group (chains in different modes are *meant* to disagree; their weights come
from the modes' masses) and the worst group counts. Angles are unwrapped around their circular mean
first, so a posterior straddling 0/2π is not mistaken for two.

The gate (every item a reason when it fails):

* R-hat ≤ 1.01 for every parameter;
* bulk and tail ESS ≥ 100 per chain of the group (Vehtari et al. 2021);
* divergent transitions ≤ 0.1 % of the draws (``DIVERGENCE_LIMIT``; any divergence is a warning);
* E-BFMI ≥ 0.3 in every chain (Betancourt 2016: below it, momentum resampling explores the energy
  distribution too slowly);
* the chains of a group agree in their mean log posterior (else they sit in different modes);
* no posterior median or best fit at the edge of a prior box (the prior may exclude what the data prefer).

Saturated trees (transitions that hit ``max_tree_depth``) are reported, not gated: they cost time, not
correctness.
"""
from __future__ import annotations

import numpy as np
from arviz_stats.base import array_stats

from vlbicore.statistics import unwrap_around_circular_mean

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100
DIVERGENCE_LIMIT = 0.001
EBFMI_LIMIT = 0.3


def _groups(chain_groups, n_chains: int) -> list[np.ndarray]:
    labels = np.zeros(n_chains, int) if chain_groups is None else np.asarray(chain_groups)
    return [np.flatnonzero(labels == g) for g in np.unique(labels)]


def _as_chains(x: np.ndarray) -> np.ndarray:
    """(chain, draw) with at least two chains: a lone chain is split in halves (R-hat needs two)."""
    if x.shape[0] >= 2:
        return x
    half = x.shape[1] // 2
    return np.stack([x[0, :half], x[0, half : 2 * half]])


def parameter_diagnostics(posterior: dict[str, np.ndarray], chain_groups=None,
                          periods: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """R-hat (worst group), bulk and tail ESS (smallest group) of every ``(chain, draw)`` array; chains are
    grouped by ``chain_groups`` (one label per chain; default one group)."""
    periods = periods or {}
    out = {"rhat": {}, "ess_bulk": {}, "ess_tail": {}}
    for name, values in posterior.items():
        values = np.asarray(values, dtype=np.float64)
        rhats, bulks, tails = [], [], []
        for chains in _groups(chain_groups, values.shape[0]):
            x = values[chains]
            if periods.get(name):
                x = unwrap_around_circular_mean(x.ravel(), periods[name]).reshape(x.shape)
            if np.ptp(x) == 0:
                rhats.append(1.0)
                bulks.append(float(x.size))
                tails.append(float(x.size))
                continue
            x = _as_chains(x)
            rhats.append(float(array_stats.rhat(x, chain_axis=-2, draw_axis=-1, method="rank")))
            bulks.append(float(array_stats.ess(x, chain_axis=-2, draw_axis=-1, method="bulk")))
            tails.append(float(array_stats.ess(x, chain_axis=-2, draw_axis=-1, method="tail", prob=(0.05, 0.95))))
        out["rhat"][name] = _finite_or(max(rhats), np.inf)
        out["ess_bulk"][name] = _finite_or(min(bulks), 0.0)
        out["ess_tail"][name] = _finite_or(min(tails), 0.0)
    return out


def _finite_or(value: float, fallback: float) -> float:
    return float(value) if np.isfinite(value) else fallback


def rhat(x: np.ndarray) -> float:
    """Split rank-normalised R-hat of one ``(chain, draw)`` array."""
    return parameter_diagnostics({"x": x})["rhat"]["x"]


def ess_bulk(x: np.ndarray) -> float:
    return parameter_diagnostics({"x": x})["ess_bulk"]["x"]


def ess_tail(x: np.ndarray) -> float:
    """Min ESS of the 5 % and 95 % quantile indicators."""
    return parameter_diagnostics({"x": x})["ess_tail"]["x"]


def e_bfmi(energy: np.ndarray) -> np.ndarray:
    """E-BFMI per chain from the Hamiltonian energy of each transition ``(chain, draw)``."""
    energy = np.asarray(energy, dtype=np.float64)
    return np.asarray(array_stats.bfmi(energy, chain_axis=-2, draw_axis=-1), dtype=np.float64).reshape(-1)


def convergence_verdict(diag: dict, diverging: np.ndarray, chain_lp: np.ndarray, *, energy=None,
                        tree_depth_hits=None, chain_groups=None, warnings: list[str] | None = None) -> dict:
    """The ``converged`` flag and the reasons it is not (the gate of the module docstring).

    ``diag``: :func:`parameter_diagnostics`; ``diverging``, ``chain_lp``, ``energy``, ``tree_depth_hits``:
    (chain, draw) sample statistics; ``chain_groups``: the mode each chain was started in; ``warnings``:
    prior-edge warnings (each fails the gate)."""
    reasons = []
    n_chains = np.shape(chain_lp)[0]
    groups = _groups(chain_groups, n_chains)
    max_rhat = max(diag["rhat"].values()) if diag["rhat"] else 1.0
    if max_rhat > RHAT_LIMIT:
        worst = max(diag["rhat"], key=diag["rhat"].get)
        reasons.append(f"R-hat {max_rhat:.3f} > {RHAT_LIMIT} (worst: {worst})")
    chains_per_group = min(len(g) for g in groups)
    needed = ESS_PER_CHAIN * max(chains_per_group, 1)
    for label in ("ess_bulk", "ess_tail"):
        if diag[label]:
            low = min(diag[label], key=diag[label].get)
            if diag[label][low] < needed:
                reasons.append(f"{label.replace('_', ' ')} {diag[label][low]:.0f} < {needed} "
                               f"({ESS_PER_CHAIN} per chain; worst: {low})")
    divergence_fraction = float(np.mean(diverging)) if np.size(diverging) else 0.0
    if divergence_fraction > DIVERGENCE_LIMIT:
        reasons.append(f"divergences {100 * divergence_fraction:.2f} % > {100 * DIVERGENCE_LIMIT:.1f} %")
    bfmi = e_bfmi(energy) if energy is not None else np.full(n_chains, np.nan)
    if np.any(bfmi < EBFMI_LIMIT):
        reasons.append(f"E-BFMI {np.nanmin(bfmi):.2f} < {EBFMI_LIMIT} (chain {int(np.nanargmin(bfmi))})")
    # a well-mixed chain's mean log posterior differs from the others by ~spread/sqrt(ESS); a gap of two
    # whole posterior spreads means the chains of one group sit in different modes
    for chains in groups:
        means = np.mean(chain_lp[chains], axis=1)
        spread = max(float(np.median(np.std(chain_lp[chains], axis=1))), 1.0)
        if means.size > 1 and np.ptp(means) > 2 * spread:
            reasons.append("chains disagree: mean log posterior per chain " + ", ".join(f"{m:.1f}" for m in means))
    warnings = list(warnings or [])
    reasons.extend(f"prior edge: {w}" for w in warnings)
    saturated = float(np.mean(tree_depth_hits)) if tree_depth_hits is not None and np.size(tree_depth_hits) else 0.0
    return {
        "converged": not reasons,
        "max_rhat": float(max_rhat),
        "min_ess_bulk": float(min(diag["ess_bulk"].values())) if diag["ess_bulk"] else 0.0,
        "min_ess_tail": float(min(diag["ess_tail"].values())) if diag["ess_tail"] else 0.0,
        "divergence_fraction": divergence_fraction,
        "min_ebfmi": float(np.nanmin(bfmi)) if np.isfinite(bfmi).any() else None,
        "max_treedepth_fraction": saturated,
        "reasons": reasons,
        "warnings": warnings,
        "thresholds": {"rhat": RHAT_LIMIT, "ess_per_chain": ESS_PER_CHAIN, "divergence_fraction": DIVERGENCE_LIMIT,
                       "ebfmi": EBFMI_LIMIT},
    }
