"""Reading fit stores: open lazily, check the schema and groups, and the fit-level and per-parameter
facts every consumer (``vlbicore summary``, gather, plots, report) reads from a store."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from vlbicore import SCHEMA_VERSION
from vlbicore.errors import VlbiError
from vlbicore.statistics import draw_statistics
from vlbicore.store.layout import REQUIRED_GROUPS, SNAPSHOT_DIM


def read_fit_tree(path, *, chunks: dict | None = None) -> xr.DataTree:
    """Open a store lazily without checking its layout; unreadable -> VlbiError naming the path."""
    path = Path(path)
    if not path.exists():
        raise VlbiError(f"{path}: fit store not found; check the path or rerun the fit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            return xr.open_datatree(path, engine="zarr", chunks=chunks, consolidated=True)
    except Exception as exc:  # zarr/xarray raise many types for a damaged store; all mean the same to a user
        detail = " ".join(str(exc).split())[:160]
        raise VlbiError(f"{path}: not a readable Zarr fit store ({type(exc).__name__}: {detail}); rerun the fit") from exc


def schema_problem(tree: xr.DataTree, path) -> str | None:
    """The one-line complaint about a store of another schema version, or None when it is supported."""
    schema = tree.attrs.get("vlbicore_schema")
    if schema == SCHEMA_VERSION:
        return None
    return (f"{path}: store schema {schema!r} is not the supported version {SCHEMA_VERSION}; "
            "refit with this vlbicore version or use the matching vlbicore release")


def check_schema(tree: xr.DataTree, path) -> None:
    problem = schema_problem(tree, path)
    if problem:
        raise VlbiError(problem)


def missing_groups(tree: xr.DataTree) -> list[str]:
    return [g for g in REQUIRED_GROUPS if g not in tree.children]


def open_fit_store(path, *, chunks: dict | None = None) -> xr.DataTree:
    """Open a fit store lazily and check its schema version and required groups (VlbiError otherwise)."""
    tree = read_fit_tree(path, chunks=chunks)
    check_schema(tree, path)
    missing = missing_groups(tree)
    if missing:
        raise VlbiError(f"{path}: store lacks group(s) {', '.join(missing)}; it is incomplete, rerun the fit")
    return tree


def json_attr(tree: xr.DataTree, key: str, default: Any = None) -> Any:
    """A root attribute stored as JSON string, decoded (``default`` when absent or not JSON)."""
    value = tree.attrs.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return default
    return value


def fit_level_summary(tree: xr.DataTree) -> dict[str, Any]:
    """Divergences, draws, converged flag and reasons, reduced χ² and n per product, modes."""
    stats = tree["sample_stats"].dataset if "sample_stats" in tree.children else xr.Dataset()
    divergences = int(np.asarray(stats["diverging"].values).sum()) if "diverging" in stats else 0
    posterior = tree["posterior"].dataset
    n_samples = int(posterior.sizes.get("chain", 0) * posterior.sizes.get("draw", 0))
    diag = tree["diagnostics"].dataset if "diagnostics" in tree.children else xr.Dataset()
    chi2, n_data = {}, {}
    if "product" in diag.coords:
        for i, kind in enumerate(diag["product"].values.tolist()):
            chi2[str(kind)] = float(diag["reduced_chi2"].values[i])
            n_data[str(kind)] = int(diag["n_data"].values[i])
    gof = {}
    if "product" in diag.coords:
        for i, kind in enumerate(diag["product"].values.tolist()):
            gof[str(kind)] = {key: float(diag[key].values[i]) for key in
                              ("chi2", "reduced_chi2", "reduced_chi2_dof", "chi2_total", "reduced_chi2_total") if key in diag}
    modes = []
    if "mode_lp" in diag:
        names = [str(p) for p in diag["parameter"].values.tolist()]
        n_modes = diag.sizes.get("mode", 0)
        mass = diag["mode_mass"].values if "mode_mass" in diag else np.full(n_modes, np.nan)
        sampled = diag["mode_sampled"].values if "mode_sampled" in diag else np.zeros(n_modes, bool)
        laplace_ok = diag["mode_laplace_ok"].values if "mode_laplace_ok" in diag else np.ones(n_modes, bool)
        for i, (lp, values, chains) in enumerate(zip(diag["mode_lp"].values, diag["mode_values"].values,
                                                     diag["mode_chains"].values)):
            set_values = {n: float(v) for n, v in zip(names, values) if np.isfinite(v)}
            modes.append({"lp": float(lp), "values": set_values, "chains": int(chains), "mass": float(mass[i]),
                          "sampled": bool(sampled[i]), "laplace_ok": bool(laplace_ok[i])})
    convergence = json_attr(tree, "convergence", {}) or {}
    return {
        "divergences": divergences,
        "n_samples": n_samples,
        "converged": bool(tree.attrs.get("converged", False)),
        "reasons": list(convergence.get("reasons", [])),
        "warnings": list(convergence.get("warnings", [])),
        "multimodal": bool(tree.attrs.get("multimodal", False)),
        "symmetries": list(json_attr(tree, "symmetries", []) or []),
        "adequate": tree.attrs.get("adequate"),
        "adequacy": json_attr(tree, "adequacy", {}) or {},
        "reduced_chi2": chi2,
        "n_data": n_data,
        "goodness_of_fit": gof,
        "modes": modes,
    }


def chain_weights(tree: xr.DataTree) -> np.ndarray | None:
    """Each chain's weight in the posterior (``diagnostics.chain_weight``), or None for equal weights."""
    diag = tree["diagnostics"].dataset if "diagnostics" in tree.children else xr.Dataset()
    if "chain_weight" not in diag:
        return None
    weights = np.asarray(diag["chain_weight"].values, np.float64)
    return None if np.allclose(weights, weights[0]) else weights


def parameter_names(tree: xr.DataTree) -> list[str]:
    """Posterior variables in fit order (the diagnostics' parameter order), any others after them by name."""
    posterior = tree["posterior"].dataset
    diag = tree["diagnostics"].dataset if "diagnostics" in tree.children else xr.Dataset()
    fitted = [str(p) for p in diag["parameter"].values.tolist()] if "parameter" in diag.coords else []
    return [p for p in fitted if p in posterior] + sorted(str(p) for p in posterior.data_vars if str(p) not in fitted)


def parameter_statistics(tree: xr.DataTree) -> dict[str, dict[str, float]]:
    """Per posterior variable: mean, sd, median, hdi_low, hdi_high (94 %) and the stored rhat, ess_bulk,
    ess_tail; the draws weighted by their chains' weights (multimodal fits)."""
    posterior = tree["posterior"].dataset
    diag = tree["diagnostics"].dataset if "diagnostics" in tree.children else xr.Dataset()
    stored = {}
    if "parameter" in diag.coords:
        names = [str(p) for p in diag["parameter"].values.tolist()]
        for key in ("rhat", "ess_bulk", "ess_tail"):
            if key in diag:
                stored[key] = dict(zip(names, np.asarray(diag[key].values, dtype=np.float64).tolist()))
    weights = chain_weights(tree)
    out = {}
    for name in parameter_names(tree):
        values = np.asarray(posterior[name].values)
        per_draw = None if weights is None else np.broadcast_to(weights[:, None], values.shape[:2]).reshape(
            values.shape[:2] + (1,) * (values.ndim - 2))
        stats = draw_statistics(values, period=posterior[name].attrs.get("period"), weights=per_draw)
        for key in ("rhat", "ess_bulk", "ess_tail"):
            stats[key] = stored.get(key, {}).get(name, math.nan)
        out[name] = stats
    return out


# --------------------------------------------------------------------------------------------------
# Snapshot stores (many posteriors of one model, one per time window; see store.layout.build_snapshot_tree)


def is_snapshot_store(tree: xr.DataTree) -> bool:
    """Whether the store holds one posterior per time window (a ``snapshot`` dimension)."""
    return "posterior" in tree.children and SNAPSHOT_DIM in tree["posterior"].dataset.dims


def snapshot_records(tree: xr.DataTree) -> list[dict[str, Any]]:
    """Per snapshot: index, time_start, time_end (hours UTC), n_data per product and its verdicts
    (converged, adequate, multimodal, ...), from the root attribute ``snapshots``; empty for a lone fit."""
    if not is_snapshot_store(tree):
        return []
    return list(json_attr(tree, "snapshots", []) or [])


def skipped_snapshots(tree: xr.DataTree) -> list[dict[str, Any]]:
    """Windows left out of a snapshot store (too few data), with their times and the reason."""
    return list(json_attr(tree, "skipped_snapshots", []) or [])


def snapshot_view(tree: xr.DataTree, index: int) -> xr.DataTree:
    """Snapshot ``index`` of a snapshot store as a lone fit's tree (its chains, modes, data and verdicts),
    so every reader of lone stores reads it unchanged; root attributes gain ``snapshot``,
    ``time_start``, ``time_end``."""
    records = snapshot_records(tree)
    if not 0 <= index < len(records):
        raise VlbiError(f"snapshot {index}: the store has snapshots 0-{len(records) - 1}; choose one of them")
    record = records[index]
    diag = tree["diagnostics"].dataset.isel({SNAPSHOT_DIM: index})
    chains = np.flatnonzero(np.asarray(diag["chain_weight"].values) > 0) if "chain_weight" in diag else None
    modes = np.flatnonzero(np.isfinite(np.asarray(diag["mode_lp"].values))) if "mode_lp" in diag else None

    def own(ds: xr.Dataset) -> xr.Dataset:
        ds = ds.isel({SNAPSHOT_DIM: index}) if SNAPSHOT_DIM in ds.dims else ds
        ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims], errors="ignore")
        if chains is not None and "chain" in ds.dims:
            ds = ds.isel(chain=chains).assign_coords(chain=np.arange(len(chains)))
        if modes is not None and "mode" in ds.dims:
            ds = ds.isel(mode=modes).assign_coords(mode=np.arange(len(modes)))
        return ds

    groups = {}
    observed = tree["observed_data"].dataset
    mine = {}
    for name in observed.data_vars:
        if str(name).endswith("_snapshot"):
            dim = observed[name].dims[0]
            mine[dim] = np.flatnonzero(np.asarray(observed[name].values) == index)
    for group in tree.children:
        ds = own(tree[group].dataset)
        for dim, rows in mine.items():
            if dim in ds.dims:
                ds = ds.isel({dim: rows})
        if group == "observed_data":
            ds = ds.drop_vars([n for n in ds.data_vars if str(n).endswith("_snapshot")])
        groups[group] = ds
    attrs = dict(tree.attrs)
    attrs.pop("snapshots", None)
    attrs.pop("skipped_snapshots", None)
    for key, value in record.items():
        if key in ("index", "n_data"):
            continue
        attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
    attrs["snapshot"] = int(index)
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs=attrs), **groups})


def snapshot_views(tree: xr.DataTree) -> list[xr.DataTree]:
    """Every snapshot of a snapshot store as a lone fit's tree (see :func:`snapshot_view`)."""
    return [snapshot_view(tree, i) for i in range(len(snapshot_records(tree)))]
