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
                   covariance: bool = False, snr_cut: float | Mapping[str, float] = 0.0, lcamp_debias: bool = False,
                   amp_likelihood: str = "gauss") -> DataProducts:
    """Build the requested products from ``obs``.

    ``snr_cut``: rows with |V|/σ below it are left out — of every product when a number, of the named
    kinds when a mapping (a fit's default is ``{"lcamp": 3}``: log closure amplitudes are biased at low
    SNR, see docs/data.md). ``lcamp_debias``: use debiased amplitudes inside the log closure amplitudes
    (see ``log_closure_amplitudes``; off by default because it biases them low at moderate SNR).
    """
    kinds = (products,) if isinstance(products, str) else tuple(products)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise VlbiError(f"products: unknown product {unknown or 'list (empty)'}; "
                        f"choose from {', '.join(PRODUCT_KINDS)}")
    cuts = dict(snr_cut) if isinstance(snr_cut, Mapping) else dict.fromkeys(kinds, float(snr_cut))
    unknown_cut = sorted(set(cuts) - set(KINDS))
    if unknown_cut:
        raise VlbiError(f"snr_cut: {', '.join(unknown_cut)} is not a product; use {', '.join(PRODUCT_KINDS)}")
    options = ProductOptions(covariance=covariance, snr_cut=tuple(sorted(cuts.items())), lcamp_debias=lcamp_debias,
                             amp_likelihood=amp_likelihood)
    snr = np.abs(obs.vis) / obs.sigma
    built = {kind: KINDS[kind].build(obs, np.flatnonzero(snr >= cuts.get(kind, 0.0)), options)
             for kind in dict.fromkeys(kinds)}
    return DataProducts(obs=obs, products=built, options=options)


# The product sets that use every datum once (vis alone holds amplitudes and phases; amplitudes and log
# closure amplitudes share the amplitudes; visibilities and closure phases share the phases).
VALID_PRODUCT_SETS = (("vis",), ("amp",), ("cphase",), ("lcamp",), ("amp", "cphase"), ("cphase", "lcamp"))


def check_product_set(kinds: Iterable[str]) -> None:
    """Refuse a product set that counts data twice (one line naming the valid sets)."""
    chosen = set(kinds)
    if any(chosen == set(valid) for valid in VALID_PRODUCT_SETS):
        return
    valid = "; ".join("+".join(v) for v in VALID_PRODUCT_SETS[:1] + VALID_PRODUCT_SETS[4:]) + "; or one alone"
    raise VlbiError(f"products: {'+'.join(sorted(chosen))} use the same data twice (the likelihood would count "
                    f"them twice); choose one of the independent sets: {valid}")


__all__ = [
    "VALID_PRODUCT_SETS", "check_product_set",
    "AMP_LIKELIHOODS", "KINDS", "PRODUCT_KINDS", "AmplitudeProduct", "ClosurePhaseProduct", "DataProducts",
    "LogClosureAmplitudeProduct", "Product", "ProductOptions", "VisibilityProduct", "build_products",
    "closure_phases", "cycle_rank", "debiased_amplitude", "log_amplitude_rank", "log_closure_amplitudes",
    "padded_size", "product_kind", "relative_sigma", "wrap_phase",
]
