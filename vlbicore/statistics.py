"""Posterior statistics shared by the fitter, the store and the gather: HDIs and circular summaries.

An angle posterior straddling ±π (or 0/π for an axis) is one narrow distribution, but its draws sit at
both ends of the nominal range; linear means, medians and HDIs of them are wrong. Unwrapping the draws
around their circular mean makes them contiguous again.
"""
from __future__ import annotations

import math

import numpy as np

HDI_PROB = 0.94


def unwrap_around_circular_mean(x: np.ndarray, period: float) -> np.ndarray:
    """Angles mapped into one period centred on their circular mean; the mean itself is put on the branch
    of the smallest draw, so values stay near the parameter's own range (e.g. [0, π) for an axis PA)."""
    phase = 2 * np.pi * x / period
    centre = np.arctan2(np.mean(np.sin(phase)), np.mean(np.cos(phase))) * period / (2 * np.pi)
    if centre < np.min(x):
        centre += period * np.ceil((np.min(x) - centre) / period)
    return centre + (x - centre + period / 2) % period - period / 2


def circular_median(x: np.ndarray, period: float, low: float) -> float:
    """Median of angle draws on the circle, put back into [low, low + period)."""
    return float(low + (np.median(unwrap_around_circular_mean(x, period)) - low) % period)


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


def draw_statistics(samples: np.ndarray, prob: float = HDI_PROB, period: float | None = None) -> dict[str, float]:
    """Mean, sd, median and HDI of one parameter's draws (any shape, NaNs ignored).

    Angles (``period`` given, e.g. 2π) are summarised on the circle: the draws are unwrapped around their
    circular mean, so a posterior straddling ±π (or 0/π for an axis) gets one contiguous HDI, which may
    extend past the nominal range (e.g. [3.0, 3.3] rad), instead of a spurious interval spanning the circle.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": math.nan, "sd": math.nan, "median": math.nan, "hdi_low": math.nan, "hdi_high": math.nan}
    if period:
        x = unwrap_around_circular_mean(x, period)
    low, high = hdi(x, prob)
    return {
        "mean": float(np.mean(x)),
        "sd": float(np.std(x, ddof=1)) if x.size > 1 else 0.0,
        "median": float(np.median(x)),
        "hdi_low": low,
        "hdi_high": high,
    }
