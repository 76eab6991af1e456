"""The unconstrained space the optimiser and NUTS work in, and the prior it carries.

Every free parameter has an independent uniform prior on its box [low, high]; the sampler works on
``z = logit((x − low)/(high − low))``, whose log-Jacobian makes the density exact for the prior.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import expit

from vlbicore.errors import VlbiError

@dataclasses.dataclass(frozen=True)
class Box:
    """Independent uniform priors; ``to_params`` maps unconstrained ``z`` to named parameters."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, model) -> "Box":
        params = model.params
        if not params:
            raise VlbiError(f"model {model.name!r}: no free parameters left to fit; unfix at least one")
        low = np.array([p.low for p in params], dtype=np.float64)
        high = np.array([p.high for p in params], dtype=np.float64)
        bad = [p.name for p in params if not (np.isfinite(p.low) and np.isfinite(p.high) and p.high > p.low)]
        if bad:
            raise VlbiError(f"priors: {', '.join(bad)} need a finite box low < high; fix the prior range")
        return cls(tuple(p.name for p in params), low, high)

    def to_values(self, z):
        # NumPy in, NumPy out: host-side callers must not pay an eager JAX compile per call
        sigmoid = expit if isinstance(z, np.ndarray) else jax.nn.sigmoid
        return self.low + (self.high - self.low) * sigmoid(z)

    def to_params(self, z) -> dict:
        x = self.to_values(z)
        return {name: x[..., i] for i, name in enumerate(self.names)}

    def log_jacobian(self, z):
        # d x / d z = (high − low) σ(z)(1 − σ(z)); log σ(z) + log σ(−z) is stable for large |z|
        return jnp.sum(jnp.log(self.high - self.low) + jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z))

    def to_unconstrained(self, x):
        frac = np.clip((np.asarray(x) - self.low) / (self.high - self.low), 1e-9, 1 - 1e-9)
        return np.log(frac) - np.log1p(-frac)


def log_posterior_fn(box: Box, loglike):
    """Log posterior density in the unconstrained space (uniform prior density is a constant)."""

    def log_post(z):
        return loglike(box.to_params(z)) + box.log_jacobian(z)

    return log_post
