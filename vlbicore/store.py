"""One Zarr store per fit (epoch × model): write it atomically, open it, summarise it.

The store is an ArviZ-style ``xarray.DataTree`` (groups ``posterior``, ``sample_stats``,
``log_likelihood``, ``posterior_predictive``, ``observed_data``; dims ``chain``, ``draw``,
``<kind>_dim``) plus the vlbicore group ``diagnostics`` and provenance in the root attributes (see
``docs/architecture.md``). It is written in Zarr format 2 with consolidated metadata, the layout every
Zarr reader understands, so ``xarray.open_datatree(path, engine="zarr")`` and
``arviz_base.convert_to_datatree(path)`` read it without vlbicore.

Atomicity: the tree is written to ``<parent>/.<name>.tmp-<host>-<pid>`` and renamed onto ``path`` only
when complete, so a job killed mid-write never leaves a store that looks finished; later writes on the same
host remove temp directories whose writer process is gone.
"""
from __future__ import annotations

import datetime
import errno
import json
import math
import os
import shutil
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import xarray as xr

from vlbicore import SCHEMA_VERSION, __version__
from vlbicore.angles import unwrap_around_circular_mean
from vlbicore.errors import VlbiError

REQUIRED_GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data", "diagnostics")
HDI_PROB = 0.94
_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
ZARR_FORMAT = 2  # consolidated metadata is part of the v2 spec; v3 still warns it is not


# --------------------------------------------------------------------------------------------------
# Posterior statistics shared by summary_table and vlbicore.gather


def hdi(samples: np.ndarray, prob: float = HDI_PROB) -> tuple[float, float]:
    """Narrowest interval holding ``prob`` of the samples (NaNs ignored); (nan, nan) when empty."""
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return math.nan, math.nan
    width = min(int(math.floor(prob * n)), n - 1)
    if width == 0:
        return float(x[0]), float(x[-1])
    lengths = x[width:] - x[: n - width]
    start = int(np.argmin(lengths))
    return float(x[start]), float(x[start + width])


def draw_statistics(samples: np.ndarray, prob: float = HDI_PROB, period: float | None = None) -> dict[str, float]:
    """Mean, sd, median and HDI of one parameter's draws (any shape, NaNs ignored).

    Angles (``period`` given, e.g. 2π) are summarised on the circle: the draws are unwrapped around their
    circular mean, so a posterior straddling ±π (or 0/π for an axis) gets one contiguous HDI, which may
    extend past the nominal range (e.g. [3.0, 3.3] rad), instead of a spurious interval spanning the circle.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": math.nan, "sd": math.nan, "median": math.nan, "hdi_low": math.nan, "hdi_high": math.nan}
    if period:
        x = unwrap_around_circular_mean(x, period)
    low, high = hdi(x, prob)
    return {
        "mean": float(np.mean(x)),
        "sd": float(np.std(x, ddof=1)) if x.size > 1 else 0.0,
        "median": float(np.median(x)),
        "hdi_low": low,
        "hdi_high": high,
    }


# --------------------------------------------------------------------------------------------------
# Building the tree


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
    data_vars = {
        "rhat": (("parameter",), per_param("rhat")),
        "ess_bulk": (("parameter",), per_param("ess_bulk")),
        "ess_tail": (("parameter",), per_param("ess_tail")),
        "reduced_chi2": (("product",), np.array([float(chi2.get(k, math.nan)) for k in products])),
        "n_data": (("product",), np.array([int(n_data.get(k, 0)) for k in products], dtype=np.int64)),
        "mode_lp": (("mode",), np.array([float(m["lp"]) for m in modes], dtype=np.float64)),
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
# Writing atomically


def _temp_path(path: Path, tag: str) -> Path:
    # host in the name: on a shared file system a pid says nothing about another node's processes
    return path.parent / f".{path.name}.{tag}-{socket.gethostname()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete ``.<name>.tmp-<host>-<pid>`` / ``.old-...`` leftovers of writers on this host that no longer run."""
    removed = []
    host = socket.gethostname()
    for tag in ("tmp", "old"):
        prefix = f".{path.name}.{tag}-{host}-"
        for leftover in path.parent.glob(prefix + "*"):
            pid = leftover.name[len(prefix):]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
    return removed


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
) -> Path:
    """Write one fit as an ArviZ-compatible Zarr store at ``path``, atomically; returns the path.

    ``posterior``/``sample_stats``: name -> (chain, draw); ``log_likelihood``/``posterior_predictive``:
    kind -> (chain, draw, n); ``observed_data``: kind -> {values, sigma, time, label, uvdist};
    ``diagnostics``: {rhat, ess_bulk, ess_tail: {param: float}, reduced_chi2, n_data: {kind: number},
    modes: [{lp, values: {param: float}, chains}]}; ``attrs``: root attributes (dict/list -> JSON string);
    ``uv``: (u, v) in λ for coverage plots; ``variable_attrs``: units and angle periods of posterior
    variables. An existing ``path`` is refused unless ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise VlbiError(f"{path}: store already exists; pass --overwrite (overwrite=True) or choose another path")
    if not path.parent.is_dir():
        raise VlbiError(f"{path}: parent directory {path.parent} does not exist; create it first")
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
    )
    remove_stale_temps(path)
    temp = _temp_path(path, "tmp")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        _write_tree(tree, temp)
        _commit(temp, path, overwrite=overwrite)
    except OSError as exc:
        _remove_settled(temp)
        if exc.errno in _NO_SPACE_ERRNOS:
            raise VlbiError(
                f"{path}: no space left to write the fit store ({os.strerror(exc.errno)}); free disk space or "
                "quota and rerun; nothing was written"
            ) from exc
        raise VlbiError(f"{path}: cannot write the fit store ({exc.strerror or exc}); check the directory") from exc
    except BaseException:
        _remove_settled(temp)
        raise
    return path


def _remove_settled(directory: Path, quiet_s: float = 0.1, timeout_s: float = 5.0) -> None:
    """Remove a directory that zarr's I/O thread may still be writing into after a failed write.

    zarr reports the first failed chunk write while sibling writes are still in flight; they can recreate
    files right after a first ``rmtree``. Remove until the directory has stayed absent for ``quiet_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        shutil.rmtree(directory, ignore_errors=True)
        time.sleep(quiet_s)
        if not directory.exists() or time.monotonic() > deadline:
            return


def _commit(temp: Path, path: Path, *, overwrite: bool) -> None:
    """Rename the finished temp store onto ``path``; an old store is moved aside first and restored on failure."""
    if not (overwrite and path.exists()):
        os.rename(temp, path)
        return
    aside = _temp_path(path, "old")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(path, aside)
    try:
        os.rename(temp, path)
    except OSError:
        os.rename(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Reading


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


def check_schema(tree: xr.DataTree, path) -> None:
    schema = tree.attrs.get("vlbicore_schema")
    if schema != SCHEMA_VERSION:
        raise VlbiError(
            f"{path}: store schema {schema!r} is not the supported version {SCHEMA_VERSION}; "
            "refit with this vlbicore version or use the matching vlbicore release"
        )


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
    modes = []
    if "mode_lp" in diag:
        names = [str(p) for p in diag["parameter"].values.tolist()]
        for lp, values, chains in zip(diag["mode_lp"].values, diag["mode_values"].values, diag["mode_chains"].values):
            set_values = {n: float(v) for n, v in zip(names, values) if np.isfinite(v)}
            modes.append({"lp": float(lp), "values": set_values, "chains": int(chains)})
    convergence = json_attr(tree, "convergence", {}) or {}
    return {
        "divergences": divergences,
        "n_samples": n_samples,
        "converged": bool(tree.attrs.get("converged", False)),
        "reasons": list(convergence.get("reasons", [])),
        "warnings": list(convergence.get("warnings", [])),
        "reduced_chi2": chi2,
        "n_data": n_data,
        "modes": modes,
    }


SUMMARY_COLUMNS = ["mean", "sd", "median", "hdi_3%", "hdi_97%", "rhat", "ess_bulk", "ess_tail"]


def parameter_names(tree: xr.DataTree) -> list[str]:
    """Posterior variables in fit order (the diagnostics' parameter order), any others after them by name."""
    posterior = tree["posterior"].dataset
    diag = tree["diagnostics"].dataset if "diagnostics" in tree.children else xr.Dataset()
    fitted = [str(p) for p in diag["parameter"].values.tolist()] if "parameter" in diag.coords else []
    return [p for p in fitted if p in posterior] + sorted(str(p) for p in posterior.data_vars if str(p) not in fitted)


def parameter_statistics(tree: xr.DataTree) -> dict[str, dict[str, float]]:
    """Per posterior variable: mean, sd, median, hdi_low, hdi_high (94 %) and the stored rhat, ess_bulk, ess_tail."""
    posterior = tree["posterior"].dataset
    diag = tree["diagnostics"].dataset if "diagnostics" in tree.children else xr.Dataset()
    stored = {}
    if "parameter" in diag.coords:
        names = [str(p) for p in diag["parameter"].values.tolist()]
        for key in ("rhat", "ess_bulk", "ess_tail"):
            if key in diag:
                stored[key] = dict(zip(names, np.asarray(diag[key].values, dtype=np.float64).tolist()))
    out = {}
    for name in parameter_names(tree):
        stats = draw_statistics(np.asarray(posterior[name].values), period=posterior[name].attrs.get("period"))
        for key in ("rhat", "ess_bulk", "ess_tail"):
            stats[key] = stored.get(key, {}).get(name, math.nan)
        out[name] = stats
    return out


def parameter_summary(tree: xr.DataTree) -> pd.DataFrame:
    """The per-parameter table of :func:`summary_table` (columns ``SUMMARY_COLUMNS``)."""
    renamed = {"hdi_low": "hdi_3%", "hdi_high": "hdi_97%"}
    rows = {name: {renamed.get(k, k): v for k, v in stats.items()} for name, stats in parameter_statistics(tree).items()}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=SUMMARY_COLUMNS)
    frame.index.name = "parameter"
    return frame


def summary_table(path) -> pd.DataFrame:
    """Per-parameter table of one store; fit-level facts (divergences, converged, reduced χ²) in ``df.attrs``."""
    tree = open_fit_store(path)
    frame = parameter_summary(tree)
    frame.attrs.update(fit_level_summary(tree))
    frame.attrs.update({k: tree.attrs.get(k) for k in ("epoch", "model_name", "data_path", "source", "date", "band")})
    return frame


def format_summary(path, frame: pd.DataFrame | None = None) -> str:
    """The text ``vlbicore summary`` prints: provenance, convergence verdict, χ², modes, parameter table
    (``frame``: the store's :func:`summary_table`, when the caller has it already)."""
    frame = summary_table(path) if frame is None else frame
    a = frame.attrs
    lines = [
        f"store:     {Path(path)}",
        f"epoch:     {a.get('epoch')}  ({a.get('source')} {a.get('date')} band {a.get('band')})",
        f"model:     {a.get('model_name')}",
        f"data:      {a.get('data_path')}",
        f"converged: {'YES' if a['converged'] else 'NO'}"
        + ("" if a["converged"] or not a["reasons"] else " - " + "; ".join(a["reasons"])),
        f"divergences: {a['divergences']} of {a['n_samples']} draws",
    ]
    lines.extend(f"warning:   {w}" for w in a.get("warnings", []))
    if a["reduced_chi2"]:
        chi2 = ", ".join(f"{k} {v:.3f} (n={a['n_data'].get(k, 0)})" for k, v in a["reduced_chi2"].items())
        lines.append(f"reduced chi2: {chi2}")
    lines.append(f"modes found: {len(a['modes'])}")
    for i, mode in enumerate(a["modes"]):
        values = ", ".join(f"{k}={v:.4g}" for k, v in mode["values"].items())
        lines.append(f"  mode {i}: lp={mode['lp']:.2f} chains={mode['chains']} {values}")
    with pd.option_context("display.width", 120, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        lines.extend(["", frame.to_string()])
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Synthetic fits (tests, benchmarks, demos)


def synthetic_fit_inputs(
    seed: int,
    *,
    epoch: str = "2017-04-05-lo",
    model: str = "ring",
    date: str = "2017-04-05",
    band: str = "lo",
    n_chains: int = 4,
    n_draws: int = 200,
    n_cphase: int = 30,
    n_lcamp: int = 20,
    diameter: float = 40.0,
    offset_bias: float = 0.0,
    converged: bool = True,
    data_seed: int = 0,
) -> dict[str, Any]:
    """Keyword arguments for :func:`write_fit_store` describing a small, self-consistent synthetic fit.

    The observations (seeded by ``data_seed``, so fits of one epoch share them) are closure phases and log
    closure amplitudes scattered by σ = 0.1 around 0. A parameter ``offset`` predicts every datum; its draws
    are its exact posterior under a flat prior shifted by ``offset_bias`` (0 = the correct model, larger =
    a worse one), and the stored pointwise log likelihood and predictions follow from those draws, so PSIS-
    LOO has a known ordering. ``d``/``alpha`` are decorative ring parameters (d ~ N(diameter, 1)).
    """
    data_rng = np.random.default_rng(data_seed)
    rng = np.random.default_rng(seed)
    sigma = 0.1
    shape = (n_chains, n_draws)
    observed, log_lik, predictive = {}, {}, {}
    all_values = []
    for kind, n in (("cphase", n_cphase), ("lcamp", n_lcamp)):
        values = data_rng.normal(0.0, sigma, n)
        observed[kind] = {
            "values": values,
            "sigma": np.full(n, sigma),
            "time": np.sort(data_rng.uniform(0, 12, n)),
            "label": [f"S{i % 5}-S{(i + 1) % 5}-S{(i + 2) % 5}" for i in range(n)],
            "uvdist": data_rng.uniform(1e9, 8e9, n),
        }
        all_values.append(values)
    y = np.concatenate(all_values)
    offset = rng.normal(y.mean() + offset_bias, sigma / math.sqrt(y.size), shape)
    for kind in observed:
        values = observed[kind]["values"]
        residual = values[None, None, :] - offset[..., None]
        log_lik[kind] = -0.5 * (residual / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))
        predictive[kind] = np.broadcast_to(offset[..., None], residual.shape).copy()
    posterior = {
        "d": rng.normal(diameter, 1.0, shape),
        "alpha": np.abs(rng.normal(10.0, 0.5, shape)),
        "offset": offset,
    }
    lp = sum(ll.sum(axis=-1) for ll in log_lik.values())
    sample_stats = {"lp": lp, "diverging": rng.random(shape) < (0.0 if converged else 0.05)}
    params = list(posterior)
    reasons = [] if converged else ["R-hat 1.200 > 1.01 (worst: d)"]
    diagnostics = {
        "rhat": {p: (1.0 if converged else 1.2) for p in params},
        "ess_bulk": {p: 0.8 * n_chains * n_draws for p in params},
        "ess_tail": {p: 0.6 * n_chains * n_draws for p in params},
        "reduced_chi2": {k: float(np.mean(((v["values"] - offset.mean()) / sigma) ** 2)) for k, v in observed.items()},
        "n_data": {k: len(v["values"]) for k, v in observed.items()},
        "modes": [{"lp": float(lp.max()), "values": {p: float(np.median(posterior[p])) for p in params}, "chains": n_chains}],
    }
    attrs = {
        "data_path": f"/data/{epoch}.uvfits",
        "data_sha256": "0" * 64,
        "source": "M87",
        "date": date,
        "band": band,
        "frequency_hz": 227.1e9 if band == "lo" else 229.1e9,
        "epoch": epoch,
        "model_name": model,
        "model_spec": {"type": "ring"},
        "priors": {"d": [20, 80]},
        "sampler": {"chains": n_chains, "samples": n_draws},
        "seed": seed,
        "converged": converged,
        "convergence": {"max_rhat": 1.0 if converged else 1.2, "reasons": reasons},
        "products": ["cphase", "lcamp"],
    }
    n_uv = 50
    uv = (data_rng.uniform(-8e9, 8e9, n_uv), data_rng.uniform(-8e9, 8e9, n_uv))
    return {
        "posterior": posterior,
        "sample_stats": sample_stats,
        "log_likelihood": log_lik,
        "observed_data": observed,
        "posterior_predictive": predictive,
        "diagnostics": diagnostics,
        "attrs": attrs,
        "uv": uv,
    }
