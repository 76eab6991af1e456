"""One fit end to end: observation -> data products -> model -> inference -> Zarr store.

This is what ``vlbicore fit`` and the workflow's fit rule run; the numerical work lives in
:mod:`vlbicore.inference`, the layout of the store in :mod:`vlbicore.store`, the configuration in
:mod:`vlbicore.config`.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from typing import Mapping

import numpy as np

from vlbicore.config import FitConfig
from vlbicore.data import load_observation
from vlbicore.data.quality import uncalibrated_phases
from vlbicore.data.windows import describe_spec, split_windows, window_observation
from vlbicore.errors import VlbiError
from vlbicore.inference import fit, fit_many
from vlbicore.likelihood import with_systematic
from vlbicore.products import build_products
from vlbicore.store import build_fit_tree, build_snapshot_tree, write_fit_store, write_snapshot_store

# Epoch facts a campaign may state for a file; they override what the file's header says in the store.
EPOCH_FIELDS = ("source", "date", "band")


def observed_data(products) -> dict:
    """What the store keeps of each product: values, σ, time, scan, labels and uv distance."""
    scan = products.obs.scan
    return {
        kind: {"values": p.values, "sigma": p.sigma, "time": p.time, "label": p.labels, "uvdist": p.uvdist,
               "scan": scan[np.asarray(p.rows).reshape(p.n, -1)[:, 0]] if p.n else np.zeros(0, np.int64)}
        for kind, p in products.items()
    }


def run_fit(data_path, config: FitConfig, out, *, epoch: str | None = None, overwrite: bool = False,
            epoch_info: Mapping[str, str] | None = None, campaign: str | None = None) -> pathlib.Path:
    """Fit ``config`` to the data at ``data_path`` and write the store at ``out``.

    ``epoch`` is the id recorded in the store (default: the file's stem); ``epoch_info`` may give the
    ``source``, ``date`` and ``band`` a campaign states for the file; ``campaign`` is its name."""
    t0 = time.perf_counter()
    obs, products, data_warnings = prepare_products(data_path, config)
    model, noise = config.sky_model, config.noise_model
    load_time = time.perf_counter() - t0

    result = fit(products, model, config.sampler, noise, gains=config.gain_model)
    result.timings["load"] = load_time
    return write_result(result, out, config, obs, products, epoch=epoch or pathlib.Path(str(data_path)).stem,
                        overwrite=overwrite, epoch_info=epoch_info, campaign=campaign, data_warnings=data_warnings)


def prepare_products(data_path, config: FitConfig):
    """(observation, products, data warnings) of one data file for ``config``; warnings go to stderr too."""
    obs = with_systematic(load_observation(data_path), config.systematic)
    products = build_products(obs, config.products, covariance=config.covariance,
                              amp_likelihood=config.amp_likelihood, snr_cut=config.snr_cuts)
    if sum(p.n for p in products.values()) == 0:
        raise VlbiError(f"{data_path}: no usable {', '.join(config.products)} data; check flags or choose other products")
    data_warnings = data_quality_warnings(obs, config)
    return obs, products, data_warnings


def data_quality_warnings(obs, config: FitConfig) -> list[str]:
    """One-line warnings about the data for this fit (uncalibrated phases when ``vis`` is fitted without
    gain phases per scan or per integration, which would model them), also printed to stderr."""
    warnings = []
    if "vis" in config.products and not config.gain_phases_per_time:
        warning = uncalibrated_phases(obs)
        if warning:
            print(f"vlbicore: warning: {warning}", file=sys.stderr)
            warnings.append(warning)
    return warnings


def write_result(result, out, config: FitConfig, obs, products, *, epoch: str, overwrite: bool = False,
                 epoch_info: Mapping[str, str] | None = None, campaign: str | None = None,
                 data_warnings: list[str] | None = None) -> pathlib.Path:
    """Write one posterior's :class:`~vlbicore.inference.settings.FitResult` as a fit store at ``out``."""
    fields = store_fields(result, config, obs, products, epoch=epoch, epoch_info=epoch_info, campaign=campaign,
                          data_warnings=data_warnings)
    return pathlib.Path(write_fit_store(out, **fields, overwrite=overwrite))


def store_fields(result, config: FitConfig, obs, products, *, epoch: str,
                 epoch_info: Mapping[str, str] | None = None, campaign: str | None = None,
                 data_warnings: list[str] | None = None) -> dict:
    """The keyword arguments of :func:`vlbicore.store.write_fit_store` (and ``build_fit_tree``) for one
    posterior."""
    model, noise = config.sky_model, config.noise_model

    facts = {"source": obs.source, "date": obs.date, "band": obs.band}
    facts.update({k: str(v) for k, v in (epoch_info or {}).items() if k in EPOCH_FIELDS and v})
    attrs = {
        "data_path": str(obs.path),
        "data_sha256": obs.sha256,
        **facts,
        "frequency_hz": float(obs.frequency),
        "epoch": epoch,
        "campaign": campaign or "",
        "model_name": model.name,
        "model_spec": json.dumps(config.model_spec),
        "fit_config": json.dumps(config.to_dict()),
        "priors": json.dumps({p.name: p.prior_json() for p in (*model.params, *noise.params)}),
        "fixed": json.dumps({**model.fixed, **noise.fixed}),
        "noise": json.dumps({"terms": list(noise.terms), "parameters": list(noise.names)}),
        "gains": json.dumps(config.gain_model.to_dict() if config.gain_model is not None else None),
        "n_parameters": int(result.n_parameters),
        "multimodal": bool(result.multimodal),
        "adequate": bool(result.adequacy.get("adequate", False)),
        "adequacy": json.dumps(result.adequacy),
        "symmetries": json.dumps(result.symmetries),
        "data_warnings": json.dumps(list(data_warnings or [])),
        "sampler": json.dumps(dataclasses.asdict(config.sampler)),
        "products": json.dumps(list(config.products)),
        "systematic": float(config.systematic),
        "covariance": bool(config.covariance),
        "snr_cut": json.dumps(config.snr_cuts),
        "amp_likelihood": config.amp_likelihood,
        "seed": config.sampler.seed,
        "chain_method": result.chain_method,
        "devices": json.dumps(result.devices),
        "converged": bool(result.convergence["converged"]),
        "convergence": json.dumps(result.convergence),
        "flag_counts": json.dumps(obs.flag_counts),
        "timings": json.dumps(result.timings),
    }
    diagnostics = {
        **result.diagnostics,
        "reduced_chi2": {k: v[0] for k, v in result.reduced_chi2.items()},
        "n_data": {k: v[1] for k, v in result.reduced_chi2.items()},
        "goodness_of_fit": result.goodness_of_fit,
        "modes": result.modes,
    }
    return dict(
        posterior=result.posterior,
        sample_stats=result.sample_stats,
        log_likelihood=result.log_likelihood,
        observed_data=observed_data(products),
        posterior_predictive=result.posterior_predictive,
        diagnostics=diagnostics,
        attrs=attrs,
        uv=(obs.u, obs.v),
        variable_attrs={**model.variable_attrs(), **noise.variable_attrs()},
        gains=result.gains or None,
    )


# --------------------------------------------------------------------------------------------------
# Snapshot fits: one posterior per time window of one observation, all in one batch, one store

MIN_CLOSURE_PHASES = 2  # a window with fewer closure phases says nothing about the structure


def snapshot_products(obs, config: FitConfig, spec) -> tuple[list, list, list[dict]]:
    """(windows kept, their products, windows skipped with the reason) of ``obs`` for the snapshot
    ``spec``. A window is skipped with fewer than ``MIN_CLOSURE_PHASES`` closure phases (when fitted)
    or fewer data than free parameters + 1."""
    n_free = len(config.sky_model.params) + len(config.noise_model.params)
    kept, products, skipped = [], [], []
    for window in split_windows(obs, spec):
        part = build_products(window_observation(obs, window), config.products, covariance=config.covariance,
                              amp_likelihood=config.amp_likelihood, snr_cut=config.snr_cuts)
        counts = {kind: int(p.n) for kind, p in part.items()}
        total = sum(counts.values())
        reason = None
        if "cphase" in counts and counts["cphase"] < MIN_CLOSURE_PHASES:
            reason = f"{counts['cphase']} closure phases (< {MIN_CLOSURE_PHASES})"
        elif total < n_free + 1:
            reason = f"{total} data for {n_free} free parameters (need at least {n_free + 1})"
        if reason:
            skipped.append({"time_start": window.time_start, "time_end": window.time_end, "n_data": counts,
                            "reason": reason})
        else:
            kept.append(window)
            products.append(part)
    return kept, products, skipped


def run_snapshot_fit(data_path, config: FitConfig, out, *, spec=None, epoch: str | None = None,
                     overwrite: bool = False, epoch_info: Mapping[str, str] | None = None,
                     campaign: str | None = None) -> pathlib.Path:
    """Split the observation at ``data_path`` into the time windows of ``spec`` (default
    ``config.snapshots``; see :mod:`vlbicore.data.windows`), fit every window with enough data in one
    :func:`~vlbicore.inference.fit_many` batch (each seeded as its lone fit would be) and write one
    snapshot store at ``out`` (see :func:`vlbicore.store.build_snapshot_tree`)."""
    spec = config.snapshots if spec is None else spec
    if spec is None:
        raise VlbiError("snapshots: no windows given; use --snapshots scan|10min or `snapshots:` in the fit config")
    t0 = time.perf_counter()
    obs = with_systematic(load_observation(data_path), config.systematic)
    windows, product_sets, skipped = snapshot_products(obs, config, spec)
    if not windows:
        raise VlbiError(f"{data_path}: no {describe_spec(spec)} window has enough data "
                        f"({len(skipped)} skipped: {skipped[0]['reason'] if skipped else 'no data'}); "
                        "use longer windows or other products")
    data_warnings = data_quality_warnings(obs, config)
    load_time = time.perf_counter() - t0
    results = fit_many(product_sets, config.sky_model, config.sampler, config.noise_model)
    epoch = epoch or pathlib.Path(str(data_path)).stem
    trees, records = [], []
    for window, products, result in zip(windows, product_sets, results):
        result.timings["load"] = load_time
        fields = store_fields(result, config, window_observation(obs, window), products, epoch=epoch,
                              epoch_info=epoch_info, campaign=campaign, data_warnings=data_warnings)
        trees.append(build_fit_tree(**fields))
        records.append({
            "index": len(records), "time_start": window.time_start, "time_end": window.time_end,
            "n_data": {kind: int(p.n) for kind, p in products.items()},
            "converged": bool(result.convergence["converged"]), "convergence": result.convergence,
            "adequate": bool(result.adequacy.get("adequate", False)), "adequacy": result.adequacy,
            "multimodal": bool(result.multimodal),
        })
    bad = [f"snapshot {r['index']}: " + "; ".join(r["convergence"].get("reasons", [])) for r in records
           if not r["converged"]]
    inadequate = [f"snapshot {r['index']}: " + "; ".join(r["adequacy"].get("reasons", [])) for r in records
                  if not r["adequate"]]
    attrs = {
        "data_path": str(obs.path), "flag_counts": obs.flag_counts,
        "snapshot_spec": describe_spec(spec), "n_snapshots": len(records), "skipped_snapshots": skipped,
        "converged": not bad, "adequate": not inadequate, "multimodal": any(r["multimodal"] for r in records),
        "convergence": {"converged": not bad, "reasons": bad, "warnings": []},
        "adequacy": {"adequate": not inadequate, "reasons": inadequate},
    }
    tree = build_snapshot_tree(trees, time_start=[w.time_start for w in windows],
                               time_end=[w.time_end for w in windows], records=records, attrs=attrs)
    return pathlib.Path(write_snapshot_store(out, tree, overwrite=overwrite))


# --------------------------------------------------------------------------------------------------
# Batches of epochs: several data files, one model, one process and one compiled batch


def run_fit_batch(items, config: FitConfig, *, overwrite: bool = False, campaign: str | None = None) -> list[pathlib.Path]:
    """Fit ``config`` to several data files in one :func:`~vlbicore.inference.fit_many` batch and write one
    store per file; each posterior is seeded as its lone fit would be, so its store holds what
    :func:`run_fit` of that file alone would give (up to the compilation of other shapes). ``items``:
    mappings with ``data``, ``out`` and optionally ``epoch``, ``source``, ``date``, ``band``. With
    ``config.snapshots`` every file gets its own snapshot batch, one after the other, in this process."""
    items = [dict(item) for item in items]
    for i, item in enumerate(items):
        missing = [key for key in ("data", "out") if not item.get(key)]
        if missing:
            raise VlbiError(f"batch[{i}]: no {', '.join(missing)}; every entry needs data and out")
    epoch_of = [item.get("epoch") or pathlib.Path(str(item["data"])).stem for item in items]
    info_of = [{k: item[k] for k in EPOCH_FIELDS if item.get(k)} for item in items]
    if config.snapshots is not None:
        return [run_snapshot_fit(item["data"], config, item["out"], epoch=epoch, overwrite=overwrite,
                                 epoch_info=info, campaign=campaign)
                for item, epoch, info in zip(items, epoch_of, info_of)]
    t0 = time.perf_counter()
    prepared = [prepare_products(item["data"], config) for item in items]
    load_time = (time.perf_counter() - t0) / len(items)
    results = fit_many([products for _, products, _ in prepared], config.sky_model, config.sampler,
                       config.noise_model)
    paths = []
    for item, epoch, info, (obs, products, warnings), result in zip(items, epoch_of, info_of, prepared, results):
        result.timings["load"] = load_time
        paths.append(write_result(result, item["out"], config, obs, products, epoch=epoch, overwrite=overwrite,
                                  epoch_info=info, campaign=campaign, data_warnings=warnings))
    return paths
