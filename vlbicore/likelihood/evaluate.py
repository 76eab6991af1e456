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

from vlbicore.errors import VlbiError
from vlbicore.likelihood.gains import GainModel, gain_sizes, marginal_arrays, marginal_log_density
from vlbicore.likelihood.noise import (closure_leg_relative_variance, common_leg_variance, leg_noise_kind,
                                       visibility_variance)
from vlbicore.products import KINDS, padded_size
from vlbicore.products.base import pad as pad_array
from vlbicore.products.base import padded_sizes


def common_sizes(product_sets, *, pad: bool = True, gains: GainModel | None = None) -> dict[str, dict]:
    """Per kind, array sizes that hold every product set of a batch (padded like one set alone; with a
    marginalised ``gains`` model the amplitudes' segment and station axes too)."""
    kinds = list(product_sets[0])
    for products in product_sets[1:]:
        if list(products) != kinds:
            raise VlbiError(f"batch: every posterior of a batch needs the same products ({', '.join(kinds)}), "
                            f"got {', '.join(products)}; fit different product sets in separate batches")
    out = {}
    for kind in kinds:
        natural = [products[kind].sizes() for products in product_sets]
        keys = set().union(*natural)
        largest = {k: max(n.get(k, 1) for n in natural) for k in keys}
        out[kind] = padded_sizes(largest) if pad else largest
    if _marginal(gains, kinds):
        out["amp"].update(gain_sizes(product_sets, gains))
    return out


def _marginal(gains: GainModel | None, kinds) -> bool:
    """The amplitudes' gains are integrated out analytically."""
    return gains is not None and gains.method == "marginal" and "amp" in kinds


# density variants the likelihood owns (they need more than one product kind's knowledge)
LIKELIHOOD_VARIANTS = {"gains_marginal": marginal_log_density}


def likelihood_data(products, *, pad: bool = False, amp_likelihood: str | None = None,
                    sizes: Mapping | None = None, n_uv: int | None = None, noise=None,
                    gains: GainModel | None = None) -> tuple[dict, dict]:
    """``(layout, data)`` for :func:`pointwise_log_likelihood` and :func:`predicted_products`.

    ``data`` is a pytree of NumPy arrays (uv coordinates, and per product kind its indices, values and
    the inputs of the error terms); ``layout`` is static: ``kinds`` maps each kind to its density
    variant, ``lengths`` each kind to its real length (where :func:`unpad` cuts per-datum outputs). With
    ``pad``, every length is rounded up (:func:`vlbicore.products.base.padded_sizes`); ``sizes`` (per kind)
    and ``n_uv`` give the sizes of a batch instead (:func:`common_sizes`). ``amp_likelihood`` overrides the
    option the products were built with (``"gauss"`` or ``"rice"``). ``noise`` (a
    :class:`~vlbicore.likelihood.noise.NoiseModel`) lets closure kinds precompute their whitening when
    every leg gains the same relative variance. ``gains`` (a :class:`~vlbicore.likelihood.gains.GainModel`)
    with ``method: marginal`` turns the amplitudes' density into the ``gains_marginal`` variant (station
    gain log-amplitudes integrated out, :mod:`vlbicore.likelihood.gains`).
    """
    obs = products.obs
    options = products.options
    if amp_likelihood is not None:
        options = dataclasses.replace(options, amp_likelihood=amp_likelihood)
    options = dataclasses.replace(options, leg_noise=leg_noise_kind(noise))
    u, v = np.asarray(obs.u, dtype=np.float64), np.asarray(obs.v, dtype=np.float64)
    n_uv = n_uv or (padded_size(len(u)) if pad else len(u))
    data = {"u": pad_array(u, n_uv, u[:1] if len(u) else 0.0), "v": pad_array(v, n_uv, v[:1] if len(v) else 0.0)}
    variants, lengths, variance_kinds = {}, {}, {}
    for kind, product in products.items():
        if sizes is not None:
            kind_sizes = sizes[kind]
        else:
            kind_sizes = padded_sizes(product.sizes()) if pad else product.sizes()
        variants[kind], data[kind] = product.likelihood_arrays(obs, options, kind_sizes)
        if kind == "amp" and _marginal(gains, products):
            if variants[kind] != "gauss":
                raise VlbiError(f"gains: the marginalised gains need amp_likelihood: gauss (got {variants[kind]!r})")
            variants[kind] = "gains_marginal"
            if "gain_blocks" not in kind_sizes:
                kind_sizes = {**kind_sizes, **gain_sizes([products], gains)}
            data[kind] = marginal_arrays(product, obs, gains, kind_sizes, data[kind])
        lengths[kind] = product.n
        variance_kinds[kind] = product.variance_kind
    return {"kinds": variants, "lengths": lengths, "variance": variance_kinds}, data


def predicted_products(layout: dict, data: dict, V) -> dict:
    """Model values of every product kind (padded lengths) from the visibilities ``V`` at ``data['u'/'v']``."""
    V = jnp.asarray(V)
    return {kind: KINDS[kind].predict_values(V, data[kind]["rows"], data[kind].get("signs"))
            for kind in layout["kinds"]}


def total_variance(variance_kind: str, arrays: dict, noise: Mapping, variant: str = ""):
    """The variance a kind's density gets: thermal plus the error terms (σ² per datum, or σ²/|V|² per
    closure leg), from the kind's own inputs and the noise terms' values (``noise``: name -> value); for
    the ``blocks_common`` variant just the relative variance every leg gains."""
    if variant == "blocks_common":
        return common_leg_variance(noise)
    if variance_kind == "closure_legs":
        return closure_leg_relative_variance(noise, arrays["leg_rel_var"], arrays["leg_amplitude"],
                                             arrays["leg_uvdist"])
    return visibility_variance(noise, arrays["sigma"], arrays["amplitude"], arrays["uvdist"])


def pointwise_terms(layout: dict, data: dict, V, predicted: Mapping | None = None,
                    noise: Mapping | None = None) -> tuple[dict, dict]:
    """Per-datum (log-likelihood, z²) of every product kind (padded lengths; padding contributes exactly
    0); ``noise`` maps the error terms' names (``noise.nonclosing``, ...) to values (none: thermal only)."""
    predicted = predicted_products(layout, data, V) if predicted is None else predicted
    noise = noise or {}
    logp, z2 = {}, {}
    for kind, variant in layout["kinds"].items():
        arrays = data[kind]
        variance = total_variance(layout["variance"][kind], arrays, noise, variant)
        density = LIKELIHOOD_VARIANTS.get(variant, KINDS[kind].log_density)
        ll, sq = density(variant, arrays, predicted[kind], variance)
        logp[kind] = jnp.where(arrays["mask"], ll, 0.0)
        z2[kind] = jnp.where(arrays["mask"], sq, 0.0)
    return logp, z2


def pointwise_log_likelihood(layout: dict, data: dict, V, predicted: Mapping | None = None,
                             noise: Mapping | None = None) -> dict:
    """Per-datum log-likelihood of every product kind (see :func:`pointwise_terms`)."""
    return pointwise_terms(layout, data, V, predicted, noise)[0]


def unpad(layout: dict, per_datum: Mapping) -> dict:
    """Per-datum outputs (kind -> array, data on the last axis) cut back to the real lengths."""
    return {kind: np.asarray(x)[..., : layout["lengths"][kind]] for kind, x in per_datum.items()}


def make_log_likelihood(products: Mapping, model, *, amp_likelihood: str | None = None, noise=None, gains=None):
    """Build ``(loglike, pointwise)`` for a sky model and data products.

    ``pointwise(p)`` returns ``{kind: per-datum log-likelihood}``; ``loglike(p)`` their total. ``p`` maps
    the model's free parameter names (and, with a :class:`~vlbicore.likelihood.noise.NoiseModel`
    ``noise``, its terms' names) to scalars. Both are pure and jit/vmap/grad-safe (the data are constants
    here; the fitter passes them as arguments, see :func:`likelihood_data`).
    """
    layout, data = likelihood_data(products, amp_likelihood=amp_likelihood, noise=noise, gains=gains)

    def pointwise(p):
        V = model.visibility(p, data["u"], data["v"])
        return pointwise_log_likelihood(layout, data, V, noise=noise.values(p) if noise is not None else None)

    def loglike(p):
        return sum(jnp.sum(x) for x in pointwise(p).values())

    return loglike, pointwise
