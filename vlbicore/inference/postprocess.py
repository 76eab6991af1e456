"""Stage 3 of a fit: what the draws say beyond the draws themselves (medians, prior edges, modes)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from vlbicore.inference.modes import Mode
from vlbicore.inference.transforms import Box
from vlbicore.statistics import circular_median


def mode_records(modes: list[Mode], box: Box, chains_per_mode: dict[int, int], limit: int = 10) -> list[dict]:
    """The modes as the store keeps them: log posterior, parameter values, starts and chains in each."""
    return [
        {
            "lp": m.lp,
            "values": {n: float(x) for n, x in zip(box.names, m.values)},
            "starts": m.starts,
            "chains": chains_per_mode.get(i, 0),
        }
        for i, m in enumerate(modes[:limit])
    ]


def assign_chains_to_modes(chain_means: np.ndarray, modes: list[Mode], box: Box) -> dict[int, int]:
    """How many chains ended in each mode (by the nearest mode to each chain's mean, in prior widths)."""
    counts: dict[int, int] = {}
    width = box.high - box.low
    centres = np.array([m.values for m in modes])
    for mean in chain_means:
        i = int(np.argmin(np.max(np.abs(centres - mean) / width, axis=1)))
        counts[i] = counts.get(i, 0) + 1
    return counts


def _wraps_around(box: Box, i: int, periods: Mapping[str, float]) -> bool:
    """An angle whose prior box is one whole period: its two edges are the same point on the circle."""
    period = periods.get(box.names[i])
    return bool(period) and abs((box.high[i] - box.low[i]) - period) < 1e-9 * period


def posterior_median(box: Box, values: np.ndarray, periods: Mapping[str, float]) -> dict[str, float]:
    """Median of every parameter's draws (``values``: draws × params); an angle whose box is a whole
    period gets its circular median, put back inside the box (a posterior straddling 0/2π has its linear
    median on the far side of the circle)."""
    out = {}
    for i, name in enumerate(box.names):
        x = values[:, i]
        if _wraps_around(box, i, periods):
            out[name] = circular_median(x, periods[name], box.low[i])
        else:
            out[name] = float(np.median(x))
    return out


def prior_edge_warnings(box: Box, best: np.ndarray, median: np.ndarray | None = None,
                        periods: Mapping[str, float] | None = None, margin: float = 0.005) -> list[str]:
    """Parameters whose best value, or posterior median, sits on the edge of its prior box: the prior may
    exclude what the data prefer (m-ring coefficients on the edge are a warning too: the asymmetry
    saturates). The optimiser may stop just short of an edge the posterior then piles up against. Angles
    whose box is a whole period have no edge."""
    width = box.high - box.low
    out = []
    points = [("best fit", best)] + ([("posterior median", median)] if median is not None else [])
    for i, (name, lo, hi, w) in enumerate(zip(box.names, box.low, box.high, width)):
        if _wraps_around(box, i, periods or {}):
            continue
        for label, values in points:
            x = values[i]
            if x - lo < margin * w or hi - x < margin * w:
                out.append(f"{name}: {label} {x:.4g} at the edge of its prior [{lo:.4g}, {hi:.4g}]; "
                           "the prior may exclude what the data prefer; widen it")
                break
    return out
