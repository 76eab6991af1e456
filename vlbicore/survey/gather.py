"""Gather a campaign's fit stores into tables and one Zarr store over (epoch, model, parameter).

Each store is opened lazily, reduced to small summaries (posterior statistics, diagnostics, leave-one-scan-out
PSIS-LOO) and closed inside a Dask task (a task handles a small batch of stores, one after the other), so
memory holds at most one store per worker thread, never every posterior at once. Tasks run on a ``distributed.LocalCluster`` (threads in this process) or on an
existing Dask scheduler (``scheduler="tcp://host:8786"``, e.g. a dask-jobqueue SLURMCluster; see
docs/gather.md).

Nothing is dropped silently: unreadable stores, other schema versions, missing groups, duplicates,
non-converged fits and models that cannot be compared are listed in ``problems.csv``; the remaining stores
are still gathered.

Outputs in ``out_dir``: ``summary.csv``/``summary.parquet`` (tidy: epoch × model × parameter),
``fits.csv``/``fits.parquet`` (one row per fit), ``loo.csv`` (model ranking per epoch),
``snapshots.csv``/``snapshots.parquet`` (snapshot stores: one row per epoch × model × snapshot × parameter, with the window's
``time_start``/``time_end`` in hours UTC; the store's pooled values are its rows in ``summary.csv``),
``problems.csv`` and ``gathered.zarr`` (summaries along epoch, model, parameter, product).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import dask
import numpy as np
import pandas as pd
import xarray as xr

from vlbicore import SCHEMA_VERSION
from vlbicore.errors import VlbiError
from vlbicore.statistics import HDI_PROB
from vlbicore.store import (fit_level_summary, is_snapshot_store, json_attr, missing_groups, open_fit_store,
                            parameter_statistics, read_fit_tree, schema_problem, snapshot_records,
                            write_directory_atomically)
from vlbicore.store.summary import snapshot_summary
from vlbicore.survey.compare import (COMPARE_COLUMNS, LooResult, compare_models, data_identity, describe_difference,
                                     loo_from_tree, weight_method)

STAT_COLUMNS = ["mean", "median", "sd", "hdi_low", "hdi_high", "rhat", "ess_bulk", "ess_tail"]
PROBLEM_COLUMNS = ["path", "epoch", "model", "problem", "message"]


@dataclasses.dataclass
class GatherResult:
    """What :func:`gather_stores` wrote and the tables themselves."""

    out_dir: Path
    summary: pd.DataFrame  # tidy: one row per epoch × model × parameter
    fits: pd.DataFrame  # one row per gathered fit
    comparison: pd.DataFrame  # leave-one-scan-out LOO ranking per epoch (models of the same data variables)
    problems_table: pd.DataFrame  # path, epoch, model, problem, message (= problems.csv)
    dataset: xr.Dataset  # the content of gathered.zarr
    files: dict[str, Path]

    @property
    def problems(self) -> list[dict[str, str]]:
        """Every reported problem as a dict (path, epoch, model, problem, message); empty when all is well."""
        return self.problems_table.to_dict("records")


# --------------------------------------------------------------------------------------------------
# One store -> small summary (runs inside a Dask task)


def _identity(tree: xr.DataTree | None, path: Path) -> dict[str, Any]:
    attrs = tree.attrs if tree is not None else {}
    source, date, band = attrs.get("source"), attrs.get("date"), attrs.get("band")
    epoch = attrs.get("epoch") or ("_".join(str(x) for x in (source, date, band) if x) or path.stem)
    return {
        "path": str(path),
        "epoch": str(epoch),
        "model": str(attrs.get("model_name") or path.stem),
        "date": str(date or ""),
        "band": str(band or ""),
        "source": str(source or ""),
    }


def summarize_store(path) -> dict[str, Any]:
    """Reduce one store to plain Python/NumPy summaries; never raises for a bad store (problems listed)."""
    path = Path(path)
    try:
        tree = read_fit_tree(path, chunks=None)
    except VlbiError as exc:
        return {**_identity(None, path), "gathered": False, "problems": [("unreadable", str(exc))]}
    # the store's own small dask graphs run here, synchronously: a task that submitted work back to the
    # cluster it runs on could block every worker thread
    with dask.config.set(scheduler="synchronous"):
        return _summarize_open_store(tree, path)


def _summarize_open_store(tree: xr.DataTree, path: Path) -> dict[str, Any]:
    record = _identity(tree, path)
    problems: list[tuple[str, str]] = []
    message = schema_problem(tree, path)
    if message:
        return {**record, "gathered": False, "problems": [("schema", message)]}
    missing = missing_groups(tree)
    if "posterior" in missing:
        return {**record, "gathered": False, "problems": [("missing_group", f"{path}: no posterior group; rerun the fit")]}
    if missing:
        problems.append(("missing_group", f"{path}: lacks group(s) {', '.join(missing)}; rerun the fit"))
    try:
        record.update(_reduce_tree(tree, path, problems))
    except Exception as exc:  # a store damaged inside (truncated chunk) surfaces only when read
        detail = " ".join(str(exc).split())[:160]
        return {**record, "gathered": False, "problems": [("unreadable", f"{path}: {type(exc).__name__}: {detail}")]}
    finally:
        tree.close()
    record["gathered"] = True
    record["problems"] = problems
    return record


def _reduce_snapshot_tree(tree: xr.DataTree, path: Path, problems: list) -> dict[str, Any]:
    """A snapshot store: one row per snapshot × parameter (``snapshots.csv``) and, as the fit's parameters
    in ``summary.csv``, the pooled value of each parameter (``POOLING_METHOD``; HDI columns NaN). No
    leave-one-scan-out LOO: a snapshot store's posteriors are of different data."""
    table = snapshot_summary(tree).reset_index()
    posterior = tree["posterior"].dataset
    records = snapshot_records(tree)
    convergence = json_attr(tree, "convergence", {}) or {}
    adequacy = json_attr(tree, "adequacy", {}) or {}
    converged = bool(tree.attrs.get("converged", False))
    if not converged:
        problems.append(("not_converged", f"{path}: snapshot fits did not all converge "
                                          f"({'; '.join(convergence.get('reasons', [])) or 'no reason stored'})"))
    stats_columns = [*STAT_COLUMNS, "converged", "adequate"]
    rows, params = [], {}
    for _, r in table.iterrows():
        units = str(posterior[r["parameter"]].attrs.get("units", ""))
        period = float(posterior[r["parameter"]].attrs.get("period", math.nan))
        if str(r["snapshot"]) == "pooled":
            params[r["parameter"]] = {**{k: float(r[k]) for k in STAT_COLUMNS}, "units": units, "period": period}
            continue
        rows.append({"parameter": r["parameter"], "snapshot": int(r["snapshot"]), "time_start": float(r["time_start"]),
                     "time_end": float(r["time_end"]), **{k: r[k] for k in stats_columns}, "units": units,
                     "period": period})
    n_data: dict[str, int] = {}
    for record in records:
        for kind, n in record["n_data"].items():
            n_data[kind] = n_data.get(kind, 0) + int(n)
    stats = tree["sample_stats"].dataset
    return {
        "converged": converged,
        "adequate": _optional_bool(tree.attrs.get("adequate")),
        "multimodal": _optional_bool(tree.attrs.get("multimodal")),
        "adequacy_reasons": "; ".join(map(str, adequacy.get("reasons", []))) if isinstance(adequacy, dict) else "",
        "campaign": str(tree.attrs.get("campaign", "")),
        "model_spec": json.dumps(json_attr(tree, "model_spec", {}) or {}, sort_keys=True),
        "reasons": "; ".join(convergence.get("reasons", [])),
        "divergences": int(np.asarray(stats["diverging"].values).sum()) if "diverging" in stats else 0,
        "n_samples": int(np.isfinite(np.asarray(posterior[next(iter(posterior.data_vars))].values)).sum()),
        "reduced_chi2": {},
        "n_data": n_data,
        "n_modes": 0,
        "n_snapshots": len(records),
        "snapshot_spec": str(tree.attrs.get("snapshot_spec", "")),
        "products": json_attr(tree, "products", []),
        "data_sha256": str(tree.attrs.get("data_sha256", "")),
        "params": params,
        "snapshots": rows,
        "loo": None,
        "identity": None,
    }


def _reduce_tree(tree: xr.DataTree, path: Path, problems: list) -> dict[str, Any]:
    if is_snapshot_store(tree):
        return _reduce_snapshot_tree(tree, path, problems)
    fit = fit_level_summary(tree)
    if not fit["converged"]:
        reasons = "; ".join(fit["reasons"]) or "no reason stored"
        problems.append(("not_converged", f"{path}: fit did not converge ({reasons})"))
    params = parameter_statistics(tree)
    loo_result: LooResult | None = None
    identity = None
    if "log_likelihood" in tree.children and "observed_data" in tree.children:
        try:
            identity = data_identity(tree)
            loo_result = loo_from_tree(tree)
        except VlbiError as exc:
            problems.append(("loo_failed", f"{path}: {exc}"))
    if loo_result is not None and loo_result.n_bad_k:
        problems.append(
            ("high_pareto_k", f"{path}: {loo_result.n_bad_k} of {loo_result.n_units} "
             f"{'scans' if loo_result.unit == 'scan' else 'time stamps'} have Pareto k > "
             f"{loo_result.good_k:.2f} (arviz-stats' threshold for {loo_result.n_samples} draws); LOO unreliable there")
        )
    adequacy = json_attr(tree, "adequacy", {}) or {}
    posterior = tree["posterior"].dataset
    for name, stats in params.items():  # units and angle periods travel with the numbers (plots, report)
        stats["units"] = str(posterior[name].attrs.get("units", ""))
        stats["period"] = float(posterior[name].attrs.get("period", math.nan))
    return {
        "converged": fit["converged"],
        # verdicts newer than some stores: None where a store does not record them
        "adequate": _optional_bool(tree.attrs.get("adequate")),
        "multimodal": _optional_bool(tree.attrs.get("multimodal")),
        "adequacy_reasons": "; ".join(map(str, adequacy.get("reasons", []))) if isinstance(adequacy, dict) else "",
        "campaign": str(tree.attrs.get("campaign", "")),
        "model_spec": json.dumps(json_attr(tree, "model_spec", {}) or {}, sort_keys=True),
        "reasons": "; ".join(fit["reasons"]),
        "divergences": fit["divergences"],
        "n_samples": fit["n_samples"],
        "reduced_chi2": fit["reduced_chi2"],
        "n_data": fit["n_data"],
        "n_modes": len(fit["modes"]),
        "products": json_attr(tree, "products", []),
        "data_sha256": str(tree.attrs.get("data_sha256", "")),
        "params": params,
        "loo": loo_result,
        "identity": identity,
    }


def _optional_bool(value) -> bool | None:
    return None if value is None else bool(value)


# --------------------------------------------------------------------------------------------------
# Dask execution


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None, processes: bool = False) -> Iterator[Any]:
    """A distributed Client: connected to ``scheduler`` if given, else a LocalCluster.

    ``processes=False``: one in-process worker with ``n_workers`` threads (quick to start; zarr I/O and
    the Python-level bookkeeping share one GIL). ``processes=True``: ``n_workers`` single-threaded worker
    processes, each with a memory limit of its share of RAM (the nanny restarts a worker that exceeds it).
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise VlbiError(
                f"--scheduler {scheduler}: cannot connect to the Dask scheduler ({exc}); check the address "
                "and that the scheduler is running"
            ) from exc
        try:
            yield client
        finally:
            client.close()
        return
    workers = n_workers or min(os.cpu_count() or 1, 4)
    # one store per worker thread at a time bounds memory: a task reduces its store and drops it
    layout = {"n_workers": workers, "threads_per_worker": 1} if processes else {"n_workers": 1, "threads_per_worker": workers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(**layout, processes=processes, dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def summarize_batch(paths: list[str]) -> list[dict[str, Any]]:
    """:func:`summarize_store` over a few stores, one after the other (one Dask task)."""
    return [summarize_store(path) for path in paths]


def _batches(paths: list[Path], n_slots: int) -> list[list[str]]:
    """About 8 tasks per worker slot: enough for load balancing, few enough that the scheduler's per-task
    bookkeeping (tens of kB each) stays small for campaigns of thousands of stores."""
    size = max(1, len(paths) // max(8 * n_slots, 1))
    return [[str(p) for p in paths[i : i + size]] for i in range(0, len(paths), size)]


def _run_tasks(paths: list[Path], client) -> list[dict[str, Any]]:
    from distributed import as_completed

    n_slots = sum(client.nthreads().values()) or 1
    batches = _batches(paths, n_slots)
    futures = client.map(summarize_batch, batches, pure=False)
    by_key = {f.key: batch for f, batch in zip(futures, batches)}
    records = []
    for future in as_completed(futures):
        try:
            records.extend(future.result())
        except Exception as exc:  # a worker crash must name its stores, not end the gather
            for path in by_key[future.key]:
                problem = ("task_failed", f"{path}: {type(exc).__name__}: {exc}")
                records.append({**_identity(None, Path(path)), "gathered": False, "problems": [problem]})
        future.release()
    order = {str(p): i for i, p in enumerate(paths)}
    return sorted(records, key=lambda r: order.get(r["path"], len(order)))


# --------------------------------------------------------------------------------------------------
# Tables


def _problems_table(records: list[dict]) -> pd.DataFrame:
    rows = [
        {"path": r["path"], "epoch": r["epoch"], "model": r["model"], "problem": kind, "message": message}
        for r in records
        for kind, message in r["problems"]
    ]
    return pd.DataFrame(rows, columns=PROBLEM_COLUMNS)


def _drop_duplicates(records: list[dict]) -> list[dict]:
    """Keep the first store of each (epoch, model); later ones are reported, not merged."""
    seen: dict[tuple[str, str], str] = {}
    for r in records:
        if not r["gathered"]:
            continue
        key = (r["epoch"], r["model"])
        if key in seen:
            r["gathered"] = False
            r["problems"].append(("duplicate", f"{r['path']}: epoch {key[0]} model {key[1]} already gathered from {seen[key]}; skipped"))
        else:
            seen[key] = r["path"]
    return [r for r in records if r["gathered"]]


def _fits_table(records: list[dict], products: list[str]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {k: r[k] for k in ("epoch", "model", "date", "band", "source", "converged", "adequate", "multimodal",
                                 "reasons", "adequacy_reasons", "divergences", "n_samples", "n_modes", "campaign",
                                 "model_spec")}
        row["n_snapshots"] = r.get("n_snapshots", 0)  # 0: a whole-track fit
        for kind in products:
            row[f"reduced_chi2_{kind}"] = r["reduced_chi2"].get(kind, math.nan)
            row[f"n_{kind}"] = r["n_data"].get(kind, 0)
        row["path"] = r["path"]
        rows.append(row)
    return pd.DataFrame(rows)


def _summary_table(records: list[dict], fits: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in records:
        for name, stats in r["params"].items():
            rows.append({"epoch": r["epoch"], "model": r["model"], "parameter": name, **{k: stats[k] for k in STAT_COLUMNS},
                         "units": stats["units"], "period": stats["period"]})
    params = pd.DataFrame(rows, columns=["epoch", "model", "parameter", *STAT_COLUMNS, "units", "period"])
    text_columns = ("reasons", "adequacy_reasons", "model_spec", "path")
    fit_columns = [c for c in fits.columns if c not in text_columns] if len(fits) else ["epoch", "model"]
    return params.merge(fits[fit_columns], on=["epoch", "model"], how="left") if len(fits) else params


SNAPSHOT_COLUMNS = ["epoch", "model", "source", "band", "parameter", "snapshot", "time_start", "time_end", *STAT_COLUMNS,
                    "converged", "adequate", "units", "period"]


def _snapshot_table(records: list[dict]) -> pd.DataFrame:
    """One row per epoch × model × snapshot × parameter of the snapshot stores (``snapshots.csv``)."""
    rows = [{"epoch": r["epoch"], "model": r["model"], "source": r["source"], "band": r["band"], **row}
            for r in records for row in r.get("snapshots", [])]
    return pd.DataFrame(rows, columns=SNAPSHOT_COLUMNS)


def _comparison_table(records: list[dict], method: str) -> tuple[pd.DataFrame, list[tuple]]:
    """LOO ranking per epoch among models of the same data variables (by :class:`DataIdentity` fingerprint)."""
    frames, problems = [], []
    by_epoch: dict[str, list[dict]] = {}
    for r in records:
        if r.get("loo") is not None:
            by_epoch.setdefault(r["epoch"], []).append(r)
    for epoch, group in by_epoch.items():
        by_data: dict[str, list[dict]] = {}
        for r in group:
            by_data.setdefault(r["identity"].fingerprint, []).append(r)
        if len(by_data) > 1:
            identities = {",".join(sorted(x["model"] for x in g)): g[0]["identity"] for g in by_data.values()}
            problems.append(
                ("", epoch, "", "not_comparable", f"epoch {epoch}: models cannot all be ranked together, "
                 f"{describe_difference(identities)}; ranked within each set only")
            )
        for set_index, (_, members) in enumerate(sorted(by_data.items(), key=lambda kv: -len(kv[1]))):
            table = compare_models({r["model"]: r["loo"] for r in members}, method=method).reset_index()
            table.insert(0, "epoch", epoch)
            table["data_set"] = set_index
            frames.append(table)
    columns = ["epoch", "model", *COMPARE_COLUMNS, "data_set"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return table[columns], problems


def _epoch_order(fits: pd.DataFrame) -> list[str]:
    """Epochs grouped by source (a campaign may observe several), then by date and band."""
    epochs = fits[["epoch", "source", "date", "band"]].drop_duplicates("epoch")
    return epochs.sort_values(["source", "date", "band", "epoch"])["epoch"].tolist()


def _gathered_dataset(summary: pd.DataFrame, fits: pd.DataFrame, comparison: pd.DataFrame, products: list[str]) -> xr.Dataset:
    epochs = _epoch_order(fits)
    models = sorted(fits["model"].unique().tolist())
    parameters = list(dict.fromkeys(summary["parameter"].tolist()))
    param_stats = summary.set_index(["epoch", "model", "parameter"])[STAT_COLUMNS]
    ds = xr.Dataset.from_dataframe(param_stats).reindex(epoch=epochs, model=models, parameter=parameters)
    per_fit = fits.set_index(["epoch", "model"])
    per_fit_vars = per_fit[["divergences", "n_samples", "n_modes"]].astype(float)
    per_fit_vars["converged"] = per_fit["converged"].astype(float)  # NaN where the (epoch, model) was not fitted
    if len(comparison):
        loo_vars = comparison.set_index(["epoch", "model"])[["elpd_loo", "se", "p_loo", "rank", "weight", "max_pareto_k"]]
        loo_vars = loo_vars.rename(columns={"se": "elpd_se", "rank": "loo_rank", "weight": "loo_weight"})
        per_fit_vars = per_fit_vars.join(loo_vars, how="left")
    ds = ds.merge(xr.Dataset.from_dataframe(per_fit_vars).reindex(epoch=epochs, model=models))
    chi2 = np.full((len(epochs), len(models), len(products)), np.nan)
    n_data = np.zeros((len(epochs), len(models), len(products)), dtype=np.int64)
    for _, row in fits.iterrows():
        e, m = epochs.index(row["epoch"]), models.index(row["model"])
        chi2[e, m] = [row[f"reduced_chi2_{k}"] for k in products]
        n_data[e, m] = [row[f"n_{k}"] for k in products]
    ds["reduced_chi2"] = (("epoch", "model", "product"), chi2)
    ds["n_data"] = (("epoch", "model", "product"), n_data)
    ds = ds.assign_coords(product=np.array(products, dtype=object))
    epoch_info = fits.drop_duplicates("epoch").set_index("epoch").reindex(epochs)
    for key in ("date", "band", "source"):
        ds = ds.assign_coords({key: ("epoch", epoch_info[key].astype(str).to_numpy(dtype=object))})
    for name in ("epoch", "model", "parameter"):
        ds = ds.assign_coords({name: np.asarray(ds[name].values, dtype=object)})
    ds.attrs.update({"vlbicore_schema": SCHEMA_VERSION, "description": "vlbicore gathered fit summaries", "hdi_prob": HDI_PROB,
                     "loo_weight_method": str(comparison["weight_method"].iloc[0]) if len(comparison) else ""})
    return ds


def _write_dataset(ds: xr.Dataset, path: Path) -> None:
    def write(temp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(temp, mode="w-", consolidated=True, zarr_format=2)

    write_directory_atomically(path, write, overwrite=True, what="gathered store")


# --------------------------------------------------------------------------------------------------
# Entry point


def gather_stores(
    paths: Iterable, out_dir, *, scheduler: str | None = None, n_workers: int | None = None, processes: bool = False,
    loo_weights: str = "stacking",
) -> GatherResult:
    """Summarise every fit store with Dask and write the campaign tables and ``gathered.zarr`` to ``out_dir``.

    ``scheduler``: address of a running Dask scheduler (workers must see the store paths); default a
    LocalCluster with ``n_workers`` (default min(CPUs, 4)) threads, or that many worker processes when
    ``processes`` (slower to start; the calling script then needs an ``if __name__ == "__main__":`` guard).
    ``loo_weights``: the model weights in ``loo.csv``, ``"stacking"`` or ``"pseudo-BMA+"``.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise VlbiError("gather: no stores given; pass one or more fit store paths")
    loo_weights = weight_method(loo_weights)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with dask_client(scheduler, n_workers, processes) as client:
        records = _run_tasks(paths, client)
    gathered = _drop_duplicates(records)
    products = sorted({k for r in gathered for k in (*r["reduced_chi2"], *r["n_data"])})
    fits = _fits_table(gathered, products)
    summary = _summary_table(gathered, fits)
    snapshots = _snapshot_table(gathered)
    comparison, loo_problems = _comparison_table(gathered, loo_weights)
    problems = pd.concat(
        [_problems_table(records), pd.DataFrame(loo_problems, columns=PROBLEM_COLUMNS)], ignore_index=True
    )
    files = {
        "summary_csv": out_dir / "summary.csv",
        "summary_parquet": out_dir / "summary.parquet",
        "fits_csv": out_dir / "fits.csv",
        "fits_parquet": out_dir / "fits.parquet",
        "loo_csv": out_dir / "loo.csv",
        "problems_csv": out_dir / "problems.csv",
        "snapshots_csv": out_dir / "snapshots.csv",
        "snapshots_parquet": out_dir / "snapshots.parquet",
        "gathered_zarr": out_dir / "gathered.zarr",
    }
    snapshots.to_csv(files["snapshots_csv"], index=False)
    snapshots.astype({"converged": bool, "adequate": bool}).to_parquet(files["snapshots_parquet"], index=False)
    summary.to_csv(files["summary_csv"], index=False)
    summary.to_parquet(files["summary_parquet"], index=False)
    fits.to_csv(files["fits_csv"], index=False)
    fits.to_parquet(files["fits_parquet"], index=False)
    comparison.to_csv(files["loo_csv"], index=False)
    problems.to_csv(files["problems_csv"], index=False)
    dataset = _gathered_dataset(summary, fits, comparison, products) if len(fits) else xr.Dataset()
    if len(fits):
        _write_dataset(dataset, files["gathered_zarr"])
    else:
        files.pop("gathered_zarr")
    return GatherResult(out_dir, summary, fits, comparison, problems, dataset, files)


def open_posteriors(paths: Iterable, *, group: str = "posterior") -> xr.Dataset:
    """One lazy (dask-backed) Dataset of a group over all stores, dims (epoch, model, chain, draw, ...).

    For interactive work across a campaign, e.g. ``open_posteriors(paths)["d"].median(("chain", "draw"))
    .compute()``; nothing is read until computed. Variables missing from a model and draws beyond a shorter
    run are NaN. Epoch coordinates ``date``, ``band``, ``source`` come from the store attributes. Every
    store must open (VlbiError naming the first that does not); use :func:`gather_stores` to survey a
    campaign with problems.
    """
    datasets, epoch_info = [], {}
    for path in paths:
        tree = open_fit_store(path, chunks={})
        if group not in tree.children:
            raise VlbiError(f"{path}: no {group} group; choose one of {', '.join(sorted(tree.children))}")
        ident = _identity(tree, Path(path))
        epoch_info[ident["epoch"]] = (ident["date"], ident["band"], ident["source"])
        datasets.append(tree[group].to_dataset().expand_dims(epoch=[ident["epoch"]], model=[ident["model"]]))
    if not datasets:
        raise VlbiError("open_posteriors: no stores given; pass one or more fit store paths")
    combined = xr.combine_by_coords(datasets, join="outer", combine_attrs="drop")
    epochs = [str(e) for e in combined["epoch"].values]
    for i, key in enumerate(("date", "band", "source")):
        combined = combined.assign_coords({key: ("epoch", np.array([epoch_info[e][i] for e in epochs], dtype=object))})
    return combined


def load_gathered(gather_dir) -> dict[str, pd.DataFrame]:
    """The tables a gather wrote (summary, fits, loo, problems), for plots and the report."""
    gather_dir = Path(gather_dir)
    needed = {"summary": "summary.parquet", "fits": "fits.parquet", "loo": "loo.csv", "problems": "problems.csv"}
    missing = [name for name in needed.values() if not (gather_dir / name).exists()]
    if missing:
        raise VlbiError(f"{gather_dir}: not a gather directory (missing {', '.join(missing)}); run `vlbicore gather` first")
    tables = {
        "summary": pd.read_parquet(gather_dir / needed["summary"]),
        "fits": pd.read_parquet(gather_dir / needed["fits"]),
        "loo": _read_csv_text_ids(gather_dir / needed["loo"], ("epoch", "model")),
        "problems": _read_csv_text_ids(gather_dir / needed["problems"], PROBLEM_COLUMNS),
    }
    snapshots = gather_dir / "snapshots.parquet"  # snapshot fits (absent in gathers of older versions)
    tables["snapshots"] = pd.read_parquet(snapshots) if snapshots.exists() else pd.DataFrame(columns=SNAPSHOT_COLUMNS)
    return tables


def _read_csv_text_ids(path: Path, text_columns) -> pd.DataFrame:
    """A gather CSV with its id/name columns kept as written: an epoch "nan", "NA" or "null" or a model
    "1e5" must not come back as NaN or a number (pandas' default parsing); the other columns are numbers."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in frame.columns:
        if column not in text_columns:
            frame[column] = pd.to_numeric(frame[column].mask(frame[column] == ""), errors="coerce")
    return frame
