"""The per-fit summary: a parameter table (pandas) and the text ``vlbicore summary`` prints."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

from vlbicore.store.read import fit_level_summary, open_fit_store, parameter_statistics


SUMMARY_COLUMNS = ["mean", "sd", "median", "hdi_low", "hdi_high", "rhat", "ess_bulk", "ess_tail"]


def parameter_summary(tree: xr.DataTree) -> pd.DataFrame:
    """The per-parameter table of :func:`summary_table` (columns ``SUMMARY_COLUMNS``; the HDI holds
    ``vlbicore.statistics.HDI_PROB`` = 94 % of the draws, as in the gather tables)."""
    rows = parameter_statistics(tree)
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
