"""The log-likelihood of a product set given model visibilities, as pure JAX functions of a data pytree.

One pointwise log-likelihood per product kind (each kind owns its density, see
:mod:`vlbicore.products`), so the fitter can store per-datum values and sum them for sampling.

The data are an *argument* of the compiled programs, not constants inside them, and their lengths can
be padded up to a few fixed sizes (:func:`vlbicore.products.padded_size`): two files of similar size then
run the very same program, so the persistent compilation cache compiles a model once for many epochs of
a campaign. Padded entries repeat a real datum's indices with zero weight and are masked out of every
sum; the per-datum outputs are cut back to the real lengths on the host (:func:`unpad`).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax.numpy as jnp
import numpy as np

from vlbicore.products import KINDS, padded_size
from vlbicore.products.base import pad as pad_array


def likelihood_data(products, *, pad: bool = False, amp_likelihood: str | None = None) -> tuple[dict, dict]:
    """``(layout, data)`` for :func:`pointwise_log_likelihood` and :func:`predicted_products`.

    ``data`` is a pytree of NumPy arrays (uv coordinates, and per product kind its indices, values and
    weights); ``layout`` is static: ``kinds`` maps each kind to its density variant, ``lengths`` each
    kind to its real length (where :func:`unpad` cuts per-datum outputs). With ``pad``, every length is
    rounded up by :func:`vlbicore.products.padded_size`. ``amp_likelihood`` overrides the option the
    products were built with (``"gauss"`` or ``"rice"``).
    """
    obs = products.obs
    options = products.options
    if amp_likelihood is not None:
        options = dataclasses.replace(options, amp_likelihood=amp_likelihood)
    u, v = np.asarray(obs.u, dtype=np.float64), np.asarray(obs.v, dtype=np.float64)
    n_uv = padded_size(len(u)) if pad else len(u)
    data = {"u": pad_array(u, n_uv, u[:1] if len(u) else 0.0), "v": pad_array(v, n_uv, v[:1] if len(v) else 0.0)}
    variants, lengths = {}, {}
    for kind, product in products.items():
        size = padded_size(product.n) if pad else product.n
        variants[kind], data[kind] = product.likelihood_arrays(obs, options, size)
        lengths[kind] = product.n
    return {"kinds": variants, "lengths": lengths}, data


def predicted_products(layout: dict, data: dict, V) -> dict:
    """Model values of every product kind (padded lengths) from the visibilities ``V`` at ``data['u'/'v']``."""
    V = jnp.asarray(V)
    return {kind: KINDS[kind].predict_values(V, data[kind]["rows"], data[kind].get("signs"))
            for kind in layout["kinds"]}


def pointwise_log_likelihood(layout: dict, data: dict, V, predicted: Mapping | None = None) -> dict:
    """Per-datum log-likelihood of every product kind (padded lengths; padding contributes exactly 0)."""
    predicted = predicted_products(layout, data, V) if predicted is None else predicted
    return {
        kind: jnp.where(data[kind]["mask"], KINDS[kind].log_density(variant, data[kind], predicted[kind]), 0.0)
        for kind, variant in layout["kinds"].items()
    }


def unpad(layout: dict, per_datum: Mapping) -> dict:
    """Per-datum outputs (kind -> array, data on the last axis) cut back to the real lengths."""
    return {kind: np.asarray(x)[..., : layout["lengths"][kind]] for kind, x in per_datum.items()}


def make_log_likelihood(products: Mapping, model, *, amp_likelihood: str | None = None):
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
