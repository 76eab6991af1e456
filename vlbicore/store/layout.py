"""The layout of a fit store, and writing one.

A store is an ArviZ-style ``xarray.DataTree`` (groups ``posterior``, ``sample_stats``,
``log_likelihood``, ``posterior_predictive``, ``observed_data``; dims ``chain``, ``draw``,
``<kind>_dim``) plus the vlbicore group ``diagnostics`` and provenance in the root attributes (see
``docs/architecture.md``). It is written in Zarr format 2 with consolidated metadata, the layout every
Zarr reader understands, so ``xarray.open_datatree(path, engine="zarr")`` and
``arviz_base.convert_to_datatree(path)`` read it without vlbicore; the write is atomic
(:mod:`vlbicore.store.atomic`).
"""
from __future__ import annotations

import datetime
import json
import math
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from vlbicore import SCHEMA_VERSION, __version__
from vlbicore.errors import VlbiError
from vlbicore.store.atomic import write_directory_atomically

REQUIRED_GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data", "diagnostics")
ZARR_FORMAT = 2  # consolidated metadata is part of the v2 spec; v3 still warns it is not


def _chain_draw_coords(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"chain": np.arange(shape[0]), "draw": np.arange(shape[1])}


def _sample_dataset(group: str, values: Mapping[str, np.ndarray], *, extra_dim: bool) -> xr.Dataset:
    """(chain, draw) or (chain, draw, <kind>_dim) variables of one sampled group; shapes are checked."""
    data_vars = {}
    shape = None
    for name, array in values.items():
        array = np.asarray(array)
        expected_ndim = 3 if extra_dim else 2
        if array.ndim != expected_ndim:
            axes = "(chain, draw, n)" if extra_dim else "(chain, draw)"
            raise VlbiError(f"{group}.{name}: array has shape {array.shape}; expected {axes}")
        if shape is not None and array.shape[:2] != shape:
            raise VlbiError(f"{group}.{name}: chains/draws {array.shape[:2]} differ from {shape}; pass one sample set")
        shape = array.shape[:2]
        dims = ("chain", "draw", f"{name}_dim") if extra_dim else ("chain", "draw")
        data_vars[name] = (dims, array)
    coords = _chain_draw_coords(shape) if shape is not None else {}
    return xr.Dataset(data_vars, coords=coords)


def _observed_dataset(observed: Mapping[str, Mapping[str, Any]], uv) -> xr.Dataset:
    data_vars = {}
    for kind, product in observed.items():
        dim = f"{kind}_dim"
        values = np.asarray(product["values"])
        n = values.shape[0]
        data_vars[kind] = ((dim,), values)
        for field in ("sigma", "time", "uvdist"):
            if product.get(field) is not None:
                data_vars[f"{kind}_{field}"] = ((dim,), np.asarray(product[field], dtype=np.float64).reshape(n))
        if product.get("scan") is not None:  # the scan each datum belongs to (the unit of leave-one-out)
            data_vars[f"{kind}_scan"] = ((dim,), np.asarray(product["scan"], dtype=np.int64).reshape(n))
        if product.get("label") is not None:
            data_vars[f"{kind}_label"] = ((dim,), np.asarray([str(s) for s in product["label"]], dtype=object))
    if uv is not None:
        u, v = (np.asarray(a, dtype=np.float64).ravel() for a in uv)
        data_vars["uv_u"] = (("uv_dim",), u)
        data_vars["uv_v"] = (("uv_dim",), v)
    return xr.Dataset(data_vars)


def _diagnostics_dataset(diagnostics: Mapping[str, Any], param_names: list[str]) -> xr.Dataset:
    def per_param(key: str) -> np.ndarray:
        values = diagnostics.get(key) or {}
        return np.array([float(values.get(p, math.nan)) for p in param_names], dtype=np.float64)

    chi2 = diagnostics.get("reduced_chi2") or {}
    n_data = diagnostics.get("n_data") or {}
    products = sorted(set(chi2) | set(n_data))
    modes = list(diagnostics.get("modes") or [])
    gof = diagnostics.get("goodness_of_fit") or {}

    def per_product(key: str) -> np.ndarray:
        return np.array([float(gof.get(k, {}).get(key, math.nan)) for k in products], dtype=np.float64)

    def per_mode(key: str, default, dtype) -> np.ndarray:
        return np.array([m.get(key, default) for m in modes], dtype=dtype)

    data_vars = {
        "rhat": (("parameter",), per_param("rhat")),
        "ess_bulk": (("parameter",), per_param("ess_bulk")),
        "ess_tail": (("parameter",), per_param("ess_tail")),
        "reduced_chi2": (("product",), np.array([float(chi2.get(k, math.nan)) for k in products])),
        "n_data": (("product",), np.array([int(n_data.get(k, 0)) for k in products], dtype=np.int64)),
        # χ² at the best draw: against the thermal σ (chi2, per N above, per N − p), and against the total
        # σ of thermal noise and fitted error terms (chi2_total, reduced_chi2_total = per N)
        "chi2": (("product",), per_product("chi2")),
        "reduced_chi2_dof": (("product",), per_product("chi2_per_dof")),
        "chi2_total": (("product",), per_product("chi2_total")),
        "reduced_chi2_total": (("product",), per_product("chi2_total_per_n")),
        "mode_lp": (("mode",), np.array([float(m["lp"]) for m in modes], dtype=np.float64)),
        "mode_log_mass": (("mode",), per_mode("log_mass", math.nan, np.float64)),
        "mode_mass": (("mode",), per_mode("mass", math.nan, np.float64)),
        "mode_laplace_ok": (("mode",), per_mode("laplace_ok", True, bool)),
        "mode_sampled": (("mode",), per_mode("sampled", False, bool)),
        "mode_values": (  # NaN for posterior variables a mode does not set (derived quantities)
            ("mode", "parameter"),
            np.array([[float(m["values"].get(p, math.nan)) for p in param_names] for m in modes]).reshape(
                len(modes), len(param_names)
            ),
        ),
        "mode_chains": (("mode",), np.array([int(m.get("chains", m.get("starts", 0))) for m in modes], dtype=np.int64)),
    }
    coords = {
        "parameter": np.array(param_names, dtype=object),
        "product": np.array(products, dtype=object),
        "mode": np.arange(len(modes)),
    }
    if diagnostics.get("chain_weight") is not None:  # each chain's weight in the posterior (mode mass / chains)
        data_vars["chain_weight"] = (("chain",), np.asarray(diagnostics["chain_weight"], np.float64))
        data_vars["chain_mode"] = (("chain",), np.asarray(diagnostics["chain_mode"], np.int64))
    return xr.Dataset(data_vars, coords=coords)


def _attr_value(key: str, value: Any) -> Any:
    """Zarr attributes hold JSON; dicts and lists are stored as JSON strings (the contract), numpy scalars as Python."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=_json_default)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise VlbiError(f"attrs.{key}: value of type {type(value).__name__} cannot be stored; pass str, number, bool, dict or list")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _gains_dataset(gains: Mapping[str, Any]) -> xr.Dataset:
    """Sampled station gains: ``log_amplitude`` (and ``phase``, rad, for visibilities) per (chain, draw,
    station, segment); NaN where a station has no data in a segment (or a zero prior sd); the reference
    station's phase is 0. Coords: ``station`` (codes), ``segment`` (index), ``segment_time`` (h UTC)."""
    data_vars = {}
    for name, units in (("log_amplitude", "1"), ("phase", "rad")):
        if name in gains:
            data_vars[name] = (("chain", "draw", "station", "segment"), np.asarray(gains[name], np.float32),
                               {"units": units})
    shape = np.shape(gains["log_amplitude"])
    coords = {**_chain_draw_coords(shape), "station": np.array(list(gains["stations"]), dtype=object),
              "segment": np.arange(shape[3]), "segment_time": (("segment",), np.asarray(gains["segment_time"], float))}
    attrs = {"segmentation": str(gains.get("segment", "scan")), "max_rhat": float(gains.get("rhat", math.nan))}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def build_fit_tree(
    *,
    posterior: Mapping[str, np.ndarray],
    sample_stats: Mapping[str, np.ndarray],
    log_likelihood: Mapping[str, np.ndarray],
    observed_data: Mapping[str, Mapping[str, Any]],
    posterior_predictive: Mapping[str, np.ndarray] | None,
    diagnostics: Mapping[str, Any],
    attrs: Mapping[str, Any],
    uv=None,
    variable_attrs: Mapping[str, Mapping[str, Any]] | None = None,
    gains: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """The in-memory DataTree that :func:`write_fit_store` writes (groups and dims as in the contract).
    ``variable_attrs``: per posterior variable, e.g. ``{"units": "rad", "period": π}`` (angles get circular
    summaries)."""
    if not posterior:
        raise VlbiError("posterior: no parameters given; a fit store needs at least one posterior variable")
    posterior_ds = _sample_dataset("posterior", posterior, extra_dim=False)
    for name, extra in (variable_attrs or {}).items():
        if name in posterior_ds:
            posterior_ds[name].attrs.update(extra)
    groups = {
        "posterior": posterior_ds,
        "sample_stats": _sample_dataset("sample_stats", sample_stats, extra_dim=False),
        "log_likelihood": _sample_dataset("log_likelihood", log_likelihood, extra_dim=True),
        "observed_data": _observed_dataset(observed_data, uv),
        "diagnostics": _diagnostics_dataset(diagnostics, list(posterior)),
    }
    if gains:
        groups["gains"] = _gains_dataset(gains)
    if posterior_predictive:
        groups["posterior_predictive"] = _sample_dataset("posterior_predictive", posterior_predictive, extra_dim=True)
    for kind, ll in log_likelihood.items():
        if kind in observed_data and np.shape(ll)[2] != np.shape(observed_data[kind]["values"])[0]:
            raise VlbiError(
                f"log_likelihood.{kind}: {np.shape(ll)[2]} points but observed_data.{kind} has "
                f"{np.shape(observed_data[kind]['values'])[0]}; pass one pointwise value per observation"
            )
    root = {
        "vlbicore_version": __version__,
        "vlbicore_schema": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    root.update({k: _attr_value(k, v) for k, v in attrs.items()})
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs=root), **groups})


# --------------------------------------------------------------------------------------------------
# Writing


def _encoding(tree: xr.DataTree) -> dict[str, dict[str, dict]]:
    """One chunk per chain for sampled arrays: readers reduce chain by chain; small groups stay whole."""
    encoding: dict[str, dict[str, dict]] = {}
    for node in tree.subtree:
        group_encoding = {}
        for name, var in node.dataset.data_vars.items():
            if var.dims[:2] == ("chain", "draw"):
                group_encoding[name] = {"chunks": (1,) + var.shape[1:]}
        if group_encoding:
            encoding[node.path] = group_encoding
    return encoding


def _write_tree(tree: xr.DataTree, target: Path) -> None:
    with warnings.catch_warnings():
        # object-dtype strings -> vlen-utf8 in format 2; harmless notices about it are not for users
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        tree.to_zarr(target, mode="w-", consolidated=True, zarr_format=ZARR_FORMAT, encoding=_encoding(tree))


# --------------------------------------------------------------------------------------------------
# Snapshot stores: many posteriors of one model (time windows of one observation) in one store

SNAPSHOT_DIM = "snapshot"


def _pad(ds: xr.Dataset, dim: str, n: int) -> xr.Dataset:
    """``ds`` padded along ``dim`` to ``n`` entries: NaN for floats, False for booleans, -1 for integers,
    "" for strings (padding is marked elsewhere: chain weight 0, mode_lp NaN)."""
    if dim not in ds.dims or ds.sizes[dim] >= n:
        return ds
    out = {}
    for name, var in ds.data_vars.items():
        if dim not in var.dims:
            out[name] = var
            continue
        axis = var.dims.index(dim)
        shape = list(var.shape)
        shape[axis] = n - var.shape[axis]
        kind = var.dtype.kind
        fill = {"f": np.nan, "c": np.nan, "b": False, "i": -1, "u": 0}.get(kind, "")
        extra = np.full(shape, fill, dtype=var.dtype if kind in "fcbiu" else object)
        out[name] = (var.dims, np.concatenate([np.asarray(var.values), extra], axis=axis), var.attrs)
    coords = {k: v for k, v in ds.coords.items() if dim not in v.dims}
    if dim in ds.coords:
        coords[dim] = np.arange(n)
    return xr.Dataset(out, coords=coords, attrs=ds.attrs)


def build_snapshot_tree(trees: list[xr.DataTree], *, time_start, time_end, records: list[dict],
                        attrs: Mapping[str, Any]) -> xr.DataTree:
    """One store of many posteriors of one model, from each snapshot's :func:`build_fit_tree`.

    Posterior, sample statistics and per-snapshot diagnostics gain a trailing ``snapshot`` dimension
    (coordinates ``time_start``, ``time_end`` in hours UTC and ``n_<kind>``: the count of each product);
    snapshots with fewer chains or modes than others are padded (chain weight 0, ``mode_lp`` NaN).
    ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` hold every snapshot's data along
    the usual ``<kind>_dim`` with ``<kind>_snapshot`` saying whose datum it is (its log-likelihood is
    evaluated at that snapshot's draws). ``records``: per snapshot, the facts a lone store keeps in its
    root attributes (converged, convergence, adequate, adequacy, multimodal, ...), stored as the JSON
    list ``snapshots``."""
    if not trees:
        raise VlbiError("snapshots: no snapshot has enough data to fit; use longer windows or other products")
    n_chain = max(t["posterior"].sizes["chain"] for t in trees)
    n_mode = max(t["diagnostics"].sizes.get("mode", 0) for t in trees)
    products = sorted({str(p) for t in trees for p in t["diagnostics"]["product"].values.tolist()})
    counts = {f"n_{kind}": ((SNAPSHOT_DIM,), np.array([int(r["n_data"].get(kind, 0)) for r in records], np.int64))
              for kind in products}
    snapshot_coords = {SNAPSHOT_DIM: np.arange(len(trees)),
                       "time_start": ((SNAPSHOT_DIM,), np.asarray(time_start, np.float64)),
                       "time_end": ((SNAPSHOT_DIM,), np.asarray(time_end, np.float64)), **counts}

    def stacked(group: str, pad: dict[str, int], reindex: dict | None = None) -> xr.Dataset:
        parts = []
        for t in trees:
            ds = t[group].dataset
            if reindex:
                ds = ds.reindex(reindex)
            for dim, n in pad.items():
                ds = _pad(ds, dim, n)
            parts.append(ds.drop_vars([c for c in ds.coords if c not in ds.dims]))
        out = xr.concat(parts, dim=SNAPSHOT_DIM, data_vars="all", coords="minimal", compat="override")
        out = out.transpose(..., SNAPSHOT_DIM)  # each variable keeps its own dims, snapshot last
        for name in out.data_vars:  # units, periods
            out[name].attrs.update(trees[0][group].dataset[name].attrs)
        return out.assign_coords(snapshot_coords)

    groups = {
        "posterior": stacked("posterior", {"chain": n_chain}),
        "sample_stats": stacked("sample_stats", {"chain": n_chain}),
        "diagnostics": stacked("diagnostics", {"chain": n_chain, "mode": n_mode},
                               reindex={"product": np.array(products, dtype=object)}),
    }
    for name in ("mode", "chain"):
        for g in groups.values():
            if name in g.dims:
                g.coords[name] = np.arange(g.sizes[name])

    def joined(group: str, kinds) -> xr.Dataset:
        data_vars = {}
        for kind in kinds:
            arrays = [np.asarray(_pad(t[group].dataset[[kind]], "chain", n_chain)[kind].values) for t in trees]
            data_vars[kind] = (("chain", "draw", f"{kind}_dim"), np.concatenate(arrays, axis=2))
        return xr.Dataset(data_vars, coords=_chain_draw_coords((n_chain, trees[0]["posterior"].sizes["draw"])))

    kinds = [k for k in trees[0]["log_likelihood"].dataset.data_vars]
    groups["log_likelihood"] = joined("log_likelihood", kinds)
    if all("posterior_predictive" in t.children for t in trees):
        groups["posterior_predictive"] = joined("posterior_predictive", list(trees[0]["posterior_predictive"].dataset.data_vars))
    observed = {}
    first = trees[0]["observed_data"].dataset
    for name, var in first.data_vars.items():
        dim = var.dims[0]
        observed[name] = ((dim,), np.concatenate([np.asarray(t["observed_data"].dataset[name].values) for t in trees]))
    for dim in sorted({v.dims[0] for v in first.data_vars.values()}):
        owner = "uv" if dim == "uv_dim" else dim[: -len("_dim")]
        observed[f"{owner}_snapshot"] = ((dim,), np.concatenate(
            [np.full(t["observed_data"].dataset.sizes.get(dim, 0), s, np.int64) for s, t in enumerate(trees)]))
    groups["observed_data"] = xr.Dataset(observed)
    root = dict(trees[0].attrs)
    root.update({k: _attr_value(k, v) for k, v in attrs.items()})
    root["snapshots"] = _attr_value("snapshots", list(records))
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs=root), **groups})


def write_snapshot_store(path, tree: xr.DataTree, *, overwrite: bool = False) -> Path:
    """Write a :func:`build_snapshot_tree` tree atomically at ``path`` (existing refused unless ``overwrite``)."""
    return write_directory_atomically(path, lambda temp: _write_tree(tree, temp), overwrite=overwrite,
                                      what="snapshot fit store")


def write_fit_store(
    path,
    *,
    posterior: Mapping[str, np.ndarray],
    sample_stats: Mapping[str, np.ndarray],
    log_likelihood: Mapping[str, np.ndarray],
    observed_data: Mapping[str, Mapping[str, Any]],
    posterior_predictive: Mapping[str, np.ndarray] | None = None,
    diagnostics: Mapping[str, Any],
    attrs: Mapping[str, Any],
    uv=None,
    overwrite: bool = False,
    variable_attrs: Mapping[str, Mapping[str, Any]] | None = None,
    gains: Mapping[str, Any] | None = None,
) -> Path:
    """Write one fit as an ArviZ-compatible Zarr store at ``path``, atomically; returns the path.

    ``posterior``/``sample_stats``: name -> (chain, draw); ``log_likelihood``/``posterior_predictive``:
    kind -> (chain, draw, n); ``observed_data``: kind -> {values, sigma, time, label, uvdist};
    ``diagnostics``: {rhat, ess_bulk, ess_tail: {param: float}, reduced_chi2, n_data: {kind: number},
    modes: [{lp, values: {param: float}, chains}]}; ``attrs``: root attributes (dict/list -> JSON string);
    ``uv``: (u, v) in λ for coverage plots; ``variable_attrs``: units and angle periods of posterior
    variables; ``gains``: sampled station gains (``log_amplitude``/``phase`` (chain, draw, station, segment),
    ``stations``, ``segment_time``), written as the ``gains`` group. An existing ``path`` is refused unless
    ``overwrite``.
    """
    tree = build_fit_tree(
        posterior=posterior,
        sample_stats=sample_stats,
        log_likelihood=log_likelihood,
        observed_data=observed_data,
        posterior_predictive=posterior_predictive,
        diagnostics=diagnostics,
        attrs=attrs,
        uv=uv,
        variable_attrs=variable_attrs,
        gains=gains,
    )
    return write_directory_atomically(path, lambda temp: _write_tree(tree, temp), overwrite=overwrite,
                                      what="fit store")
