"""Complex visibilities (Jy): a Gaussian on the real and on the imaginary part, each with σ."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from vlbicore.products.base import Product, ProductOptions, gaussian_pointwise, pad, row_meta


@dataclasses.dataclass(frozen=True, eq=False)
class VisibilityProduct(Product):
    """Complex visibilities (Jy); sigma is the standard deviation of each real and imaginary part."""

    kind: ClassVar[str] = "vis"
    degrees_of_freedom: ClassVar[int] = 2  # real and imaginary part

    @classmethod
    def build(cls, obs, rows: np.ndarray, options: ProductOptions) -> "VisibilityProduct":
        return cls(rows=rows, values=obs.vis[rows], sigma=obs.sigma[rows], **row_meta(obs, rows))

    @staticmethod
    def predict_values(V, rows, signs=None):
        return V[rows]

    def likelihood_arrays(self, obs, options: ProductOptions, sizes: dict) -> tuple[str, dict]:
        size = sizes["n"]
        values = np.asarray(self.values)
        arrays = self.error_inputs(obs, size)
        arrays.update(re=pad(values.real, size, 0.0), im=pad(values.imag, size, 0.0))
        return "gauss", arrays

    @staticmethod
    def log_density(variant: str, arrays: dict, predicted, variance):
        re, re2 = gaussian_pointwise(jnp.real(predicted) - arrays["re"], variance)
        im, im2 = gaussian_pointwise(jnp.imag(predicted) - arrays["im"], variance)
        return re + im, re2 + im2

    def chi_squared(self, predicted) -> tuple[float, int]:
        resid = self.residuals(predicted)
        chi2 = float(np.sum((resid.real / self.sigma) ** 2 + (resid.imag / self.sigma) ** 2))
        return chi2, 2 * len(self.values)
