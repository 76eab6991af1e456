"""Likelihoods of VLBI data products given a sky model, as pure JAX functions.

One pointwise log-likelihood per product kind, so the fitter can store per-datum values (for LOO/WAIC)
and sum them for sampling:

- ``vis``: complex Gaussian on real and imaginary parts, each with σ.
- ``amp``: Gaussian on debiased amplitudes (default) or the Rice distribution on raw amplitudes.
- ``cphase``: von Mises with κ = 1/σ², correct at ±180° (no wrap artefacts); with a covariance the
  wrapped residuals are whitened by its Cholesky factor and treated as Gaussian.
- ``lcamp``: Gaussian (diagonal, or whitened by the covariance).

A fractional systematic error ``f`` is added in quadrature to the visibility sigmas *before* the
products are formed (see :func:`with_systematic`), so it propagates into the closure errors correctly.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import i0e

from .errors import VlbiError
from .products import wrap_phase

LOG_2PI = math.log(2.0 * math.pi)
AMP_LIKELIHOODS = ("gauss", "rice")


def with_systematic(obs, fraction: float):
    """Observation with σ² → σ² + (fraction·|V|)²: a fractional systematic error on every visibility."""
    if fraction < 0 or not np.isfinite(fraction):
        raise VlbiError(f"systematic: {fraction!r} is not a fraction >= 0; use e.g. 0.02 for 2 %")
    if fraction == 0:
        return obs
    sigma = np.sqrt(obs.sigma**2 + (fraction * np.abs(obs.vis)) ** 2)
    return dataclasses.replace(obs, sigma=sigma)


def _whitener(cov):
    """Inverse Cholesky factor and log-determinant term of a covariance (NumPy, done once)."""
    chol = np.linalg.cholesky(np.asarray(cov, dtype=np.float64))
    inv = np.linalg.inv(chol)
    return inv, np.log(np.diag(chol))


def _gaussian_pointwise(residual, sigma):
    z = residual / sigma
    return -0.5 * z**2 - jnp.log(sigma) - 0.5 * LOG_2PI


def _whitened_pointwise(residual, whitener, log_diag):
    z = whitener @ residual
    return -0.5 * z**2 - log_diag - 0.5 * LOG_2PI


def _vis_term(product):
    obs_re, obs_im = np.real(product.values), np.imag(product.values)
    sigma = np.asarray(product.sigma)

    def term(V):
        model = product.predict(V)
        return _gaussian_pointwise(jnp.real(model) - obs_re, sigma) + _gaussian_pointwise(
            jnp.imag(model) - obs_im, sigma
        )

    return term


def _amp_term(product, raw_amplitudes, kind: str):
    sigma = np.asarray(product.sigma)
    if kind == "gauss":
        values = np.asarray(product.values)

        def term(V):
            return _gaussian_pointwise(product.predict(V) - values, sigma)

        return term
    if kind == "rice":
        # Rice density of the raw amplitude A given the model amplitude M:
        # log p = log(A/σ²) − (A² + M²)/(2σ²) + log I0(A M/σ²); I0 via the scaled i0e for stability.
        A = np.asarray(raw_amplitudes)

        def term(V):
            M = product.predict(V)
            x = A * M / sigma**2
            return jnp.log(A / sigma**2) - (A**2 + M**2) / (2 * sigma**2) + jnp.log(i0e(x)) + x

        return term
    raise VlbiError(f"amp_likelihood: {kind!r} is unknown; use one of {', '.join(AMP_LIKELIHOODS)}")


def _cphase_term(product):
    values = np.asarray(product.values)
    if product.cov is not None:
        whitener, log_diag = _whitener(product.cov)

        def term(V):
            return _whitened_pointwise(wrap_phase(values - product.predict(V)), whitener, log_diag)

        return term
    kappa = 1.0 / np.asarray(product.sigma) ** 2
    # log von Mises normaliser 2π I0(κ), written with i0e so that large κ does not overflow
    log_norm = LOG_2PI + np.log(i0e(kappa)) + kappa

    def term(V):
        return kappa * jnp.cos(values - product.predict(V)) - log_norm

    return term


def _lcamp_term(product):
    values = np.asarray(product.values)
    if product.cov is not None:
        whitener, log_diag = _whitener(product.cov)

        def term(V):
            return _whitened_pointwise(values - product.predict(V), whitener, log_diag)

        return term
    sigma = np.asarray(product.sigma)

    def term(V):
        return _gaussian_pointwise(product.predict(V) - values, sigma)

    return term


def product_terms(products: Mapping, obs, *, amp_likelihood: str = "gauss") -> dict[str, Callable]:
    """Pointwise log-likelihood function ``V -> array`` for every product kind."""
    terms = {}
    for kind, product in products.items():
        if kind == "vis":
            terms[kind] = _vis_term(product)
        elif kind == "amp":
            terms[kind] = _amp_term(product, np.abs(obs.vis)[product.rows], amp_likelihood)
        elif kind == "cphase":
            terms[kind] = _cphase_term(product)
        elif kind == "lcamp":
            terms[kind] = _lcamp_term(product)
        else:
            raise VlbiError(f"products: {kind!r} is unknown; use vis, amp, cphase or lcamp")
    return terms


def make_log_likelihood(products: Mapping, model, *, amp_likelihood: str = "gauss"):
    """Build ``(loglike, pointwise)`` for a sky model and data products.

    ``pointwise(p)`` returns ``{kind: per-datum log-likelihood}``; ``loglike(p)`` their total. ``p`` maps
    the model's free parameter names to scalars. Both are pure and jit/vmap/grad-safe.
    """
    obs = products.obs
    u = jnp.asarray(obs.u)
    v = jnp.asarray(obs.v)
    terms = product_terms(products, obs, amp_likelihood=amp_likelihood)

    def pointwise(p):
        V = model.visibility(p, u, v)
        return {kind: term(V) for kind, term in terms.items()}

    def loglike(p):
        return sum(jnp.sum(x) for x in pointwise(p).values())

    return loglike, pointwise


def chi_squared_of(products: Mapping, predicted: Mapping) -> dict[str, tuple[float, int]]:
    """χ² and number of data per product, from the model's ``predicted`` values (kind -> array).

    Closure phases use the wrap-safe form Σ 2(1 − cos Δ)/σ² (EHT convention); with a covariance every
    product uses the whitened residuals, so correlated closures are not double counted. Plain NumPy.
    """
    out = {}
    for kind, product in products.items():
        pred = np.asarray(predicted[kind])
        values = np.asarray(product.values)
        if kind == "vis":
            r = np.concatenate([pred.real - values.real, pred.imag - values.imag])
            chi2 = float(np.sum((r / np.concatenate([product.sigma, product.sigma])) ** 2))
            n = 2 * len(values)
        elif kind == "cphase" and product.cov is None:
            chi2 = float(np.sum(2.0 * (1.0 - np.cos(values - pred)) / product.sigma**2))
            n = len(values)
        else:
            resid = pred - values
            if kind == "cphase":
                resid = np.angle(np.exp(1j * resid))
            if product.cov is not None:
                whitener, _ = _whitener(product.cov)
                chi2 = float(np.sum((whitener @ resid) ** 2))
            else:
                chi2 = float(np.sum((resid / product.sigma) ** 2))
            n = len(values)
        out[kind] = (chi2, n)
    return out


def predictions(products: Mapping, model, p) -> dict[str, np.ndarray]:
    """Model predictions of every product kind at parameters ``p``, in one compiled call."""
    obs = products.obs

    def predict(p, u, v):
        V = model.visibility(p, u, v)
        return {kind: product.predict(V) for kind, product in products.items()}

    p = {k: jnp.asarray(x) for k, x in p.items()}
    return jax.tree.map(np.asarray, jax.jit(predict)(p, jnp.asarray(obs.u), jnp.asarray(obs.v)))


def chi_squared(products: Mapping, model, p) -> dict[str, tuple[float, int]]:
    """χ² and number of data per product at parameters ``p`` (see :func:`chi_squared_of`)."""
    return chi_squared_of(products, predictions(products, model, p))


def reduced_chi_squared_of(products: Mapping, predicted: Mapping) -> dict[str, tuple[float, int]]:
    """Reduced χ² (χ²/N) and N per product kind, from the model's predicted values."""
    return {kind: (chi2 / max(n, 1), n) for kind, (chi2, n) in chi_squared_of(products, predicted).items()}


def reduced_chi_squared(products: Mapping, model, p) -> dict[str, tuple[float, int]]:
    """Reduced χ² (χ²/N) and N per product kind at parameters ``p``."""
    return reduced_chi_squared_of(products, predictions(products, model, p))
