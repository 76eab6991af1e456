"""Stage 3 of a fit: what the draws say beyond the draws themselves (medians, prior edges, modes)."""
from __future__ import annotations

import numpy as np

from vlbicore.inference.modes import Mode
from vlbicore.inference.transforms import ParameterSpace
from vlbicore.statistics import weighted_median

MASS_THRESHOLD = 0.01  # a mode holding more than this fraction of the mass is sampled too
MAX_SAMPLED_MODES = 4


def modes_to_sample(modes: list[Mode]) -> list[int]:
    """Indices of the modes that get chains: every mode above ``MASS_THRESHOLD`` of the mass whose mass
    estimate is usable (at most ``MAX_SAMPLED_MODES``, largest first), and at least the largest."""
    chosen = [i for i, m in enumerate(modes) if m.mass > MASS_THRESHOLD and m.laplace_ok][:MAX_SAMPLED_MODES]
    if not chosen:
        chosen = [int(np.argmax([m.mass for m in modes]))]
    return chosen


def mode_records(modes: list[Mode], space: ParameterSpace, chains_per_mode: dict[int, int],
                 sampled: list[int], limit: int = 10) -> list[dict]:
    """The modes as the store keeps them: log posterior, Laplace mass, parameter values, starts, the
    chains started in each, and whether it was sampled."""
    return [
        {
            "lp": m.lp,
            "log_mass": m.log_mass,
            "mass": m.mass,
            "laplace_ok": m.laplace_ok,
            "sampled": i in sampled,
            "values": {n: float(x) for n, x in zip(space.names, m.values)},
            "starts": m.starts,
            "chains": chains_per_mode.get(i, 0),
        }
        for i, m in enumerate(modes[:limit])
    ]


def posterior_median(space: ParameterSpace, values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted median of every parameter's draws (``values``: draws × params); angles on the circle get
    their circular median, put back inside the box."""
    out = np.empty(values.shape[1])
    for i, prior in enumerate(space.priors):
        period = getattr(prior, "period", None) if prior.circular else None
        out[i] = weighted_median(values[:, i], weights, period=period, low=getattr(prior, "low", 0.0))
    return out


def prior_edge_warnings(space: ParameterSpace, best: np.ndarray, median: np.ndarray | None = None,
                        margin: float = 0.005) -> list[str]:
    """Parameters whose best value, or posterior median, sits on the edge of its prior box: the prior may
    exclude what the data prefer (m-ring coefficients on the edge are a warning too: the asymmetry
    saturates). The optimiser may stop just short of an edge the posterior then piles up against. Angles
    on the circle and unbounded priors have no edge."""
    out = []
    points = [("best fit", best)] + ([("posterior median", median)] if median is not None else [])
    for i, lo, hi in space.box_edges():
        width = hi - lo
        for label, values in points:
            x = values[i]
            if x - lo < margin * width or hi - x < margin * width:
                out.append(f"{space.names[i]}: {label} {x:.4g} at the edge of its prior [{lo:.4g}, {hi:.4g}]; "
                           "the prior may exclude what the data prefer; widen it")
                break
    return out
