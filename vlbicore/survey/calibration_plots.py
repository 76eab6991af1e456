"""Plots of a simulation-based calibration: ECDF-difference plots of the PIT values with simultaneous
confidence bands (Säilynoja, Bürkner & Vehtari 2022), one panel per parameter, one figure per model;
and the coverage of the 50 / 68 / 95 % intervals with their binomial confidence intervals.

Reads the tables of :mod:`vlbicore.calibration` only (plain CSV columns ``model``, ``parameter``,
``pit``, ``in50`` ...). The bands come from ``arviz_stats.ecdf_utils``: for n PIT values the ECDF is
evaluated at i/n, and the band is the pointwise binomial band whose level is raised (by simulation of
uniform samples) until a uniform sample's whole ECDF stays inside it with probability ``ci_prob``.
A calibrated fit's ECDF difference stays inside the band; a ∩ shape means overdispersed PIT values
(intervals too wide), a ∪ shape — PIT values piling up at 0 and 1 — means intervals too narrow
(overconfident), a slope means bias.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from arviz_stats.ecdf_utils import ecdf_pit  # noqa: E402

BAND_PROB = 0.95
BAND_SIMULATIONS = 1000


def ecdf_difference(pit: np.ndarray, ci_prob: float = BAND_PROB, n_simulations: int = BAND_SIMULATIONS,
                    seed: int = 214):
    """(x, ECDF(x) − x, band low − x, band high − x) of PIT values ``pit``, with the simultaneous band."""
    pit = np.asarray(pit, np.float64)
    x, ecdf, low, high = ecdf_pit(pit, ci_prob, n_simulations, rng=np.random.default_rng(seed))
    return x, ecdf - x, low - x, high - x


def outside_band(pit: np.ndarray, ci_prob: float = BAND_PROB) -> bool:
    """Whether the ECDF of ``pit`` leaves the simultaneous band anywhere (evidence of miscalibration)."""
    _, diff, low, high = ecdf_difference(pit, ci_prob)
    return bool(np.any(diff < low - 1e-12) or np.any(diff > high + 1e-12))


def ecdf_difference_plots(frame: pd.DataFrame, out_dir, *, ci_prob: float = BAND_PROB) -> dict:
    """One PNG per model (``ecdf_<model>.png``: a panel per parameter) and one of the interval coverage
    (``coverage_<model>.png``) in ``out_dir``; returns {name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for model, group in frame.groupby("model", sort=True):
        names = sorted(group.parameter.unique())
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            pit = group.loc[group.parameter == name, "pit"].to_numpy()
            x, diff, low, high = ecdf_difference(pit, ci_prob)
            ax.fill_between(x, low, high, step="post", color="0.85", label=f"{ci_prob:.0%} simultaneous band")
            outside = bool(np.any(diff < low - 1e-12) or np.any(diff > high + 1e-12))
            ax.step(x, diff, where="post", color="C3" if outside else "C0")
            ax.axhline(0, color="0.4", lw=0.6)
            ax.set_title(f"{name} (n={len(pit)})", fontsize=9)
            ax.set_xlabel("PIT of the truth")
            ax.set_ylabel("ECDF − uniform")
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize=7, loc="lower center")
        fig.suptitle(f"Simulation-based calibration: {model}", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"ecdf_{model}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written[f"ecdf_{model}"] = path
        written[f"coverage_{model}"] = coverage_plot(group, out_dir / f"coverage_{model}.png", model)
    return written


def coverage_plot(frame: pd.DataFrame, path, model: str) -> Path:
    """Observed coverage of the 50 / 68 / 95 % intervals per parameter with Jeffreys 95 % intervals."""
    from scipy import stats

    names = sorted(frame.parameter.unique())
    levels = [int(c[2:]) for c in frame.columns if c.startswith("in") and c[2:].isdigit()]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.2))
    for j, level in enumerate(levels):
        for i, name in enumerate(names):
            hits = frame.loc[frame.parameter == name, f"in{level}"].astype(bool)
            n, k = len(hits), int(hits.sum())
            low = stats.beta.ppf(0.025, k + 0.5, n - k + 0.5) if k > 0 else 0.0
            high = stats.beta.ppf(0.975, k + 0.5, n - k + 0.5) if k < n else 1.0
            x = i + (j - 1) * 0.2
            ax.errorbar(x, k / n, yerr=[[k / n - low], [high - k / n]], fmt="o", color=f"C{j}", ms=4,
                        label=f"{level} % interval" if i == 0 else None)
        ax.axhline(level / 100, color=f"C{j}", ls=":", lw=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("fraction containing the truth")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Interval coverage: {model}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
