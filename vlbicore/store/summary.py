"""The per-fit summary: a parameter table (pandas) and the text ``vlbicore summary`` prints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
