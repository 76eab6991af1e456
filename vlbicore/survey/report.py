"""Campaign report: one self-contained ``index.html`` from a gather directory.

Campaign plots are embedded as PNG data URIs (the page works when copied alone); per-fit plots (trace,
corner, image, residuals, uv) are linked files under ``fits/``. Non-converged fits and every reported
problem are highlighted, never hidden.
"""
from __future__ import annotations

import base64
import datetime
import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from vlbicore import __version__
from vlbicore.errors import VlbiError
from vlbicore.survey.gather import load_gathered

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; } td.text { text-align: left; }
tr.bad td { background: #f8d7da; } tr.best td { font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.fitplots img { max-width: 32%; }
"""


def _embed(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, *, bad: pd.Series | None = None, best: pd.Series | None = None, digits: int = 4) -> str:
    """HTML table; rows where ``bad`` is True get class "bad" (red), where ``best`` is True class "best"."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        classes = []
        if bad is not None and bool(bad.iloc[i]):
            classes.append("bad")
        if best is not None and bool(best.iloc[i]):
            classes.append("best")
        cells = []
        for value in row:
            if isinstance(value, (bool, np.bool_)):
                cells.append(f'<td class="text">{"yes" if value else "NO"}</td>')
            elif isinstance(value, (float, np.floating)):
                cells.append(f"<td>{value:.{digits}g}</td>")
            elif isinstance(value, (int, np.integer)):
                cells.append(f"<td>{value}</td>")
            else:
                cells.append(f'<td class="text">{html.escape(str(value))}</td>')
        class_attr = f' class="{" ".join(classes)}"' if classes else ""
        rows.append(f"<tr{class_attr}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _linked_plot_section(fits: pd.DataFrame, out_dir: Path, plots_dir: Path) -> str:
    """Per-fit plots already rendered (the workflow's summary rule: ``plots_dir/<epoch>/<model>/*.png``)."""
    parts = ["<h2>Per-fit plots</h2>"]
    for _, r in fits.iterrows():
        label = f"{html.escape(str(r['epoch']))} · {html.escape(str(r['model']))}"
        pngs = sorted((plots_dir / str(r["epoch"]) / str(r["model"])).glob("*.png"))
        if not pngs:
            parts.append(f'<h3>{label}</h3><p class="bad">no plots found in {html.escape(str(plots_dir))}</p>')
            continue
        links = [os.path.relpath(p, out_dir) for p in pngs]
        images = "".join(f'<a href="{html.escape(l)}"><img alt="{Path(l).stem}" src="{html.escape(l)}"></a>' for l in links)
        parts.append(f'<h3>{label}</h3><div class="fitplots">{images}</div>')
    return "\n".join(parts)


def _fit_plot_section(fits: pd.DataFrame, out_dir: Path, max_fits: int) -> str:
    from vlbicore.survey.plots import plot_fit

    parts = ["<h2>Per-fit plots</h2>"]
    if len(fits) > max_fits:
        parts.append(f"<p>{len(fits)} fits; per-fit plots skipped above {max_fits} (run <code>vlbicore plot STORE</code>).</p>")
        return "\n".join(parts)
    for _, r in fits.iterrows():
        folder = Path("fits") / f"{r['epoch']}__{r['model']}"
        label = f"{html.escape(str(r['epoch']))} · {html.escape(str(r['model']))}"
        try:
            paths = plot_fit(r["path"], out_dir / folder, formats=("png",))
        except Exception as exc:  # a plot failure must not sink the report; it is shown where the plots would be
            parts.append(f'<h3>{label}</h3><p class="bad">plots failed: {html.escape(str(exc))}</p>')
            continue
        images = "".join(f'<a href="{folder / p.name}"><img alt="{p.stem}" src="{folder / p.name}"></a>' for p in paths)
        parts.append(f'<h3>{label}</h3><div class="fitplots">{images}</div>')
    return "\n".join(parts)


def write_report(gather_dir, out_dir, *, fit_plots: bool = True, max_fit_plots: int = 24,
                 fit_plots_dir=None) -> Path:
    """Write ``out_dir/index.html`` (tables, embedded campaign plots, per-fit plots); returns its path.

    With ``fit_plots_dir`` the per-fit plots already rendered there (``<epoch>/<model>/*.png``) are linked
    instead of being drawn again."""
    from vlbicore.survey.plots import plot_campaign

    gather_dir, out_dir = Path(gather_dir), Path(out_dir)
    tables = load_gathered(gather_dir)
    fits, loo, problems, summary = tables["fits"], tables["loo"], tables["problems"], tables["summary"]
    if fits.empty:
        raise VlbiError(f"{gather_dir}: the gather holds no fits; see problems.csv")
    out_dir.mkdir(parents=True, exist_ok=True)
    campaign = [p for p in plot_campaign(gather_dir, out_dir / "plots") if p.suffix == ".png"]

    n_bad = int((~fits["converged"].astype(bool)).sum())
    fit_columns = [c for c in fits.columns if c != "path"]
    loo_view = loo.drop(columns=["data_set"], errors="ignore")
    params_view = summary[["epoch", "model", "parameter", "median", "hdi_low", "hdi_high", "rhat", "ess_bulk", "converged"]]
    sections = [
        f"<h1>vlbicore campaign report</h1><p>{len(fits)} fits over {fits['epoch'].nunique()} epochs and "
        f"{fits['model'].nunique()} models; <b>{n_bad} not converged</b>; {len(problems)} problem(s) reported. "
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by vlbicore {__version__} from "
        f"<code>{html.escape(str(gather_dir))}</code>.</p>",
        "<h2>Overview</h2>",
        *(_embed(p) for p in campaign),
        "<h2>Fits</h2><p>Red rows did not converge (see the reasons column); their numbers are not trustworthy.</p>",
        _table(fits[fit_columns], bad=~fits["converged"].astype(bool)),
        "<h2>Model comparison (PSIS-LOO)</h2><p>Per epoch, models fitted to the same observations; bold = preferred; "
        "red = Pareto k &gt; 0.7 for some observations.</p>",
        _table(loo_view, bad=loo_view["n_bad_k"] > 0 if len(loo_view) else None, best=loo_view["rank"] == 0 if len(loo_view) else None),
        "<h2>Problems</h2>",
        _table(problems, bad=pd.Series([True] * len(problems))) if len(problems) else "<p>None.</p>",
        "<h2>Parameters</h2>",
        _table(params_view, bad=~params_view["converged"].astype(bool)),
    ]
    if fit_plots_dir is not None:
        sections.append(_linked_plot_section(fits, out_dir, Path(fit_plots_dir)))
    elif fit_plots:
        sections.append(_fit_plot_section(fits, out_dir, max_fit_plots))
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>vlbicore report</title><style>{STYLE}</style>"
        f"</head><body>{''.join(sections)}</body></html>"
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
