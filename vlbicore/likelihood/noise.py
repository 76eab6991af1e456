"""Error terms added to the thermal noise of the data before products are formed."""
from __future__ import annotations

import dataclasses

import numpy as np

from vlbicore.errors import VlbiError


def with_systematic(obs, fraction: float):
    """Observation with σ² → σ² + (fraction·|V|)²: a fractional systematic error on every visibility,
    added *before* the products are formed, so it propagates into the closure errors correctly."""
    if fraction < 0 or not np.isfinite(fraction):
        raise VlbiError(f"systematic: {fraction!r} is not a fraction >= 0; use e.g. 0.02 for 2 %")
    if fraction == 0:
        return obs
    sigma = np.sqrt(obs.sigma**2 + (fraction * np.abs(obs.vis)) ** 2)
    return dataclasses.replace(obs, sigma=sigma)
