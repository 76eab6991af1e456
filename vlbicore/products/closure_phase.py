"""Closure phases (rad): von Mises with κ = 1/σ² when independent (exact at ±180°, no wrap artefacts);
with the per-time-stamp covariance the wrapped residuals are whitened by its Cholesky factor and treated
as Gaussian."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import i0e

from vlbicore.products.base import LOG_2PI, ProductOptions, relative_sigma, wrap_phase, wrap_phase_np
from vlbicore.products.closure_sets import ClosureProduct, assemble, graphs_by_time, minimal_cycles


@dataclasses.dataclass(frozen=True, eq=False)
class ClosurePhaseProduct(ClosureProduct):
    """Closure phases (rad): values = sum_j signs[k, j] * arg V[rows[k, j]] (padding has sign 0)."""

    kind: ClassVar[str] = "cphase"

    @classmethod
    def build(cls, obs, rows: np.ndarray, options: ProductOptions) -> "ClosurePhaseProduct":
        return closure_phases(obs, rows, covariance=options.covariance)

    @staticmethod
    def predict_values(V, rows, signs=None):
        return wrap_phase(jnp.sum(signs * jnp.angle(V)[rows], axis=-1))

    @classmethod
    def residual_of(cls, difference):
        return wrap_phase(difference) if isinstance(difference, jnp.ndarray) else wrap_phase_np(difference)

    @staticmethod
    def independent_density(arrays: dict, predicted, closure_variance):
        kappa = 1.0 / closure_variance
        one_minus_cos = 1.0 - jnp.cos(arrays["values"] - predicted)
        # von Mises: κ cos Δ − log(2π I0(κ)), with I0 through i0e so that large κ does not overflow
        logp = -kappa * one_minus_cos - LOG_2PI - jnp.log(i0e(kappa))
        return logp, 2.0 * kappa * one_minus_cos

    def chi_squared(self, predicted) -> tuple[float, int]:
        if self.cov is not None:
            return super().chi_squared(predicted)
        # the wrap-safe form Σ 2(1 − cos Δ)/σ² (EHT convention)
        chi2 = np.sum(2.0 * (1.0 - np.cos(self.residuals(predicted))) / self.sigma**2)
        return float(chi2), len(self.values)


def closure_phases(obs, rows: np.ndarray | None = None, *, covariance: bool = False) -> ClosurePhaseProduct:
    """Minimal closure-phase set per time stamp from the given rows (default: all rows)."""
    rows = np.arange(len(obs)) if rows is None else np.asarray(rows)
    rows = rows[np.abs(obs.vis[rows]) > 0]
    phase_sigma = relative_sigma(obs)
    loops = []
    for time, graph in graphs_by_time(obs, rows, phase_sigma):
        loops.extend((time, graph, loop) for loop in minimal_cycles(graph))
    return assemble(obs, loops, ClosurePhaseProduct,
                    value_fn=lambda r, s: wrap_phase_np(np.sum(s * np.angle(obs.vis[r]), axis=-1)),
                    edge_sigma=phase_sigma, covariance=covariance, min_width=3)
