"""Campaign report: ``index.html`` with a section per source, and one page per fit, from a gather directory.

The index holds, per source, the campaign plots (embedded as PNG data URIs, so the page works copied
alone), the fits table with the three verdicts (converged, adequate, multimodal; n/a where a store
predates a verdict) and the model comparison; then every reported problem grouped by kind, and the
parameter table. Each fit has its own page (``fits/<epoch>__<model>/index.html``): its verdicts with
their reasons, its parameter table, goodness of fit, modes, and its plots (trace, corner, data against
the model, normalised residuals, model image with the fitted ring, uv coverage), either drawn here or
linked from the workflow's per-fit plot directory. Angles are shown in degrees; every link and image
points at a file that exists.

Ids and names are text throughout (an epoch "nan" or a model "1e5" stays what it is). Reads gather
tables and, for the per-fit pages, the stores' own attributes; never hides a problem.
"""
from __future__ import annotations

import base64
import datetime
import html
import math
import os
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd

from vlbicore import __version__
from vlbicore.errors import VlbiError
from vlbicore.statistics import HDI_PROB
from vlbicore.store import is_snapshot_store, json_attr, read_fit_tree, snapshot_records
from vlbicore.survey import display
from vlbicore.survey.gather import load_gathered

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 110em; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; vertical-align: top; }
th { background: #eee; } td.text { text-align: left; }
tr.bad td { background: #f8d7da; } tr.warn td { background: #fff3cd; } tr.best td { font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.fitplots figure { display: inline-block; width: 48%; margin: 0.5%; vertical-align: top; }
.fitplots figcaption { font-size: 12px; color: #444; }
.verdict-yes { color: #1e7e34; font-weight: bold; } .verdict-no { color: #c82333; font-weight: bold; }
.verdict-na { color: #777; } nav a { margin-right: 1em; } .note { color: #555; font-size: 13px; }
"""

VERDICTS = {
    "converged": "the chains agree and explored the posterior (R-hat, effective sample size, divergences)",
    "adequate": "the model explains the data within their errors (goodness-of-fit checks)",
    "multimodal": "the posterior has more than one mode (the chains ended in separate modes)",
}

# What each problem kind of gather means (docs/gather.md, "Nothing is dropped silently"), most severe first.
PROBLEM_KINDS = {
    "unreadable": "the store is missing, not a Zarr store, or damaged; not gathered",
    "task_failed": "the worker reading the store crashed; not gathered",
    "schema": "the store was written by another vlbicore schema version; not gathered",
    "missing_group": "a required group is absent; gathered with NaN where it is missing",
    "duplicate": "a second store for an (epoch, model) already gathered; the first one is kept",
    "not_converged": "the fit did not converge: its numbers are not trustworthy",
    "not_adequate": "the model does not explain the data within their errors",
    "multimodal": "the posterior has several modes",
    "loo_failed": "PSIS-LOO could not be computed for this fit",
    "high_pareto_k": "some observations have Pareto k > 0.7: LOO is unreliable there",
    "not_comparable": "models of this epoch were fitted to different data; ranked within each set only",
}

PLOT_CAPTIONS = {
    "trace": "Trace: draws of every chain and their histograms (angles in degrees, unwrapped on the circle).",
    "corner": "Corner plot: one- and two-dimensional posterior marginals.",
    "residuals": "Data ± σ with the 94 % posterior-predictive band, against baseline length and time.",
    "normalised_residuals": "Normalised residuals (data − model)/σ against baseline length and time, and their "
                            "histogram against N(0, 1).",
    "image": "Model image of the highest-posterior draw with the fitted diameter(s) dashed.",
    "uv_coverage": "uv coverage of the observation.",
    "gains": "Sampled station gains against time: |G| and (visibility fits) gain phase per segment, "
             "median and 68 % interval.",
}
PLOT_ORDER = list(PLOT_CAPTIONS)


# --------------------------------------------------------------------------------------------------
# small HTML helpers


def _text(value) -> str:
    return html.escape(str(value))


def _embed(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img alt="{_text(png.stem)}" src="data:image/png;base64,{data}">'


def _href(path: str) -> str:
    """A relative link with every path part URL-quoted (ids may hold '%', '#', ...)."""
    return html.escape("/".join(urllib.parse.quote(part) for part in path.split("/")))


def _missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _cell(value, digits: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return f'<td class="text">{"yes" if value else "NO"}</td>'
    if _missing(value) or value is pd.NA:
        return '<td class="text verdict-na">n/a</td>'
    if isinstance(value, (float, np.floating)):
        return f"<td>{value:.{digits}g}</td>"
    if isinstance(value, (int, np.integer)):
        return f"<td>{value}</td>"
    return f'<td class="text">{_text(value)}</td>'


def _table(frame: pd.DataFrame, *, bad=None, warn=None, best=None, links: dict | None = None, digits: int = 4) -> str:
    """HTML table; rows where ``bad``/``warn``/``best`` is True get that class; ``links``: column ->
    hrefs (one per row) turning that column's cells into links."""
    head = "".join(f"<th>{_text(c)}</th>" for c in frame.columns)
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        classes = [name for name, flags in (("bad", bad), ("warn", warn), ("best", best))
                   if flags is not None and bool(flags.iloc[i])]
        cells = []
        for column, value in row.items():
            if links and column in links:
                cells.append(f'<td class="text"><a href="{_href(links[column][i])}">{_text(value)}</a></td>')
            else:
                cells.append(_cell(value, digits))
        class_attr = f' class="{" ".join(classes)}"' if classes else ""
        rows.append(f"<tr{class_attr}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _verdict(value, yes_is_good: bool = True) -> str:
    if _missing(value):
        return '<span class="verdict-na">n/a (not recorded by this store)</span>'
    good = bool(value) == yes_is_good
    return f'<span class="verdict-{"yes" if good else "no"}">{"yes" if bool(value) else "no"}</span>'


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_text(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def _anchor(text: str) -> str:
    return "source-" + (re.sub(r"[^A-Za-z0-9_-]", "-", text) or "unknown")


def _folder_name(epoch: str, model: str) -> str:
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.-]", "-", s) or "x"
    return f"{safe(epoch)}__{safe(model)}"


def _column(frame: pd.DataFrame, name: str, default=None) -> pd.Series:
    return frame[name] if name in frame else pd.Series([default] * len(frame), index=frame.index, dtype=object)


def _flag(frame: pd.DataFrame, name: str, value: bool) -> pd.Series:
    """True where column ``name`` is recorded and equals ``value`` (absent / None: False)."""
    return _column(frame, name).map(lambda v: (not _missing(v)) and bool(v) == value).astype(bool)


# --------------------------------------------------------------------------------------------------
# tables in displayed units


def display_parameters(summary: pd.DataFrame) -> pd.DataFrame:
    """The parameter table as shown: angles in degrees, a unit column, no internal columns."""
    frame = summary.copy()
    units = _column(frame, "units", "").fillna("").astype(str)
    for column in ("mean", "median", "sd", "hdi_low", "hdi_high"):
        if column in frame:
            frame[column] = [float(display.to_display(v, u)) for v, u in zip(frame[column], units)]
    frame["unit"] = [display.display_unit(u) or "?" for u in units]
    return frame.rename(columns={"hdi_low": f"hdi{HDI_PROB:.0%}_low", "hdi_high": f"hdi{HDI_PROB:.0%}_high"})


def _fit_view(fits: pd.DataFrame) -> pd.DataFrame:
    columns = ["epoch", "model", "source", "date", "band", "converged", "adequate", "multimodal", "divergences",
               "n_modes", *[c for c in fits.columns if c.startswith("reduced_chi2_")], "reasons", "adequacy_reasons"]
    view = pd.DataFrame({c: _column(fits, c) for c in columns})
    return view.rename(columns={"reasons": "convergence reasons", "adequacy_reasons": "adequacy reasons"})


# --------------------------------------------------------------------------------------------------
# per-fit pages


def _store_details(path: str) -> dict:
    """What a fit page shows beyond the tables, from the store's attributes and diagnostics (empty when the
    store cannot be read: the page says so)."""
    try:
        tree = read_fit_tree(path)
    except VlbiError as exc:
        return {"error": str(exc)}
    try:
        details = {"convergence": json_attr(tree, "convergence", {}) or {}, "adequacy": json_attr(tree, "adequacy", {}) or {},
                   "attrs": {k: tree.attrs.get(k) for k in ("data_path", "frequency_hz", "created", "vlbicore_version")}}
        diag = tree["diagnostics"].dataset if "diagnostics" in tree.children else None
        if is_snapshot_store(tree):  # one posterior per time window: verdicts and modes are per snapshot
            details["snapshots"] = snapshot_records(tree)
            details["skipped_snapshots"] = json_attr(tree, "skipped_snapshots", []) or []
            diag = None
        if diag is not None and "mode_lp" in diag:
            modes = {"lp": np.asarray(diag["mode_lp"].values, dtype=float).tolist()}
            for name in ("mode_chains", "mode_mass"):
                if name in diag:
                    modes[name] = np.asarray(diag[name].values, dtype=float).tolist()
            details["modes"] = modes
        return details
    finally:
        tree.close()


def _key_values(mapping: dict) -> str:
    items = [(k, v) for k, v in mapping.items() if k != "reasons" and not isinstance(v, (dict, list))]
    nested = [(k, v) for k, v in mapping.items() if k != "reasons" and isinstance(v, dict)]
    text = ", ".join(f"{_text(k)} = {_text(f'{v:.4g}' if isinstance(v, float) else v)}" for k, v in items)
    for key, values in nested:
        text += ("; " if text else "") + f"{_text(key)}: " + ", ".join(
            f"{_text(k)} = {_text(f'{v:.4g}' if isinstance(v, float) else v)}" for k, v in values.items())
    return text


def _reason_list(reasons) -> str:
    reasons = [r for r in (reasons or []) if str(r).strip()]
    return "<ul>" + "".join(f"<li>{_text(r)}</li>" for r in reasons) + "</ul>" if reasons else ""


def _verdict_section(fit: pd.Series, details: dict) -> str:
    convergence = details.get("convergence", {})
    adequacy = details.get("adequacy", {})
    rows = [
        ("converged", _verdict(fit.get("converged")), _key_values(convergence),
         _reason_list((convergence.get("reasons") or str(fit.get("reasons") or "").split("; "))
                      + [f"warning: {w}" for w in convergence.get("warnings") or []])),
        ("adequate", _verdict(fit.get("adequate")), _key_values(adequacy),
         _reason_list(adequacy.get("reasons") or str(fit.get("adequacy_reasons") or "").split("; "))),
        ("multimodal", _verdict(fit.get("multimodal"), yes_is_good=False), _modes_text(fit, details), ""),
    ]
    body = "".join(f"<tr><th>{name}</th><td class='text'>{verdict}</td><td class='text'>{_text(VERDICTS[name])}"
                   f"{('<br>' + facts) if facts else ''}{reasons}</td></tr>" for name, verdict, facts, reasons in rows)
    return f"<h2>Verdicts</h2><table>{body}</table>"


def _modes_text(fit: pd.Series, details: dict) -> str:
    if "snapshots" in details:
        multimodal = [str(r["index"]) for r in details["snapshots"] if r.get("multimodal")]
        return (f"{len(details['snapshots'])} snapshots, {len(details.get('skipped_snapshots', []))} windows skipped "
                f"(too few data); multimodal snapshots: {', '.join(multimodal) or 'none'}")
    modes = details.get("modes")
    if not modes:
        n_modes = fit.get("n_modes")
        return "" if _missing(n_modes) else f"{int(n_modes)} mode(s) found"
    parts = [f"{len(modes['lp'])} mode(s) found; log posterior " + ", ".join(f"{v:.1f}" for v in modes["lp"])]
    if "mode_chains" in modes:
        parts.append("chains " + ", ".join(f"{v:.0f}" for v in modes["mode_chains"]))
    if "mode_mass" in modes:
        parts.append("posterior mass " + ", ".join(f"{v:.2f}" for v in modes["mode_mass"]))
    return "; ".join(parts)


def _plot_figures(plots: dict[str, str]) -> str:
    stems = sorted(plots, key=lambda s: (PLOT_ORDER.index(s) if s in PLOT_ORDER else len(PLOT_ORDER), s))
    figures = [f'<figure><a href="{_href(plots[s])}"><img alt="{_text(s)}" src="{_href(plots[s])}"></a>'
               f"<figcaption>{_text(PLOT_CAPTIONS.get(s, s))}</figcaption></figure>" for s in stems]
    return f'<div class="fitplots">{"".join(figures)}</div>'


def _fit_page(fit: pd.Series, parameters: pd.DataFrame, plots: dict[str, str], plot_note: str, details: dict,
              index_href: str) -> str:
    epoch, model = str(fit["epoch"]), str(fit["model"])
    source = str(fit.get("source") or "")
    facts = [("source", source), ("date", fit.get("date")), ("band", fit.get("band")),
             ("campaign", fit.get("campaign")), ("store", fit.get("path")),
             ("data file", details.get("attrs", {}).get("data_path"))]
    facts_html = "".join(f"<tr><th>{_text(k)}</th><td class='text'>{_text(v)}</td></tr>" for k, v in facts if v)
    chi2 = [(c[len("reduced_chi2_"):], fit[c], fit.get(f"n_{c[len('reduced_chi2_'):]}")) for c in fit.index
            if c.startswith("reduced_chi2_") and not _missing(fit[c])]
    chi2_table = _table(pd.DataFrame(chi2, columns=["product", "reduced χ²", "n data"])) if chi2 else "<p>None stored.</p>"
    shown = display_parameters(parameters)
    columns = ["parameter", "unit", "median", f"hdi{HDI_PROB:.0%}_low", f"hdi{HDI_PROB:.0%}_high", "sd", "rhat",
               "ess_bulk", "ess_tail"]
    parameter_table = _table(shown[[c for c in columns if c in shown]]) if len(shown) else "<p>No parameters.</p>"
    store_note = f"<p class='note'>Details from the store unavailable: {_text(details['error'])}</p>" if "error" in details else ""
    body = (
        f"<p><a href='{index_href}'>← campaign report</a></p>"
        f"<h1>{_text(epoch)} · {_text(model)}</h1><table>{facts_html}</table>{store_note}"
        + _verdict_section(fit, details)
        + f"<h2>Parameters</h2><p class='note'>Posterior median and {HDI_PROB:.0%} highest-density interval; "
          "angles in degrees.</p>" + parameter_table
        + "<h2>Goodness of fit</h2>" + chi2_table
        + "<h2>Plots</h2>" + (_plot_figures(plots) if plots else "") + (f"<p class='note'>{_text(plot_note)}</p>" if plot_note else "")
    )
    return _page(f"{epoch} · {model} — vlbicore", body)


def _fit_plots(fit: pd.Series, out_dir: Path, folder: Path, *, draw: bool, fit_plots_dir) -> tuple[dict[str, str], str]:
    """{plot name: href relative to the fit page} and a note when there are none."""
    if fit_plots_dir is not None:
        source = Path(fit_plots_dir) / str(fit["epoch"]) / str(fit["model"])
        pngs = sorted(source.glob("*.png"))
        if not pngs:
            return {}, f"No plots found in {source} (the workflow's summary job writes them)."
        return {p.stem: os.path.relpath(p, out_dir / folder).replace(os.sep, "/") for p in pngs}, ""
    if not draw:
        return {}, f"Plots not drawn for campaigns this large; run `vlbicore plot {fit['path']} --out DIR`."
    from vlbicore.survey.plots import plot_fit

    try:
        paths = plot_fit(fit["path"], out_dir / folder, formats=("png",))
    except Exception as exc:  # a plot failure must not sink the report; the page shows it where the plots would be
        return {}, f"Plots failed: {' '.join(str(exc).split())[:300]}"
    return {p.stem: p.name for p in paths}, ""


# --------------------------------------------------------------------------------------------------
# the index


def _problems_section(problems: pd.DataFrame) -> str:
    if not len(problems):
        return "<h2 id='problems'>Problems</h2><p>None.</p>"
    order = list(PROBLEM_KINDS) + sorted(set(problems["problem"]) - set(PROBLEM_KINDS))
    parts = [f"<h2 id='problems'>Problems</h2><p>{len(problems)} reported, grouped by kind: "
             + ", ".join(f"{_text(k)} {int((problems['problem'] == k).sum())}" for k in order if (problems["problem"] == k).any())
             + ".</p>"]
    for kind in order:
        group = problems[problems["problem"] == kind]
        if not len(group):
            continue
        parts.append(f"<h3>{_text(kind)} ({len(group)})</h3><p class='note'>{_text(PROBLEM_KINDS.get(kind, ''))}</p>")
        parts.append(_table(group[["epoch", "model", "message", "path"]], bad=pd.Series([True] * len(group))))
    return "\n".join(parts)


def _source_section(source: str, tables: dict, plots: dict[str, list[Path]], pages: dict[tuple[str, str], str]) -> str:
    fits, loo = tables["fits"], tables["loo"]
    title = source or "(source not recorded)"
    view = _fit_view(fits)
    links = {"model": [pages[(str(e), str(m))] for e, m in zip(fits["epoch"], fits["model"])]}
    not_adequate, multimodal = _flag(fits, "adequate", False), _flag(fits, "multimodal", True)
    loo_view = loo.drop(columns=["data_set"], errors="ignore")
    parts = [
        f"<h2 id='{_anchor(source)}'>Source {_text(title)}</h2>",
        f"<p>{len(fits)} fits over {fits['epoch'].nunique()} epochs and {fits['model'].nunique()} models.</p>",
        *(_embed(paths[0]) for name, paths in plots.items() if paths),
        "<h3>Fits</h3><p class='note'>Red: not converged (its numbers are not trustworthy); yellow: converged but "
        "not adequate or multimodal. The model name links to the fit's page (verdicts, plots).</p>",
        _table(view, bad=~fits["converged"].astype(bool).reset_index(drop=True),
               warn=(not_adequate | multimodal).reset_index(drop=True), links=links),
        "<h3>Model comparison (PSIS-LOO)</h3><p class='note'>Per epoch, among models fitted to the same "
        "observations; bold = preferred; red = Pareto k &gt; 0.7 for some observations; elpd in nats.</p>",
        _table(loo_view, bad=loo_view["n_bad_k"] > 0, best=loo_view["rank"] == 0) if len(loo_view) else "<p>No LOO results.</p>",
    ]
    return "\n".join(parts)


def calibration_section(calibration_dir) -> str:
    """The report's calibration section from a ``vlbicore calibrate gather`` directory (coverage.csv and
    plots/): the coverage of the 50 / 68 / 95 % intervals per model and parameter with binomial
    intervals (rows off the nominal rate marked), the ECDF-difference and coverage plots embedded."""
    calibration_dir = Path(calibration_dir)
    path = calibration_dir / "coverage.csv"
    try:
        coverage = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise VlbiError(f"{path}: cannot read the calibration coverage ({exc}); rerun `vlbicore calibrate gather`") from None
    view = coverage.assign(level=[f"{c:.0%}" for c in coverage.level],
                           observed=[f"{k}/{n}" for k, n in zip(coverage.covered, coverage.n)])
    columns = ["model", "parameter", "level", "observed", "rate", "ci_low", "ci_high", "consistent",
               "converged_fraction"]
    method = str(coverage.ci.iloc[0]) if len(coverage) else ""
    plots = sorted((calibration_dir / "plots").glob("*.png")) if (calibration_dir / "plots").is_dir() else []
    figures = "".join(f"<figure>{_embed(p)}<figcaption>{_text(p.stem)}</figcaption></figure>" for p in plots)
    n_sims = int(coverage.n.max()) if len(coverage) else 0
    return (
        "<h2 id='calibration'>Simulation-based calibration</h2>"
        f"<p class='note'>{n_sims} simulated data sets per model on a real file's coverage with thermal, "
        "non-closing and station-gain errors, fitted with the campaign's fit settings. For each interval level: "
        f"how many intervals contain the truth, the rate and its binomial confidence interval ({_text(method)}); "
        "<b>consistent</b> = the nominal level lies inside that interval. ECDF-difference plots: PIT of the "
        "truth minus uniform with 95 % simultaneous bands (Säilynoja et al. 2022).</p>"
        + _table(view[columns], bad=~coverage["consistent"].astype(bool), digits=3)
        + f'<div class="fitplots">{figures}</div>'
    )


def write_report(gather_dir, out_dir, *, fit_plots: bool = True, max_fit_plots: int = 24,
                 fit_plots_dir=None, calibration_dir=None) -> Path:
    """Write ``out_dir/index.html`` and one page per fit; returns the index's path.

    With ``calibration_dir`` (written by ``vlbicore calibrate gather``) the index gains a calibration
    section (:func:`calibration_section`).

    With ``fit_plots_dir`` the per-fit plots already rendered there (``<epoch>/<model>/*.png``, the
    workflow's summary job) are linked instead of being drawn again; otherwise they are drawn into each
    fit's folder when ``fit_plots`` and there are at most ``max_fit_plots`` fits."""
    from vlbicore.survey.plots import plot_sources, source_tables, sources_of

    gather_dir, out_dir = Path(gather_dir), Path(out_dir)
    tables = load_gathered(gather_dir)
    fits, problems, summary = tables["fits"], tables["problems"], tables["summary"]
    if fits.empty:
        raise VlbiError(f"{gather_dir}: the gather holds no fits; see problems.csv")
    out_dir.mkdir(parents=True, exist_ok=True)
    campaign_plots = plot_sources(tables, out_dir / "plots", formats=("png",))

    # one page per fit
    pages: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    draw = fit_plots and len(fits) <= max_fit_plots
    for _, fit in fits.iterrows():
        epoch, model = str(fit["epoch"]), str(fit["model"])
        name = _folder_name(epoch, model)
        while name in used:  # two ids that differ only in characters a folder name cannot hold
            name += "_"
        used.add(name)
        folder = Path("fits") / name
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        plots, note = _fit_plots(fit, out_dir, folder, draw=draw, fit_plots_dir=fit_plots_dir)
        parameters = summary[(summary["epoch"] == epoch) & (summary["model"] == model)]
        back = "../../index.html#" + _anchor(str(fit.get("source") or ""))
        page = _fit_page(fit, parameters, plots, note, _store_details(fit["path"]), back)
        (out_dir / folder / "index.html").write_text(page, encoding="utf-8")
        pages[(epoch, model)] = f"{folder.as_posix()}/index.html"

    sources = sources_of(fits)
    campaign_name = next((str(c) for c in _column(fits, "campaign", "") if not _missing(c) and str(c)), "")
    n_bad = int((~fits["converged"].astype(bool)).sum())
    n_not_adequate, n_multimodal = int(_flag(fits, "adequate", False).sum()), int(_flag(fits, "multimodal", True).sum())
    n_unknown = int(_column(fits, "adequate").map(_missing).sum())
    params_view = display_parameters(summary)
    params_columns = [c for c in ["source", "epoch", "model", "parameter", "unit", "median", f"hdi{HDI_PROB:.0%}_low",
                                  f"hdi{HDI_PROB:.0%}_high", "rhat", "ess_bulk", "converged"] if c in params_view]
    nav = " ".join(f"<a href='#{_anchor(s)}'>{_text(s or '(no source)')}</a>" for s in sources)
    sections = [
        f"<h1>{_text(campaign_name or 'vlbicore campaign report')}</h1>",
        f"<p>{len(fits)} fits of {len(sources)} source(s) over {fits['epoch'].nunique()} epochs and "
        f"{fits['model'].nunique()} models: <b>{n_bad} not converged</b>, <b>{n_not_adequate} not adequate</b>"
        + (f" ({n_unknown} without an adequacy verdict: n/a)" if n_unknown else "")
        + f", {n_multimodal} multimodal; {len(problems)} problem(s) reported. Generated "
        f"{datetime.datetime.now().isoformat(timespec='seconds')} by vlbicore {__version__} from "
        f"<code>{_text(gather_dir)}</code>.</p>",
        "<p class='note'>" + "; ".join(f"<b>{k}</b>: {_text(v)}" for k, v in VERDICTS.items())
        + ". Angles in degrees; sizes in µas.</p>",
        f"<nav>Sources: {nav} <a href='#problems'>Problems</a> <a href='#parameters'>Parameters</a>"
        + (" <a href='#calibration'>Calibration</a>" if calibration_dir else "") + "</nav>",
    ]
    for source in sources:
        sections.append(_source_section(source, source_tables(tables, source), campaign_plots[source], pages))
    sections += [
        _problems_section(problems),
        f"<h2 id='parameters'>Parameters</h2><p class='note'>Median and {HDI_PROB:.0%} HDI of every parameter of "
        "every fit; angles in degrees.</p>",
        _table(params_view[params_columns], bad=~params_view["converged"].astype(bool)),
    ]
    if calibration_dir:
        sections.append(calibration_section(calibration_dir))
    index = out_dir / "index.html"
    index.write_text(_page(f"{campaign_name or 'vlbicore'} — campaign report", "\n".join(sections)), encoding="utf-8")
    return index
