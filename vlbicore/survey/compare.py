"""Model comparison by leave-one-scan-out PSIS-LOO, from the pointwise log likelihood in the fit stores.

The unit left out is one **scan**: the sum, over every product kind, of the per-datum log likelihood of the
data in that scan (``observed_data.<kind>_scan``; stores written before scans were recorded fall back to
``<kind>_time``, one unit per time stamp). With closure covariance the per-datum terms are Cholesky
conditionals in an arbitrary order, but their sum over a scan is the exact joint density of that scan's
data, the same whichever minimal closure set was chosen (closures of different time stamps share no
baselines); a single closure is not a unit anyone can leave out.

PSIS-LOO (Vehtari, Gelman & Gabry 2017; Pareto smoothing of Vehtari et al. 2024) and the model weights
come from arviz-stats: stacking (Yao et al. 2018, the default) or pseudo-BMA+ (Bayesian-bootstrap
pseudo-BMA); plain pseudo-BMA is not offered. ``reff`` is 1.0: it only sets the Pareto tail length, and
an ESS-based value means nothing when chains sit in different modes. When a store has
``diagnostics.chain_weight`` (chains in different posterior modes weighted by mode mass) the draws are
importance-weighted by it.

Models are ranked together only when they model the same data variables: the same product kinds, the
same random variable per kind (``amp`` is the debiased amplitude under ``amp_likelihood: gauss`` and the
raw amplitude under ``rice``), the same observed values and the same scans. Covariance, systematic and
noise-model settings are different models of the same data and stay comparable.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from typing import Mapping

import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats import compare as arviz_compare
from arviz_stats.utils import ELPDData
from scipy.special import logsumexp

from vlbicore.errors import VlbiError

REFF = 1.0  # see the module docstring
SAMPLE_DIMS = ["chain", "draw"]
# user-facing name -> arviz-stats' method name
WEIGHT_METHODS = {"stacking": "stacking", "pseudo-bma+": "BB-pseudo-BMA"}
UNIT_NAMES = {"scan": "scan", "time": "time stamp (a store without <kind>_scan)"}


# --------------------------------------------------------------------------------------------------
# The LOO unit: one scan


def _observed_kinds(observed: xr.Dataset) -> list[str]:
    return sorted(str(k) for k in observed.data_vars if f"{k}_dim" in observed[k].dims)


def _unit_field(observed: xr.Dataset, kinds: list[str]) -> str:
    for field in ("scan", "time"):
        if all(f"{kind}_{field}" in observed for kind in kinds):
            return field
    raise VlbiError(
        f"observed_data: lacks {kinds[0]}_scan and {kinds[0]}_time, so no scan is known to leave out; "
        "refit with this vlbicore"
    )


def scan_log_likelihood(tree: xr.DataTree) -> tuple[xr.DataArray, int]:
    """(chain, draw, scan) log likelihood of each scan's data (every kind summed) and the number of data.

    The ``scan`` coordinate holds the scan ids (or, for older stores, the time stamps); its ``unit``
    attribute says which.
    """
    ll_ds = tree["log_likelihood"].dataset
    observed = tree["observed_data"].dataset
    kinds = sorted(str(k) for k in ll_ds.data_vars)
    if not kinds:
        raise VlbiError("log_likelihood: group is empty; the fit stored no pointwise log likelihood")
    missing = [k for k in kinds if k not in observed]
    if missing:
        raise VlbiError(f"observed_data: lacks {', '.join(missing)} of the log likelihood; the store is incomplete, rerun the fit")
    field = _unit_field(observed, kinds)
    blocks, labels = [], []
    for kind in kinds:
        values = ll_ds[kind].transpose("chain", "draw", f"{kind}_dim").values.astype(np.float64)
        label = observed[f"{kind}_{field}"].values
        if values.shape[2] != label.shape[0]:
            raise VlbiError(f"log_likelihood.{kind}: {values.shape[2]} points but observed_data.{kind}_{field} has {label.shape[0]}; rerun the fit")
        if not np.all(np.isfinite(values)):
            raise VlbiError(f"log_likelihood.{kind}: {int(np.sum(~np.isfinite(values)))} non-finite values; the fit's likelihood is broken, rerun it")
        blocks.append(values)
        labels.append(label)
    ll = np.concatenate(blocks, axis=2)
    if ll.shape[2] == 0:
        raise VlbiError("log_likelihood: no data points; the fit stored no pointwise log likelihood")
    units, inverse = np.unique(np.concatenate(labels), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(units.size))
    summed = np.add.reduceat(ll[..., order], starts, axis=2)
    chains, draws = ll_ds.sizes["chain"], ll_ds.sizes["draw"]
    da = xr.DataArray(summed, dims=("chain", "draw", "scan"),
                      coords={"chain": np.arange(chains), "draw": np.arange(draws), "scan": units},
                      attrs={"unit": field})
    return da, int(ll.shape[2])


def chain_weights(tree: xr.DataTree) -> np.ndarray | None:
    """``diagnostics.chain_weight`` (one weight per chain, summing to 1), or None when absent (= equal)."""
    diag = tree["diagnostics"].dataset if "diagnostics" in tree.children else xr.Dataset()
    return np.asarray(diag["chain_weight"].values, dtype=np.float64) if "chain_weight" in diag else None


# --------------------------------------------------------------------------------------------------
# LOO of one fit


@dataclasses.dataclass(frozen=True)
class LooResult:
    """Leave-one-scan-out PSIS-LOO of one fit: totals and the per-scan values behind them."""

    elpd_loo: float
    se: float
    p_loo: float
    n_samples: int
    good_k: float  # arviz-stats' threshold min(1 - 1/log10(S), 0.7): Pareto k above it = unreliable
    pointwise: np.ndarray  # elpd_loo of each unit (scan)
    pareto_k: np.ndarray
    units: np.ndarray  # the scan ids (or time stamps) of the units, sorted
    unit: str = "scan"  # "scan", or "time" for stores without <kind>_scan
    n_data: int = 0  # data points summed into the units
    kinds: tuple[str, ...] = ()
    chain_weighted: bool = False

    @property
    def n_units(self) -> int:
        return int(self.pointwise.size)

    @property
    def n_bad_k(self) -> int:
        return int(np.sum(self.pareto_k > self.good_k))

    @property
    def max_k(self) -> float:
        return float(np.max(self.pareto_k))

    def elpd_data(self, shift: np.ndarray | None = None) -> ELPDData:
        """arviz-stats' ELPDData of this result (pointwise, no log weights); ``shift`` is subtracted per unit."""
        elpd_i = self.pointwise if shift is None else self.pointwise - shift
        return ELPDData(
            "loo", float(elpd_i.sum()), self.se, self.p_loo, self.n_samples, self.n_units, "log",
            bool(self.n_bad_k), self.good_k,
            elpd_i=xr.DataArray(elpd_i, dims="scan", coords={"scan": self.units}),
            pareto_k=xr.DataArray(self.pareto_k, dims="scan", coords={"scan": self.units}),
        )


def _check_chain_weight(weight, n_chains: int) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != (n_chains,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not abs(w.sum() - 1.0) < 1e-3:
        raise VlbiError(
            f"diagnostics.chain_weight: {np.round(w, 4).tolist()} is not {n_chains} non-negative weights "
            "summing to 1; rerun the fit"
        )
    return w / w.sum()  # exactly normalised (stored weights may be rounded)


def good_k(n_samples: int) -> float:
    """arviz-stats' Pareto k threshold for S draws, min(1 - 1/log10(S), 0.7), as in ``arviz_stats.loo``."""
    return min(1 - 1 / np.log10(n_samples), 0.7) if n_samples > 1 else 0.7


def loo(log_lik, *, chain_weight=None) -> LooResult:
    """PSIS-LOO of a (chain, draw, unit) log likelihood (an array or a DataArray with a ``scan`` dim).

    ``chain_weight``: one weight per chain (summing to 1) when chains are draws of different posterior
    modes weighted by mode mass; draws then carry log weight log(w_chain) - log(n_draws) in the importance
    ratios, and p_loo is the weighted lppd minus elpd_loo.

    Uses arviz-stats' xarray accessor (``azstats.psislw``, ``azstats.loo``, ``azstats.loo_summary``), the
    computation inside ``arviz_stats.loo`` without its warnings (Pareto k is reported by gather instead,
    and silencing warnings is not thread-safe inside Dask workers).
    """
    if isinstance(log_lik, xr.DataArray):
        da = log_lik.transpose("chain", "draw", "scan")
    else:
        ll = np.asarray(log_lik, dtype=np.float64)
        if ll.ndim != 3 or ll.shape[2] == 0:
            raise VlbiError(f"log_likelihood: shape {ll.shape} is not (chain, draw, n>0); store the pointwise log likelihood")
        da = xr.DataArray(ll, dims=("chain", "draw", "scan"), coords={"scan": np.arange(ll.shape[2])})
    da = da.assign_coords(chain=np.arange(da.sizes["chain"]), draw=np.arange(da.sizes["draw"]))
    weighted = chain_weight is not None
    if weighted:
        w = _check_chain_weight(chain_weight, da.sizes["chain"])
        da = da.isel(chain=np.flatnonzero(w > 0))  # chains of zero weight carry no draws of the posterior
        logw = xr.DataArray(np.log(w[w > 0]) - np.log(da.sizes["draw"]), dims="chain", coords={"chain": da["chain"]})
        log_weights, pareto_k = (da - logw).azstats.psislw(r_eff=REFF, dim=SAMPLE_DIMS)
    else:
        log_weights = pareto_k = None
    elpd_i, pareto_k, p_loo_i = da.azstats.loo(sample_dims=SAMPLE_DIMS, r_eff=REFF, log_weights=log_weights, pareto_k=pareto_k)
    elpd, se, p_loo, _ = elpd_i.azstats.loo_summary(p_loo_i)
    elpd_i = np.asarray(elpd_i.values, dtype=np.float64)
    if weighted:  # arviz-stats' p_loo uses the unweighted lppd
        lppd_i = logsumexp((da + logw).values, axis=(0, 1))
        p_loo = np.sum(lppd_i - elpd_i)
    n_samples = da.sizes["chain"] * da.sizes["draw"]
    return LooResult(
        elpd_loo=float(elpd),
        se=float(se),
        p_loo=float(p_loo),
        n_samples=n_samples,
        good_k=good_k(n_samples),
        pointwise=elpd_i,
        pareto_k=np.asarray(pareto_k.values, dtype=np.float64),
        units=np.asarray(da["scan"].values),
        unit=str(da.attrs.get("unit", "scan")),
        n_data=int(elpd_i.size),
        chain_weighted=weighted,
    )


def loo_from_tree(tree: xr.DataTree) -> LooResult:
    """Leave-one-scan-out PSIS-LOO of a fit store (chain weights from ``diagnostics`` when stored)."""
    ll, n_data = scan_log_likelihood(tree)
    result = loo(ll, chain_weight=chain_weights(tree))
    kinds = tuple(sorted(str(k) for k in tree["log_likelihood"].dataset.data_vars))
    return dataclasses.replace(result, unit=ll.attrs["unit"], n_data=n_data, kinds=kinds)


# --------------------------------------------------------------------------------------------------
# Which data a fit models


AMP_VARIABLES = {"gauss": "debiased amplitude", "rice": "raw amplitude"}


def _amp_likelihood(tree: xr.DataTree) -> str:
    value = tree.attrs.get("amp_likelihood")
    if value is None:
        try:
            value = json.loads(tree.attrs.get("fit_config", "{}")).get("amp_likelihood")
        except (TypeError, json.JSONDecodeError):
            value = None
    return str(value or "gauss")  # stores older than the attribute were fitted with the default


def data_variables(tree: xr.DataTree) -> dict[str, str]:
    """The random variable each product kind's likelihood is a density of.

    ``amp``: the debiased amplitude √(|V|²−σ²) under ``amp_likelihood: gauss``, the raw amplitude |V|
    under ``rice`` (both stores keep the same observed ``amp`` values). ``vis``, ``cphase`` and ``lcamp``
    are the same variables whatever the covariance, systematic or noise model.
    """
    variables = {}
    for kind in _observed_kinds(tree["observed_data"].dataset):
        if kind == "amp":
            name = _amp_likelihood(tree)
            variables[kind] = AMP_VARIABLES.get(name, f"amplitude under amp_likelihood {name}")
        else:
            variables[kind] = kind
    return variables


def _digest(*arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(np.asarray(array)).tobytes())
    return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class DataIdentity:
    """What a fit was fitted to: product kinds, the variable per kind, observed values and LOO units."""

    variables: tuple[tuple[str, str], ...]  # (kind, variable)
    values: tuple[tuple[str, str], ...]  # (kind, hash of the observed values)
    unit: str  # "scan" or "time"
    units: str  # hash of every datum's scan (or time stamp)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.variables)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(repr(dataclasses.astuple(self)).encode()).hexdigest()[:16]


def data_identity(tree: xr.DataTree) -> DataIdentity:
    """The :class:`DataIdentity` of a fit store; equal fingerprints = comparable by LOO."""
    observed = tree["observed_data"].dataset
    kinds = _observed_kinds(observed)
    if not kinds:
        raise VlbiError("observed_data: no product values; the store is incomplete, rerun the fit")
    field = _unit_field(observed, kinds)
    return DataIdentity(
        variables=tuple(data_variables(tree).items()),
        values=tuple((k, _digest(observed[k].values)) for k in kinds),
        unit=field,
        units=_digest(*(observed[f"{k}_{field}"].values for k in kinds)),
    )


def describe_difference(identities: Mapping[str, DataIdentity]) -> str:
    """One clause saying how fits of different data differ (names -> identities), with what to do."""
    names = list(identities)

    def side(attribute) -> str:
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(attribute(identities[name]), []).append(name)
        return " vs ".join(f"{value} ({', '.join(members)})" for value, members in groups.items())

    ids = list(identities.values())
    if len({i.kinds for i in ids}) > 1:
        return f"they model different products: {side(lambda i: '+'.join(i.kinds))}; compare only fits of the same products"
    for kind in ids[0].kinds:
        if len({dict(i.variables)[kind] for i in ids}) > 1:
            return (f"they model different data variables: {kind} is the {side(lambda i: dict(i.variables)[kind])}; "
                    "compare only fits with the same amp_likelihood")
    for kind in ids[0].kinds:
        if len({dict(i.values)[kind] for i in ids}) > 1:
            return f"they were fitted to different observations ({kind} values differ); compare only fits of the same data"
    if len({i.unit for i in ids}) > 1:
        return (f"their leave-one-out units differ: {side(lambda i: UNIT_NAMES[i.unit])}; "
                "refit the older store with this vlbicore")
    return "their data are assigned to different scans; compare only fits of the same data"


# --------------------------------------------------------------------------------------------------
# Ranking models of one data set


COMPARE_COLUMNS = ["rank", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "weight_method",
                   "max_pareto_k", "good_k", "n_bad_k", "n_units", "loo_unit", "n_data"]


def weight_method(method: str) -> str:
    key = method.lower()
    if key == "bb-pseudo-bma":
        key = "pseudo-bma+"
    if key not in WEIGHT_METHODS:
        raise VlbiError(f"LOO weights: {method!r} is not offered; use stacking (default) or pseudo-BMA+ "
                        "(plain pseudo-BMA ignores the uncertainty of elpd)")
    return key


def compare_models(results: Mapping[str, LooResult], *, method: str = "stacking") -> pd.DataFrame:
    """Rank models of the same data by leave-one-scan-out elpd (best first), weights by arviz-stats.

    ``elpd_diff``/``dse``: difference to the best model and the standard error of the paired per-scan
    differences; ``weight``: stacking (default) or ``"pseudo-BMA+"`` (Bayesian-bootstrap pseudo-BMA).
    """
    if not results:
        raise VlbiError("compare: no models given; pass at least one LOO result")
    key = weight_method(method)
    sizes = {name: r.n_units for name, r in results.items()}
    if len(set(sizes.values())) != 1:
        raise VlbiError(f"compare: models have different numbers of scans {sizes}; compare only models fitted to the same data")
    first = next(iter(results.values()))
    if any(not np.array_equal(r.units, first.units) for r in results.values()):
        raise VlbiError(f"compare: models {', '.join(results)} leave out different scans; compare only models fitted to the same data")
    # every output taken from arviz-stats is unchanged by a per-scan constant; subtracting the best model's
    # value keeps exp(elpd_i) of stacking from underflowing where a scan's elpd is below about -700
    shift = np.max([r.pointwise for r in results.values()], axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pandas deprecations inside arviz-stats
        warnings.simplefilter("ignore", DeprecationWarning)
        table = arviz_compare({name: r.elpd_data(shift) for name, r in results.items()}, method=WEIGHT_METHODS[key])
    rows = []
    for name, row in table.iterrows():
        r = results[name]
        rows.append({
            "model": name, "rank": int(row["rank"]), "elpd_loo": r.elpd_loo, "se": r.se, "p_loo": r.p_loo,
            "elpd_diff": float(row["elpd_diff"]), "dse": float(row["dse"]), "weight": float(row["weight"]),
            "weight_method": key, "max_pareto_k": r.max_k, "good_k": r.good_k, "n_bad_k": r.n_bad_k,
            "n_units": r.n_units, "loo_unit": r.unit, "n_data": r.n_data,
        })
    return pd.DataFrame(rows).set_index("model")[COMPARE_COLUMNS]


def compare_stores(paths_by_model: Mapping[str, str], *, method: str = "stacking") -> pd.DataFrame:
    """LOO table for stores of one epoch (model name -> store path); refuses stores of different data."""
    from vlbicore.store import open_fit_store

    results, identities = {}, {}
    for model, path in paths_by_model.items():
        tree = open_fit_store(path)
        identities[str(path)] = data_identity(tree)
        results[model] = loo_from_tree(tree)
    if len({i.fingerprint for i in identities.values()}) > 1:
        raise VlbiError(f"compare: stores {', '.join(identities)} cannot be ranked together: {describe_difference(identities)}")
    return compare_models(results, method=method)
