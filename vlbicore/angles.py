"""Angles on the circle: posterior draws of position angles summarised without a wrap artefact.

An angle posterior straddling ±π (or 0/π for an axis) is one narrow distribution, but its draws sit at
both ends of the nominal range; linear means, medians and HDIs of them are wrong. Unwrapping the draws
around their circular mean makes them contiguous again.
"""
from __future__ import annotations

import numpy as np


def unwrap_around_circular_mean(x: np.ndarray, period: float) -> np.ndarray:
    """Angles mapped into one period centred on their circular mean; the mean itself is put on the branch
    of the smallest draw, so values stay near the parameter's own range (e.g. [0, π) for an axis PA)."""
    phase = 2 * np.pi * x / period
    centre = np.arctan2(np.mean(np.sin(phase)), np.mean(np.cos(phase))) * period / (2 * np.pi)
    if centre < np.min(x):
        centre += period * np.ceil((np.min(x) - centre) / period)
    return centre + (x - centre + period / 2) % period - period / 2
