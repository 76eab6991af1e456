"""Model comparison by PSIS-LOO (Vehtari, Gelman & Gabry 2017) from the stored pointwise log likelihood.

Pareto-smoothed importance sampling in NumPy (arviz-stats is not a dependency): for each observation the
importance ratios 1/p(y_i | θ_s) get their largest M = min(⌈0.2 S⌉, ⌈3 √S⌉) values replaced by the
expected order statistics of a generalized Pareto fitted to the tail (Zhang & Stephens 2009 estimate,
with the weak prior toward k = 0.5 used by the loo package). The fitted shape k is the diagnostic:
k > 0.7 means that observation's LOO estimate is unreliable.

Pointwise log likelihood of a fit = the concatenation of all product kinds in kind order (one value per
closure phase, log closure amplitude, ...). Models are compared only when they were fitted to the same
observations (same products and values): summing or comparing elpd over different data sets is meaningless.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from vlbicore.errors import VlbiError

K_WARN = 0.7


# --------------------------------------------------------------------------------------------------
# Generalized Pareto fit and smoothing


def fit_generalized_pareto(exceedances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shape k and scale σ of a generalized Pareto fitted to each row of ``exceedances`` (sorted, > 0).

    Zhang & Stephens (2009) empirical-Bayes estimate of θ = −k/σ over a grid of candidate θ, then the
    weakly informative prior on k (10 pseudo-observations at 0.5), as recommended by Vehtari et al.
    """
    x = np.asarray(exceedances, dtype=np.float64)
    n = x.shape[-1]
    n_grid = 30 + int(math.sqrt(n))
    quartile = x[..., max(int(n / 4 + 0.5) - 1, 0)]
    j = np.arange(1, n_grid + 1)
    theta = 1.0 / x[..., -1:] + (1.0 - np.sqrt(n_grid / (j - 0.5))) / (3.0 * quartile[..., None])  # (..., grid)
    k_grid = np.mean(np.log1p(-theta[..., :, None] * x[..., None, :]), axis=-1)  # (..., grid)
    profile = n * (np.log(-theta / k_grid) - k_grid - 1.0)
    weights = np.exp(profile - logsumexp(profile, axis=-1, keepdims=True))
    theta_hat = np.sum(theta * weights, axis=-1)
    k = np.mean(np.log1p(-theta_hat[..., None] * x), axis=-1)
    sigma = -k / theta_hat
    k = (n * k + 10 * 0.5) / (n + 10)
    return k, sigma


def _gpd_quantile(p: np.ndarray, k: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    k = k[..., None]
    sigma = sigma[..., None]
    small = np.abs(k) < 1e-12
    safe_k = np.where(small, 1.0, k)
    return np.where(small, -sigma * np.log1p(-p), sigma * np.expm1(-safe_k * np.log1p(-p)) / safe_k)


def psis_smooth(log_ratios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed, self-normalised log weights and Pareto k for each row of ``log_ratios`` (n, S)."""
    log_ratios = np.asarray(log_ratios, dtype=np.float64)
    n_obs, n_samples = log_ratios.shape
    tail = int(min(math.ceil(0.2 * n_samples), math.ceil(3 * math.sqrt(n_samples))))
    lw = log_ratios - log_ratios.max(axis=1, keepdims=True)
    k = np.full(n_obs, np.inf)
    if tail >= 5 and n_samples > tail:
        order = np.argsort(lw, axis=1)
        sorted_lw = np.take_along_axis(lw, order, axis=1)
        cutoff = sorted_lw[:, -tail - 1]  # largest weight below the tail
        tail_w = np.exp(sorted_lw[:, -tail:])
        exceed = tail_w - np.exp(cutoff)[:, None]
        fittable = exceed[:, -1] > 0
        k_fit, sigma = fit_generalized_pareto(np.where(fittable[:, None], np.maximum(exceed, 1e-300), 1.0))
        probs = (np.arange(1, tail + 1) - 0.5) / tail
        smoothed = np.exp(cutoff)[:, None] + _gpd_quantile(probs, k_fit, sigma)
        smoothed = np.minimum(smoothed, 1.0)  # never above the largest raw weight (exp(0) after the shift)
        replace = fittable & np.isfinite(k_fit)
        new_tail = np.where(replace[:, None], np.log(smoothed), sorted_lw[:, -tail:])
        rows = np.arange(n_obs)[:, None]
        lw[rows, order[:, -tail:]] = new_tail
        k = np.where(replace, k_fit, np.where(fittable, np.inf, 0.0))
    lw = lw - logsumexp(lw, axis=1, keepdims=True)
    return lw, k


# --------------------------------------------------------------------------------------------------
# LOO of one fit


@dataclasses.dataclass(frozen=True)
class LooResult:
    """PSIS-LOO of one fit: totals and the pointwise values behind them (observations in kind order)."""

    elpd_loo: float
    se: float
    p_loo: float
    n_data: int
    n_samples: int
    pointwise: np.ndarray  # elpd_loo_i
    pareto_k: np.ndarray
    kinds: tuple[str, ...]

    @property
    def n_bad_k(self) -> int:
        return int(np.sum(self.pareto_k > K_WARN))

    @property
    def max_k(self) -> float:
        return float(np.max(self.pareto_k)) if self.pareto_k.size else math.nan


def loo(log_lik: np.ndarray, kinds: tuple[str, ...] = ()) -> LooResult:
    """PSIS-LOO from a pointwise log likelihood array (samples, n)."""
    ll = np.asarray(log_lik, dtype=np.float64)
    if ll.ndim != 2 or ll.shape[1] == 0:
        raise VlbiError(f"log_likelihood: shape {ll.shape} is not (samples, n>0); store the pointwise log likelihood")
    n_samples, n_data = ll.shape
    lw, k = psis_smooth(-ll.T)
    elpd_i = logsumexp(lw + ll.T, axis=1)
    lppd_i = logsumexp(ll.T, axis=1) - math.log(n_samples)
    return LooResult(
        elpd_loo=float(elpd_i.sum()),
        se=float(math.sqrt(n_data * np.var(elpd_i))),
        p_loo=float(np.sum(lppd_i - elpd_i)),
        n_data=n_data,
        n_samples=n_samples,
        pointwise=elpd_i,
        pareto_k=k,
        kinds=tuple(kinds),
    )


def pointwise_log_likelihood(log_likelihood: xr.Dataset) -> tuple[np.ndarray, tuple[str, ...]]:
    """(samples, n) array: every product kind's (chain, draw, n) values flattened and concatenated in kind order."""
    kinds = tuple(sorted(str(k) for k in log_likelihood.data_vars))
    if not kinds:
        raise VlbiError("log_likelihood: group is empty; the fit stored no pointwise log likelihood")
    blocks = []
    for kind in kinds:
        values = np.asarray(log_likelihood[kind].values, dtype=np.float64)
        blocks.append(values.reshape(values.shape[0] * values.shape[1], -1))
    return np.concatenate(blocks, axis=1), kinds


def loo_from_tree(tree: xr.DataTree) -> LooResult:
    ll, kinds = pointwise_log_likelihood(tree["log_likelihood"].dataset)
    return loo(ll, kinds)


# --------------------------------------------------------------------------------------------------
# Ranking models of one epoch


COMPARE_COLUMNS = ["rank", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "max_pareto_k", "n_bad_k", "n_data"]


def compare_models(results: Mapping[str, LooResult]) -> pd.DataFrame:
    """Rank models fitted to the same observations by elpd_loo (best first).

    ``elpd_diff`` and ``dse`` are the difference to the best model and its standard error from the paired
    pointwise differences; ``weight`` are pseudo-BMA weights ∝ exp(elpd_loo) (no bootstrap).
    """
    if not results:
        raise VlbiError("compare: no models given; pass at least one LOO result")
    sizes = {name: r.n_data for name, r in results.items()}
    if len(set(sizes.values())) != 1:
        raise VlbiError(
            f"compare: models were fitted to different numbers of observations {sizes}; compare only models "
            "fitted to the same products of the same data"
        )
    names = sorted(results, key=lambda m: -results[m].elpd_loo)
    best = results[names[0]]
    elpd = np.array([results[m].elpd_loo for m in names])
    weights = np.exp(elpd - logsumexp(elpd))
    rows = []
    for rank, (name, weight) in enumerate(zip(names, weights)):
        r = results[name]
        diff = best.pointwise - r.pointwise
        rows.append(
            {
                "model": name,
                "rank": rank,
                "elpd_loo": r.elpd_loo,
                "se": r.se,
                "p_loo": r.p_loo,
                "elpd_diff": float(diff.sum()),
                "dse": float(math.sqrt(r.n_data * np.var(diff))),
                "weight": float(weight),
                "max_pareto_k": r.max_k,
                "n_bad_k": r.n_bad_k,
                "n_data": r.n_data,
            }
        )
    return pd.DataFrame(rows).set_index("model")[COMPARE_COLUMNS]


def compare_stores(paths_by_model: Mapping[str, str]) -> pd.DataFrame:
    """LOO table for stores of one epoch (model name -> store path); checks they share their observations."""
    from vlbicore.store import open_fit_store

    results, fingerprints = {}, {}
    for model, path in paths_by_model.items():
        tree = open_fit_store(path)
        results[model] = loo_from_tree(tree)
        fingerprints[model] = observation_fingerprint(tree["observed_data"].dataset)
    if len(set(fingerprints.values())) > 1:
        raise VlbiError(
            f"compare: stores {', '.join(map(str, paths_by_model.values()))} were fitted to different "
            "observations or products; compare only fits of the same data and products"
        )
    return compare_models(results)


def observation_fingerprint(observed: xr.Dataset) -> str:
    """Hash of the observed product values and kinds: equal fingerprints = same observations in the same order."""
    import hashlib

    digest = hashlib.sha256()
    kinds = sorted(str(k) for k in observed.data_vars if f"{k}_dim" in observed[k].dims)
    for kind in kinds:
        digest.update(kind.encode())
        digest.update(np.ascontiguousarray(np.asarray(observed[kind].values)).tobytes())
    return digest.hexdigest()[:16]
