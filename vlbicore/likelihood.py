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
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import i0e

from .errors import VlbiError
from .products import predict_product, wrap_phase

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


# --------------------------------------------------------------------------------------------------
# Likelihood data: every number a likelihood needs, as arrays passed to the compiled programs.
#
# The data are an *argument* of the compiled programs, not constants inside them, and their lengths can
# be padded up to a few fixed sizes: two files of similar size then run the very same program, so the
# persistent compilation cache compiles a model once for many epochs of a campaign (compiling is about
# 40 % of a short CPU fit). Padded entries repeat a real datum's indices with zero weight and are masked
# out of every sum; the per-datum outputs are cut back to the real lengths on the host.


def padded_size(n: int) -> int:
    """The smallest m·2^k (m = 4…7) that holds ``n`` entries, at least 8: at most 25 % padding, and about
    four sizes per doubling, so files of similar size share their compiled programs."""
    if n <= 8:
        return 8
    eighth = 1 << ((n - 1).bit_length() - 3)  # n lies in (4, 8] eighths of the next power of two
    return next(m * eighth for m in (5, 6, 7, 8) if m * eighth >= n)


def _pad(array: np.ndarray, size: int, fill) -> np.ndarray:
    """``array`` extended along axis 0 to ``size`` entries with ``fill`` (a scalar or one entry)."""
    array = np.asarray(array)
    extra = size - array.shape[0]
    if extra <= 0:
        return array
    block = np.broadcast_to(np.asarray(fill, dtype=array.dtype), (extra, *array.shape[1:]))
    return np.concatenate([array, block])


def _pad_square(matrix: np.ndarray, size: int) -> np.ndarray:
    """A K×K whitener embedded in a size×size identity (padded residuals are zero and masked anyway)."""
    out = np.eye(size, dtype=np.float64)
    out[: matrix.shape[0], : matrix.shape[0]] = matrix
    return out


def _index_arrays(product, size: int) -> dict:
    """rows (and signs) of a product, padded with copies of its first datum's rows and zero signs, so a
    padded entry reads real visibilities (no log of an empty baseline) and contributes nothing."""
    rows = np.asarray(product.rows)
    fill = rows[0] if len(rows) else np.zeros(rows.shape[1:], dtype=rows.dtype)
    arrays = {"rows": _pad(rows, size, fill), "mask": _pad(np.ones(len(rows), bool), size, False)}
    if hasattr(product, "signs"):
        arrays["signs"] = _pad(np.asarray(product.signs, dtype=np.float64), size, 0.0)
    return arrays


def _kind_arrays(kind: str, product, obs, amp_likelihood: str, size: int) -> tuple[str, dict]:
    """(variant, arrays) of one product kind; the variant picks the density (static, not data)."""
    a = _index_arrays(product, size)
    values = np.asarray(product.values)
    sigma = _pad(np.asarray(product.sigma, dtype=np.float64), size, 1.0)
    if kind == "vis":
        return "gauss", {**a, "re": _pad(values.real, size, 0.0), "im": _pad(values.imag, size, 0.0), "sigma": sigma}
    if kind == "amp":
        if amp_likelihood == "gauss":
            return "gauss", {**a, "values": _pad(values, size, 0.0), "sigma": sigma}
        if amp_likelihood == "rice":
            raw = np.abs(obs.vis)[product.rows]
            return "rice", {**a, "raw": _pad(raw, size, 1.0), "sigma": sigma}
        raise VlbiError(f"amp_likelihood: {amp_likelihood!r} is unknown; use one of {', '.join(AMP_LIKELIHOODS)}")
    if kind not in ("cphase", "lcamp"):
        raise VlbiError(f"products: {kind!r} is unknown; use vis, amp, cphase or lcamp")
    a["values"] = _pad(values, size, 0.0)
    if product.cov is not None:
        whitener, log_diag = _whitener(product.cov)
        return "whitened", {**a, "whitener": _pad_square(whitener, size), "log_diag": _pad(log_diag, size, 0.0)}
    if kind == "lcamp":
        return "gauss", {**a, "sigma": sigma}
    kappa = 1.0 / sigma**2
    # log von Mises normaliser 2π I0(κ), written with i0e so that large κ does not overflow
    return "von_mises", {**a, "kappa": kappa, "log_norm": LOG_2PI + np.log(i0e(kappa)) + kappa}


def likelihood_data(products: Mapping, *, amp_likelihood: str = "gauss", pad: bool = False) -> tuple[dict, dict]:
    """``(layout, data)`` for :func:`pointwise_log_likelihood` and :func:`predicted_products`.

    ``data`` is a pytree of NumPy arrays (uv coordinates, and per product kind its indices, values and
    weights); ``layout`` is static: ``kinds`` maps each kind to its density, ``lengths`` each kind to its
    real length (where :func:`unpad` cuts per-datum outputs). With ``pad``, every length is rounded up
    by :func:`padded_size`.
    """
    obs = products.obs
    u, v = np.asarray(obs.u, dtype=np.float64), np.asarray(obs.v, dtype=np.float64)
    n_uv = padded_size(len(u)) if pad else len(u)
    data = {"u": _pad(u, n_uv, u[:1] if len(u) else 0.0), "v": _pad(v, n_uv, v[:1] if len(v) else 0.0)}
    variants, lengths = {}, {}
    for kind, product in products.items():
        size = padded_size(product.n) if pad else product.n
        variants[kind], data[kind] = _kind_arrays(kind, product, obs, amp_likelihood, size)
        lengths[kind] = product.n
    return {"kinds": variants, "lengths": lengths}, data


def _density(kind: str, variant: str, a: dict, predicted):
    if variant == "whitened":
        residual = a["values"] - predicted
        residual = wrap_phase(residual) if kind == "cphase" else residual
        return _whitened_pointwise(residual, a["whitener"], a["log_diag"])
    if variant == "von_mises":
        return a["kappa"] * jnp.cos(a["values"] - predicted) - a["log_norm"]
    if variant == "rice":
        # Rice density of the raw amplitude A given the model amplitude M:
        # log p = log(A/σ²) − (A² + M²)/(2σ²) + log I0(A M/σ²); I0 via the scaled i0e for stability.
        A, s2 = a["raw"], a["sigma"] ** 2
        x = A * predicted / s2
        return jnp.log(A / s2) - (A**2 + predicted**2) / (2 * s2) + jnp.log(i0e(x)) + x
    if kind == "vis":
        return _gaussian_pointwise(jnp.real(predicted) - a["re"], a["sigma"]) + _gaussian_pointwise(
            jnp.imag(predicted) - a["im"], a["sigma"]
        )
    return _gaussian_pointwise(predicted - a["values"], a["sigma"])


def predicted_products(layout: dict, data: dict, V) -> dict:
    """Model values of every product kind (padded lengths) from the visibilities ``V`` at ``data['u'/'v']``."""
    return {kind: predict_product(kind, V, data[kind]["rows"], data[kind].get("signs")) for kind in layout["kinds"]}


def pointwise_log_likelihood(layout: dict, data: dict, V, predicted: Mapping | None = None) -> dict:
    """Per-datum log-likelihood of every product kind (padded lengths; padding contributes exactly 0)."""
    predicted = predicted_products(layout, data, V) if predicted is None else predicted
    return {
        kind: jnp.where(data[kind]["mask"], _density(kind, variant, data[kind], predicted[kind]), 0.0)
        for kind, variant in layout["kinds"].items()
    }


def unpad(layout: dict, per_datum: Mapping) -> dict:
    """Per-datum outputs (kind -> array, data on the last axis) cut back to the real lengths."""
    return {kind: np.asarray(x)[..., : layout["lengths"][kind]] for kind, x in per_datum.items()}


def make_log_likelihood(products: Mapping, model, *, amp_likelihood: str = "gauss"):
    """Build ``(loglike, pointwise)`` for a sky model and data products.

    ``pointwise(p)`` returns ``{kind: per-datum log-likelihood}``; ``loglike(p)`` their total. ``p`` maps
    the model's free parameter names to scalars. Both are pure and jit/vmap/grad-safe (the data are
    constants here; the fitter passes them as arguments, see :func:`likelihood_data`).
    """
    layout, data = likelihood_data(products, amp_likelihood=amp_likelihood)

    def pointwise(p):
        V = model.visibility(p, data["u"], data["v"])
        return pointwise_log_likelihood(layout, data, V)

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
