"""Data products for model fitting, one module per kind: complex visibilities (``vis``), debiased
amplitudes (``amp``), closure phases (``cphase``) and log closure amplitudes (``lcamp``).

Each kind is a :class:`~vlbicore.products.base.Product` subclass that owns its construction from an
observation, its model prediction, its likelihood arrays and density, and its χ² (see ``base``);
``KINDS`` below is the one registry of kinds. May import ``vlbicore.data`` (the ``Observation``) and
``vlbicore.errors``; never models, likelihood, inference, store, survey or cli.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from vlbicore.data.observation import Observation
from vlbicore.errors import VlbiError
from vlbicore.products.amplitude import AMP_LIKELIHOODS, AmplitudeProduct
from vlbicore.products.base import (Product, ProductOptions, debiased_amplitude, padded_size, relative_sigma,
                                    wrap_phase)
from vlbicore.products.closure_phase import ClosurePhaseProduct, closure_phases
from vlbicore.products.closure_sets import cycle_rank, log_amplitude_rank
from vlbicore.products.log_closure_amplitude import LogClosureAmplitudeProduct, log_closure_amplitudes
from vlbicore.products.visibility import VisibilityProduct

KINDS: dict[str, type[Product]] = {cls.kind: cls for cls in (VisibilityProduct, AmplitudeProduct,
                                                             ClosurePhaseProduct, LogClosureAmplitudeProduct)}
PRODUCT_KINDS = tuple(KINDS)


def product_kind(name: str) -> type[Product]:
    """The product class registered as ``name`` (one-line error naming the valid kinds)."""
    try:
        return KINDS[name]
    except KeyError:
        raise VlbiError(f"products: {name!r} is unknown; use {', '.join(PRODUCT_KINDS)}") from None


@dataclasses.dataclass(frozen=True, eq=False)
class DataProducts(Mapping):
    """The products built from one observation: a read-only mapping kind -> product, plus ``obs`` and
    the ``options`` they were built with."""

    obs: Observation
    products: Mapping[str, Product]
    options: ProductOptions = ProductOptions()

    def __getitem__(self, kind: str) -> Product:
        return self.products[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self.products)

    def __len__(self) -> int:
        return len(self.products)

    @property
    def n_data(self) -> dict[str, int]:
        return {kind: product.n for kind, product in self.products.items()}


def build_products(obs: Observation, products: str | Iterable[str] = ("cphase", "lcamp"), *,
                   covariance: bool = False, snr_cut: float = 0.0, lcamp_debias: bool = False,
                   amp_likelihood: str = "gauss") -> DataProducts:
    """Build the requested products from ``obs``; rows with |V|/sigma < ``snr_cut`` are left out of all.

    ``lcamp_debias``: use debiased amplitudes inside the log closure amplitudes (see
    ``log_closure_amplitudes``; off by default because it biases them low at moderate SNR).
    """
    kinds = (products,) if isinstance(products, str) else tuple(products)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise VlbiError(f"products: unknown product {unknown or 'list (empty)'}; "
                        f"choose from {', '.join(PRODUCT_KINDS)}")
    options = ProductOptions(covariance=covariance, snr_cut=snr_cut, lcamp_debias=lcamp_debias,
                             amp_likelihood=amp_likelihood)
    usable = np.flatnonzero(np.abs(obs.vis) >= snr_cut * obs.sigma)
    built = {kind: KINDS[kind].build(obs, usable, options) for kind in dict.fromkeys(kinds)}
    return DataProducts(obs=obs, products=built, options=options)


__all__ = [
    "AMP_LIKELIHOODS", "KINDS", "PRODUCT_KINDS", "AmplitudeProduct", "ClosurePhaseProduct", "DataProducts",
    "LogClosureAmplitudeProduct", "Product", "ProductOptions", "VisibilityProduct", "build_products",
    "closure_phases", "cycle_rank", "debiased_amplitude", "log_amplitude_rank", "log_closure_amplitudes",
    "padded_size", "product_kind", "relative_sigma", "wrap_phase",
]
