"""The per-fit summary: a parameter table (pandas) and the text ``vlbicore summary`` prints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import math

from vlbicore.statistics import POOLING_METHOD, pooled_estimate
from vlbicore.store.read import (fit_level_summary, is_snapshot_store, open_fit_store, parameter_statistics,
                                 skipped_snapshots, snapshot_records, snapshot_views)


SUMMARY_COLUMNS = ["mean", "sd", "median", "hdi_low", "hdi_high", "rhat", "ess_bulk", "ess_tail"]


def parameter_summary(tree: xr.DataTree) -> pd.DataFrame:
    """The per-parameter table of :func:`summary_table` (columns ``SUMMARY_COLUMNS``; the HDI holds
    ``vlbicore.statistics.HDI_PROB`` = 94 % of the draws, as in the gather tables)."""
    rows = parameter_statistics(tree)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=SUMMARY_COLUMNS)
    frame.index.name = "parameter"
    return frame


SNAPSHOT_COLUMNS = ["snapshot", "time_start", "time_end", *SUMMARY_COLUMNS, "converged", "adequate"]


def snapshot_summary(tree: xr.DataTree) -> pd.DataFrame:
    """The table of a snapshot store: one row per snapshot × parameter (columns ``SNAPSHOT_COLUMNS``,
    index ``parameter``), then one ``pooled`` row per parameter (``snapshot == "pooled"``; mean = the
    pooled value, sd = its error, ``chi2``/``dof``/``p_value`` the consistency of the snapshots; method in
    ``vlbicore.statistics.POOLING_METHOD``)."""
    rows = []
    records = snapshot_records(tree)
    periods = {}
    for record, view in zip(records, snapshot_views(tree)):
        for name, stats in parameter_statistics(view).items():
            periods[name] = view["posterior"][name].attrs.get("period")
            rows.append({"parameter": name, "snapshot": record["index"], "time_start": record["time_start"],
                         "time_end": record["time_end"], **stats, "converged": record["converged"],
                         "adequate": record["adequate"]})
    frame = pd.DataFrame(rows)
    pooled = []
    for name, group in frame.groupby("parameter", sort=False):
        p = pooled_estimate(group["median"], group["sd"], periods.get(name))
        pooled.append({"parameter": name, "snapshot": "pooled", "time_start": group["time_start"].min(),
                       "time_end": group["time_end"].max(), "mean": p["mean"], "sd": p["sd"], "median": p["mean"],
                       "hdi_low": math.nan, "hdi_high": math.nan, "rhat": math.nan, "ess_bulk": math.nan,
                       "ess_tail": math.nan, "converged": bool(group["converged"].all()),
                       "adequate": bool(group["adequate"].all()), "chi2": p["chi2"], "dof": p["dof"],
                       "p_value": p["p_value"], "n_snapshots": p["n"]})
    frame = pd.concat([frame, pd.DataFrame(pooled)], ignore_index=True).set_index("parameter")
    frame["snapshot"] = frame["snapshot"].astype(object)
    return frame


def summary_table(path) -> pd.DataFrame:
    """Per-parameter table of one store; fit-level facts (divergences, converged, reduced χ²) in ``df.attrs``.
    A snapshot store gives :func:`snapshot_summary` (per-snapshot and pooled rows); its per-snapshot facts
    are in ``df.attrs["snapshots"]``, the windows left out in ``df.attrs["skipped"]``."""
    tree = open_fit_store(path)
    if is_snapshot_store(tree):
        frame = snapshot_summary(tree)
        frame.attrs.update({k: tree.attrs.get(k) for k in ("epoch", "model_name", "data_path", "source", "date", "band",
                                                           "snapshot_spec", "converged", "adequate", "multimodal")})
        frame.attrs["snapshots"] = [{**r, **{k: v for k, v in fit_level_summary(view).items() if k in (
            "divergences", "n_samples", "reasons", "goodness_of_fit")}} for r, view in
            zip(snapshot_records(tree), snapshot_views(tree))]
        frame.attrs["skipped"] = skipped_snapshots(tree)
        return frame
    frame = parameter_summary(tree)
    frame.attrs.update(fit_level_summary(tree))
    frame.attrs.update({k: tree.attrs.get(k) for k in ("epoch", "model_name", "data_path", "source", "date", "band")})
    frame.attrs["gains"] = json.loads(tree.attrs.get("gains") or "null")
    frame.attrs["gain_lines"] = gain_summary(tree)
    return frame


def gain_summary(tree: xr.DataTree) -> list[str]:
    """One line per station of a store's sampled gains: the median gain amplitude |G| = e^g over its
    segments (posterior medians per segment) and their range, and the worst R-hat; [] without the group."""
    if "gains" not in tree.children:
        return []
    ds = tree["gains"].ds
    per_segment = np.exp(ds["log_amplitude"].median(("chain", "draw")).values)  # station × segment
    lines = []
    for station, row in zip(ds["station"].values, per_segment):
        row = row[np.isfinite(row)]
        if len(row):
            lines.append(f"  {station}: |G| median {np.median(row):.3f}, range [{row.min():.3f}, {row.max():.3f}] "
                         f"over {len(row)} segments")
    return lines


def format_summary(path, frame: pd.DataFrame | None = None) -> str:
    """The text ``vlbicore summary`` prints: provenance; the three verdicts (did the sampler converge, does
    the model describe the data, is the posterior multimodal); χ²; modes with their masses; parameters
    (``frame``: the store's :func:`summary_table`, when the caller has it already)."""
    frame = summary_table(path) if frame is None else frame
    a = frame.attrs
    if "snapshots" in a:
        return _format_snapshot_summary(path, frame)
    adequate = a.get("adequate")
    adequacy = a.get("adequacy") or {}
    lines = [
        f"store:     {Path(path)}",
        f"epoch:     {a.get('epoch')}  ({a.get('source')} {a.get('date')} band {a.get('band')})",
        f"model:     {a.get('model_name')}",
        f"data:      {a.get('data_path')}",
        f"converged: {'YES' if a['converged'] else 'NO'}"
        + ("" if a["converged"] or not a["reasons"] else " - " + "; ".join(a["reasons"])),
        f"adequate:  {'n/a' if adequate is None else 'YES' if adequate else 'NO'}"
        + ("" if adequate or not adequacy.get("reasons") else " - " + "; ".join(adequacy["reasons"])),
        f"multimodal: {'YES' if a.get('multimodal') else 'no'}",
        f"divergences: {a['divergences']} of {a['n_samples']} draws",
    ]
    lines.extend(f"warning:   {w}" for w in a.get("warnings", []))
    gains = a.get("gains")
    if gains:
        overrides = ", ".join(f"{k} {v:g}" for k, v in sorted(gains.get("stations", {}).items()))
        lines.append(f"gains:     {gains['method']}, one per station and {gains['segment']}, log-amplitude prior sd "
                     f"{gains['sigma']:g}" + (f" ({overrides})" if overrides else ""))
        lines.extend(a.get("gain_lines") or [])
    lines.extend(f"symmetry:  {s}" for s in a.get("symmetries", []))
    for kind, g in (a.get("goodness_of_fit") or {}).items():
        lines.append(f"chi2 {kind:6s} n={a['n_data'].get(kind, 0)}: chi2/N {g.get('reduced_chi2', float('nan')):.3f}, "
                     f"chi2/(N-p) {g.get('reduced_chi2_dof', float('nan')):.3f} (thermal sigma); "
                     f"chi2/N {g.get('reduced_chi2_total', float('nan')):.3f} (thermal + fitted error terms); "
                     "at the best draw")
    if a["reduced_chi2"] and not a.get("goodness_of_fit"):
        chi2 = ", ".join(f"{k} {v:.3f} (n={a['n_data'].get(k, 0)})" for k, v in a["reduced_chi2"].items())
        lines.append(f"chi2/N: {chi2}")
    lines.append(f"modes found: {len(a['modes'])}")
    for i, mode in enumerate(a["modes"]):
        values = ", ".join(f"{k}={v:.4g}" for k, v in mode["values"].items())
        mass = mode.get("mass", float("nan"))
        flags = (" sampled" if mode.get("sampled") else "") + ("" if mode.get("laplace_ok", True) else " (mass unreliable)")
        lines.append(f"  mode {i}: mass={mass:.3g} lp={mode['lp']:.2f} chains={mode['chains']}{flags} {values}")
    with pd.option_context("display.width", 120, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        lines.extend(["", frame.to_string()])
    return "\n".join(lines)


def _format_snapshot_summary(path, frame: pd.DataFrame) -> str:
    """``vlbicore summary`` of a snapshot store: verdicts per snapshot, the windows skipped, one row per
    snapshot and parameter, and the pooled row with its method."""
    a = frame.attrs
    lines = [
        f"store:     {Path(path)}",
        f"epoch:     {a.get('epoch')}  ({a.get('source')} {a.get('date')} band {a.get('band')})",
        f"model:     {a.get('model_name')}",
        f"data:      {a.get('data_path')}",
        f"snapshots: {len(a['snapshots'])} fitted ({a.get('snapshot_spec')}), {len(a['skipped'])} skipped",
        f"converged: {'YES' if a.get('converged') else 'NO'} (all snapshots)",
        f"adequate:  {'YES' if a.get('adequate') else 'NO'} (all snapshots)",
        f"multimodal: {'YES' if a.get('multimodal') else 'no'} (any snapshot)",
        "",
        "snapshot  time_start  time_end  (h UTC)  data                          converged adequate divergences",
    ]
    for r in a["snapshots"]:
        counts = " ".join(f"{k}={n}" for k, n in r["n_data"].items())
        lines.append(f"{r['index']:8d}  {r['time_start']:10.3f}  {r['time_end']:8.3f}           {counts:29s} "
                     f"{'YES' if r['converged'] else 'NO':9s} {'YES' if r['adequate'] else 'NO':8s} "
                     f"{r.get('divergences', 0)}/{r.get('n_samples', 0)}"
                     + ("" if r["converged"] else "  - " + "; ".join(r["convergence"].get("reasons", []))))
    for s in a["skipped"]:
        lines.append(f"skipped:  {s['time_start']:.3f}-{s['time_end']:.3f} h: {s['reason']}")
    lines.extend(["", f"pooled:    {POOLING_METHOD}"])
    columns = ["snapshot", "time_start", "time_end", "median", "sd", "hdi_low", "hdi_high", "rhat", "ess_bulk",
               "converged", "adequate", "chi2", "dof", "p_value"]
    shown = frame[[c for c in columns if c in frame.columns]]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_rows", 10000,
                           "display.float_format", "{:.4g}".format):
        for name, group in shown.groupby(level=0, sort=False):
            lines.extend(["", f"{name}:", group.reset_index(drop=True).to_string(index=False)])
    return "\n".join(lines)
