"""Goodness of fit: χ² and reduced χ² per product kind, from the model's predictions (NumPy)."""
from __future__ import annotations

from typing import Mapping

import jax
import numpy as np


def chi_squared_of(products: Mapping, predicted: Mapping) -> dict[str, tuple[float, int]]:
    """χ² and number of data per product, from the model's ``predicted`` values (kind -> array).

    Each kind owns its χ² (closure phases use the wrap-safe Σ 2(1 − cos Δ)/σ², the EHT convention; with a
    covariance the residuals are whitened, so correlated closures are not double counted).
    """
    return {kind: product.chi_squared(np.asarray(predicted[kind])) for kind, product in products.items()}


def predictions(products: Mapping, model, p) -> dict[str, np.ndarray]:
    """Model predictions of every product kind at parameters ``p``, in one compiled call."""
    obs = products.obs

    def predict(p, u, v):
        V = model.visibility(p, u, v)
        return {kind: product.predict(V) for kind, product in products.items()}

    p = {k: np.asarray(x) for k, x in p.items()}
    return jax.tree.map(np.asarray, jax.jit(predict)(p, np.asarray(obs.u), np.asarray(obs.v)))


def chi_squared(products: Mapping, model, p) -> dict[str, tuple[float, int]]:
    """χ² and number of data per product at parameters ``p`` (see :func:`chi_squared_of`)."""
    return chi_squared_of(products, predictions(products, model, p))


def reduced_chi_squared_of(products: Mapping, predicted: Mapping) -> dict[str, tuple[float, int]]:
    """Reduced χ² (χ²/N) and N per product kind, from the model's predicted values."""
    return {kind: (chi2 / max(n, 1), n) for kind, (chi2, n) in chi_squared_of(products, predicted).items()}


def reduced_chi_squared(products: Mapping, model, p) -> dict[str, tuple[float, int]]:
    """Reduced χ² (χ²/N) and N per product kind at parameters ``p``."""
    return reduced_chi_squared_of(products, predictions(products, model, p))
