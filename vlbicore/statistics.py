"""Posterior statistics shared by the fitter, the store and the gather: HDIs, weighted and circular
summaries.

An angle posterior straddling ±π (or 0/π for an axis) is one narrow distribution, but its draws sit at
both ends of the nominal range; linear means, medians and HDIs of them are wrong. Unwrapping the draws
around their circular mean makes them contiguous again.

Draws may carry weights: a multimodal fit samples every mode holding more than 1 % of the mass with its
own chains and weighs each chain by its mode's mass (``diagnostics.chain_weight`` in the store), so every
summary of such a fit is a weighted one. Equal weights give the plain statistics.
"""
from __future__ import annotations

import math

import numpy as np

HDI_PROB = 0.94


def unwrap_around_circular_mean(x: np.ndarray, period: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Angles mapped into one period centred on their (weighted) circular mean; the mean itself is put on
    the branch of the smallest draw, so values stay near the parameter's own range (e.g. [0, π) for an
    axis PA)."""
    phase = 2 * np.pi * x / period
    w = np.ones_like(phase) if weights is None else np.broadcast_to(weights, phase.shape)
    centre = np.arctan2(np.sum(w * np.sin(phase)), np.sum(w * np.cos(phase))) * period / (2 * np.pi)
    if centre < np.min(x):
        centre += period * np.ceil((np.min(x) - centre) / period)
    return centre + (x - centre + period / 2) % period - period / 2


def circular_median(x: np.ndarray, period: float, low: float) -> float:
    """Median of angle draws on the circle, put back into [low, low + period)."""
    return weighted_median(x, None, period=period, low=low)


def weighted_quantile(x: np.ndarray, weights: np.ndarray | None, q) -> np.ndarray:
    """Quantiles of weighted draws (the inverse of the weighted empirical CDF, midpoint rule)."""
    x = np.asarray(x, np.float64).ravel()
    if weights is None:
        return np.quantile(x, q)
    w = np.broadcast_to(np.asarray(weights, np.float64), x.shape).ravel()
    order = np.argsort(x)
    x, w = x[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / np.sum(w)
    return np.interp(q, cdf, x)


def weighted_median(x: np.ndarray, weights: np.ndarray | None, *, period: float | None = None,
                    low: float = 0.0) -> float:
    """Median of (weighted) draws; angles (``period``) on the circle, put back into [low, low + period)."""
    x = np.asarray(x, np.float64).ravel()
    if not period:
        return float(weighted_quantile(x, weights, 0.5))
    unwrapped = unwrap_around_circular_mean(x, period, None if weights is None else np.ravel(weights))
    return float(low + (weighted_quantile(unwrapped, weights, 0.5) - low) % period)


def weighted_hdi(samples: np.ndarray, weights: np.ndarray, prob: float = HDI_PROB) -> tuple[float, float]:
    """Narrowest interval holding ``prob`` of the weight of weighted draws."""
    x = np.asarray(samples, np.float64).ravel()
    w = np.broadcast_to(np.asarray(weights, np.float64), np.shape(samples)).ravel()
    keep = np.isfinite(x)
    x, w = x[keep], w[keep]
    if x.size == 0:
        return math.nan, math.nan
    order = np.argsort(x)
    x, w = x[order], w[order] / np.sum(w[order])
    cdf = np.concatenate([[0.0], np.cumsum(w)])
    # for every start i the first end j with mass(i..j) >= prob
    ends = np.searchsorted(cdf, cdf[:-1] + prob - 1e-12, side="left") - 1
    valid = ends < x.size
    if not valid.any():
        return float(x[0]), float(x[-1])
    starts = np.flatnonzero(valid)
    lengths = x[ends[starts]] - x[starts]
    best = starts[int(np.argmin(lengths))]
    return float(x[best]), float(x[ends[best]])


def hdi(samples: np.ndarray, prob: float = HDI_PROB) -> tuple[float, float]:
    """Narrowest interval holding ``prob`` of the samples (NaNs ignored); (nan, nan) when empty."""
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return math.nan, math.nan
    width = min(int(math.floor(prob * n)), n - 1)
    if width == 0:
        return float(x[0]), float(x[-1])
    lengths = x[width:] - x[: n - width]
    start = int(np.argmin(lengths))
    return float(x[start]), float(x[start + width])


def draw_statistics(samples: np.ndarray, prob: float = HDI_PROB, period: float | None = None,
                    weights: np.ndarray | None = None) -> dict[str, float]:
    """Mean, sd, median and HDI of one parameter's draws (any shape, NaNs ignored); ``weights``
    broadcast against ``samples`` (e.g. one weight per chain, shape (chain, 1)).

    Angles (``period`` given, e.g. 2π) are summarised on the circle: the draws are unwrapped around their
    circular mean, so a posterior straddling ±π (or 0/π for an axis) gets one contiguous HDI, which may
    extend past the nominal range (e.g. [3.0, 3.3] rad), instead of a spurious interval spanning the circle.
    """
    x = np.asarray(samples, dtype=np.float64)
    w = None if weights is None else np.broadcast_to(np.asarray(weights, np.float64), x.shape).ravel()
    x = x.ravel()
    keep = np.isfinite(x)
    x = x[keep]
    w = None if w is None else w[keep]
    if x.size == 0:
        return {"mean": math.nan, "sd": math.nan, "median": math.nan, "hdi_low": math.nan, "hdi_high": math.nan}
    if period:
        x = unwrap_around_circular_mean(x, period, w)
    if w is None:
        low, high = hdi(x, prob)
        return {
            "mean": float(np.mean(x)),
            "sd": float(np.std(x, ddof=1)) if x.size > 1 else 0.0,
            "median": float(np.median(x)),
            "hdi_low": low,
            "hdi_high": high,
        }
    w = w / np.sum(w)
    mean = float(np.sum(w * x))
    low, high = weighted_hdi(x, w, prob)
    return {
        "mean": mean,
        "sd": float(np.sqrt(np.sum(w * (x - mean) ** 2))),
        "median": float(weighted_quantile(x, w, 0.5)),
        "hdi_low": low,
        "hdi_high": high,
    }


POOLING_METHOD = ("inverse-variance weighted mean of the snapshot medians (weights 1/sd², sd the posterior "
                  "sd of each snapshot; Gaussian approximation of each posterior), its error 1/sqrt(Σ 1/sd²), "
                  "and χ² = Σ (median - pooled)²/sd² over N - 1 degrees of freedom: a static source gives "
                  "χ²/(N-1) ≈ 1 (p = P(χ² larger) not small)")


def pooled_estimate(medians, sds, period: float | None = None) -> dict[str, float]:
    """Pool per-snapshot estimates of one parameter (see ``POOLING_METHOD``): ``mean``, ``sd`` (its
    error), ``chi2``, ``dof``, ``p_value`` and ``n``. Angles (``period``) are pooled on the circle: the
    medians are unwrapped around their circular mean first. Snapshots with a NaN or zero sd are left out."""
    from scipy.stats import chi2 as chi2_dist

    m = np.asarray(medians, np.float64)
    s = np.asarray(sds, np.float64)
    keep = np.isfinite(m) & np.isfinite(s) & (s > 0)
    m, s = m[keep], s[keep]
    if m.size == 0:
        return {"mean": math.nan, "sd": math.nan, "chi2": math.nan, "dof": 0, "p_value": math.nan, "n": 0}
    w = 1.0 / s**2
    if period:
        m = unwrap_around_circular_mean(m, period, w)
    mean = float(np.sum(w * m) / np.sum(w))
    chi2 = float(np.sum(w * (m - mean) ** 2))
    dof = int(m.size - 1)
    return {"mean": mean, "sd": float(1 / np.sqrt(np.sum(w))), "chi2": chi2, "dof": dof,
            "p_value": float(chi2_dist.sf(chi2, dof)) if dof > 0 else math.nan, "n": int(m.size)}
