"""Visibility amplitudes (Jy): a Gaussian on debiased amplitudes (default) or the Rice density of the
raw amplitudes (``amp_likelihood: rice``)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import i0e

from vlbicore.errors import VlbiError
from vlbicore.products.base import Product, ProductOptions, debiased_amplitude, pad, row_meta

AMP_LIKELIHOODS = ("gauss", "rice")


@dataclasses.dataclass(frozen=True, eq=False)
class AmplitudeProduct(Product):
    """Debiased visibility amplitudes (Jy). Amplitudes below their sigma are kept, debiased to 0: they
    still say the flux on that baseline is small, and dropping them would bias the set upwards."""

    kind: ClassVar[str] = "amp"

    @classmethod
    def build(cls, obs, rows: np.ndarray, options: ProductOptions) -> "AmplitudeProduct":
        return cls(rows=rows, values=debiased_amplitude(obs.vis[rows], obs.sigma[rows]), sigma=obs.sigma[rows],
                   **row_meta(obs, rows))

    @staticmethod
    def predict_values(V, rows, signs=None):
        return jnp.abs(V[rows])

    def likelihood_arrays(self, obs, options: ProductOptions, sizes: dict) -> tuple[str, dict]:
        size = sizes["n"]
        if options.amp_likelihood == "gauss":
            return super().likelihood_arrays(obs, options, sizes)
        if options.amp_likelihood == "rice":
            arrays = self.error_inputs(obs, size)
            arrays["raw"] = pad(np.abs(obs.vis)[self.rows], size, 1.0)
            return "rice", arrays
        raise VlbiError(f"amp_likelihood: {options.amp_likelihood!r} is unknown; use one of "
                        f"{', '.join(AMP_LIKELIHOODS)}")

    @staticmethod
    def log_density(variant: str, arrays: dict, predicted, variance):
        if variant == "rice":
            # Rice density of the raw amplitude A given the model amplitude M:
            # log p = log(A/σ²) − (A² + M²)/(2σ²) + log I0(A M/σ²); I0 via the scaled i0e for stability.
            A, s2 = arrays["raw"], variance
            x = A * predicted / s2
            logp = jnp.log(A / s2) - (A**2 + predicted**2) / (2 * s2) + jnp.log(i0e(x)) + x
            return logp, (A - predicted) ** 2 / s2
        return Product.log_density(variant, arrays, predicted, variance)
