"""Figures for one fit (trace, corner, model image, residuals, uv coverage) and for a campaign.

Matplotlib with the Agg backend (no display needed); every figure is saved as PNG and SVG. The
``*_figure`` functions return the ``Figure`` so tests and notebooks can inspect it; ``plot_fit`` and
``plot_campaign`` save them and return the file paths.

Conventions: sizes in µas, images with East to the left (RA increases leftwards), North up; uv
coverage in Gλ with u increasing to the left, as in EHT papers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vlbicore.errors import VlbiError  # noqa: E402
from vlbicore.store import open_fit_store, parameter_names  # noqa: E402

FORMATS = ("png", "svg")
MAX_CORNER_PARAMS = 8
MAX_TRACE_POINTS = 1000
KEY_PARAMETERS = ("d", "alpha", "beta1_abs", "brightness_PA", "PA", "beta1_arg", "F0", "flux")
PRODUCT_UNITS = {"cphase": "closure phase (deg)", "lcamp": "log closure amplitude", "amp": "amplitude (Jy)", "vis": "|V| (Jy)"}


def save_figure(fig: Figure, out_dir: Path, stem: str, formats: Iterable[str] = FORMATS) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        # every builder lays its figure out itself: bbox_inches="tight" would draw it twice
        fig.savefig(path, dpi=110 if fmt == "png" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def set_margins(fig: Figure, *, left=0.8, right=0.2, bottom=0.55, top=0.5, wspace=0.25, hspace=0.35) -> None:
    """Fixed margins in inches around the axes grid. The per-fit figures use this instead of tight_layout,
    which draws the whole figure once more just to measure it (a third of a campaign's plotting time)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace, hspace=hspace)


# --------------------------------------------------------------------------------------------------
# One fit


def _title(tree: xr.DataTree) -> str:
    a = tree.attrs
    verdict = "converged" if a.get("converged") else "NOT converged"
    return f"{a.get('epoch', '?')} · {a.get('model_name', '?')} · {verdict}"


def trace_figure(tree: xr.DataTree) -> Figure:
    """Per parameter: draws per chain (left) and per-chain histograms (right); 2 panels per parameter."""
    names = parameter_names(tree)
    posterior = tree["posterior"].dataset
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 1.6 * len(names) + 0.8), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]})
    for row, name in zip(axes, names):
        values = np.asarray(posterior[name].values)
        step = max(1, values.shape[1] // MAX_TRACE_POINTS)
        for chain in range(values.shape[0]):
            row[0].plot(np.arange(0, values.shape[1], step), values[chain, ::step], lw=0.5, alpha=0.8)
            row[1].hist(values[chain], bins=40, histtype="step", density=True)
        row[0].set_ylabel(name, fontsize=8)
        row[1].set_yticks([])
    axes[-1, 0].set_xlabel("draw")
    fig.suptitle(_title(tree), fontsize=10)
    set_margins(fig, left=0.9, wspace=0.08, hspace=0.3)
    return fig


def _plot_range(x: np.ndarray) -> tuple[float, float]:
    """Central 99 % of the finite draws, widened when a parameter is constant."""
    finite = x[np.isfinite(x)]
    low, high = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    pad = 0.5 * max(abs(low), 1.0) if high <= low else 0.0
    return float(low - pad), float(high + pad)


def corner_figure(tree: xr.DataTree, max_params: int = MAX_CORNER_PARAMS) -> Figure:
    """Lower-triangle corner plot of the first ``max_params`` parameters: n(n+1)/2 panels."""
    names = parameter_names(tree)[:max_params]
    posterior = tree["posterior"].dataset
    samples = {n: np.asarray(posterior[n].values).ravel() for n in names}
    # one range per parameter so every panel of a column (and row) shares its axis
    limits = {name: _plot_range(x) for name, x in samples.items()}
    n = len(names)
    fig = plt.figure(figsize=(1.8 * n + 1, 1.8 * n + 1))
    for i, yname in enumerate(names):
        for j, xname in enumerate(names[: i + 1]):
            ax = fig.add_subplot(n, n, i * n + j + 1)
            if i == j:
                ax.hist(samples[xname], bins=40, range=limits[xname], histtype="stepfilled", color="0.4")
                ax.set_yticks([])
            else:
                ax.hist2d(samples[xname], samples[yname], bins=40, range=[limits[xname], limits[yname]], cmap="Greys")
                if j == 0:
                    ax.set_ylabel(yname, fontsize=7)
                else:
                    ax.set_yticklabels([])
            if i == n - 1:
                ax.set_xlabel(xname, fontsize=7)
            else:
                ax.set_xticklabels([])
            ax.tick_params(labelsize=6)
    fig.suptitle(_title(tree), fontsize=10)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.07, top=0.94, wspace=0.15, hspace=0.15)
    return fig


def best_draw(tree: xr.DataTree) -> dict[str, float]:
    """The posterior draw with the highest log posterior (a coherent parameter set, unlike medians)."""
    posterior = tree["posterior"].dataset
    stats = tree["sample_stats"].dataset if "sample_stats" in tree.children else xr.Dataset()
    if "lp" in stats:
        lp = np.asarray(stats["lp"].values)
        chain, draw = np.unravel_index(int(np.nanargmax(lp)), lp.shape)
        return {str(k): float(v.values[chain, draw]) for k, v in posterior.data_vars.items()}
    return {str(k): float(np.median(v.values)) for k, v in posterior.data_vars.items()}


def _field_of_view(params: dict[str, float]) -> float:
    diameters = [v for k, v in params.items() if k.split(".")[-1] in ("d", "FWHM", "FWHM_maj") and np.isfinite(v)]
    return float(np.clip(2.5 * max(diameters), 60.0, 500.0)) if diameters else 160.0


def model_image(spec: dict, params: dict[str, float], fov_uas: float, npix: int):
    """(x_uas, y_uas, image[iy, ix], missing) from ``SkyModel.image``: x decreasing with ix (East left).

    Free parameters absent from ``params`` are set to the centre of their prior box and named in ``missing``.
    """
    from vlbicore.models import build_model

    model = build_model(spec)
    missing = [q.name for q in model.params if q.name not in params]
    p = {q.name: params.get(q.name, 0.5 * (q.low + q.high)) for q in model.params}
    x, y, image = model.image(p, fov_uas, npix)
    return np.asarray(x), np.asarray(y), np.asarray(image, dtype=np.float64), missing


def image_figure(tree: xr.DataTree, npix: int = 128) -> Figure:
    """Best-draw model image in µas, East left, North up; one panel."""
    spec = tree.attrs.get("model_spec")
    spec = json.loads(spec) if isinstance(spec, str) else spec
    if not spec:
        raise VlbiError(f"{tree.attrs.get('epoch', 'store')}: no model_spec attribute; cannot draw the model image")
    params = best_draw(tree)
    x, y, image, missing = model_image(spec, params, _field_of_view(params), npix)
    width, height = 5.5, 4.6  # inches; fixed axes positions (no layout pass): image, then colour bar
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0.8 / width, 0.55 / height, 3.3 / width, 3.4 / height))
    colour_axes = fig.add_axes((4.15 / width, 0.55 / height, 0.12 / width, 3.4 / height))
    shown = ax.imshow(image, origin="lower", extent=(x[0], x[-1], y[0], y[-1]), cmap="afmhot", interpolation="nearest")
    ax.set_xlabel("relative RA (µas), East ←")
    ax.set_ylabel("relative Dec (µas)")
    fig.colorbar(shown, cax=colour_axes, label="Jy / pixel")
    note = f"; {', '.join(missing)} at prior centre" if missing else ""
    fig.suptitle(f"{_title(tree)}\nhighest-lp draw{note}", fontsize=8)
    return fig


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _product_kinds(observed: xr.Dataset) -> list[str]:
    return sorted(str(k) for k in observed.data_vars if f"{k}_dim" in observed[k].dims and not str(k).startswith("uv_"))


def _product_view(kind: str, observed: xr.Dataset, predictive: xr.Dataset | None):
    """Observed values, errors and the 3-97 % predictive band in display units for one product kind."""
    values = np.asarray(observed[kind].values)
    sigma = np.asarray(observed[f"{kind}_sigma"].values) if f"{kind}_sigma" in observed else np.zeros(values.shape)
    band = None
    if predictive is not None and kind in predictive:
        draws = np.asarray(predictive[kind].values).reshape(-1, values.shape[0])
        if kind == "cphase":  # put every predicted angle on the branch nearest the datum
            draws = values + _wrap(draws - values)
        band = np.quantile(np.abs(draws) if np.iscomplexobj(draws) else draws, [0.03, 0.5, 0.97], axis=0)
    if np.iscomplexobj(values):
        values = np.abs(values)
    if kind == "cphase":
        scale = 180 / np.pi
        values, sigma = values * scale, sigma * scale
        band = band * scale if band is not None else None
    return values, sigma, band


def _value_limits(kind: str, values: np.ndarray, band: np.ndarray | None) -> tuple[float, float]:
    shown = np.concatenate([values.ravel(), band.ravel()]) if band is not None else values.ravel()
    shown = shown[np.isfinite(shown)]
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (-1.0, 1.0)
    pad = 0.15 * max(high - low, 1e-6)
    low, high = low - pad, high + pad
    return (max(low, -190.0), min(high, 190.0)) if kind == "cphase" else (low, high)


def residual_figure(tree: xr.DataTree) -> Figure:
    """Per product kind: data ± σ with the posterior-predictive band vs baseline length and vs time (2 panels per kind)."""
    observed = tree["observed_data"].dataset
    predictive = tree["posterior_predictive"].dataset if "posterior_predictive" in tree.children else None
    kinds = _product_kinds(observed)
    if not kinds:
        raise VlbiError(f"{tree.attrs.get('epoch', 'store')}: no observed data products stored; nothing to plot")
    fig, axes = plt.subplots(len(kinds), 2, figsize=(11, 3.0 * len(kinds)), squeeze=False)
    for row, kind in zip(axes, kinds):
        values, sigma, band = _product_view(kind, observed, predictive)
        n = values.shape[0]
        xs = {
            "uvdist": (np.asarray(observed[f"{kind}_uvdist"].values) / 1e9, "longest baseline (Gλ)"),
            "time": (np.asarray(observed[f"{kind}_time"].values), "time (h UTC)"),
        }
        for ax, key in zip(row, ("uvdist", "time")):
            x, label = xs[key] if f"{kind}_{key}" in observed else (np.arange(n), "index")
            if band is not None:
                ax.vlines(x, band[0], band[2], color="tab:orange", alpha=0.45, lw=3, label="94 % predictive")
                ax.plot(x, band[1], "_", color="tab:red", ms=6, label="predictive median")
            ax.errorbar(x, values, yerr=sigma, fmt=".", color="k", ms=3, lw=0.6, label="data ± σ")
            ax.set_ylim(*_value_limits(kind, values, band))  # a few huge σ must not flatten the plot
            ax.set_xlabel(label)
            ax.set_ylabel(PRODUCT_UNITS.get(kind, kind), fontsize=8)
        row[0].legend(fontsize=7, loc="best")
    fig.suptitle(_title(tree), fontsize=10)
    set_margins(fig, left=0.85, top=0.45, wspace=0.22, hspace=0.45)
    return fig


def uv_figure(tree: xr.DataTree) -> Figure:
    """uv coverage (both conjugate points), Gλ, u increasing to the left; one panel."""
    observed = tree["observed_data"].dataset
    if "uv_u" not in observed:
        raise VlbiError(f"{tree.attrs.get('epoch', 'store')}: no uv coordinates stored; pass uv to write_fit_store")
    u = np.asarray(observed["uv_u"].values) / 1e9
    v = np.asarray(observed["uv_v"].values) / 1e9
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.plot(np.concatenate([u, -u]), np.concatenate([v, -v]), ".", ms=2, color="tab:blue")
    limit = 1.05 * max(np.max(np.hypot(u, v)), 1e-3)
    ax.set_xlim(limit, -limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("u (Gλ)")
    ax.set_ylabel("v (Gλ)")
    ax.set_title(f"{tree.attrs.get('epoch', '')} uv coverage", fontsize=9)
    set_margins(fig, left=0.75, top=0.35)
    return fig


def plot_fit(store_path, out_dir, *, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Trace, corner, model image, residual and uv-coverage plots of one store (PNG + SVG each)."""
    tree = open_fit_store(store_path)
    out_dir = Path(out_dir)
    builders = {
        "trace": trace_figure,
        "corner": corner_figure,
        "image": image_figure,
        "residuals": residual_figure,
        "uv_coverage": uv_figure,
    }
    paths: list[Path] = []
    for stem, build in builders.items():
        if stem == "uv_coverage" and "uv_u" not in tree["observed_data"].dataset:
            continue  # optional in the store
        paths.extend(save_figure(build(tree), out_dir, stem, formats))
    return paths


# --------------------------------------------------------------------------------------------------
# Campaign


def campaign_parameters(summary: pd.DataFrame, limit: int = 6) -> list[str]:
    """Parameters worth a panel: diameter, width, asymmetry, PA, flux (any component prefix); else the first few."""
    names = list(dict.fromkeys(summary["parameter"].tolist()))
    rank = {base: i for i, base in enumerate(KEY_PARAMETERS)}
    key = [n for n in names if n.split(".")[-1] in rank]
    key.sort(key=lambda n: (rank[n.split(".")[-1]], n))
    return (key or names)[:limit]


def _epoch_positions(fits: pd.DataFrame) -> dict[str, int]:
    epochs = fits[["epoch", "date", "band"]].drop_duplicates("epoch").sort_values(["date", "band", "epoch"])
    return {e: i for i, e in enumerate(epochs["epoch"])}


def parameter_epoch_figure(summary: pd.DataFrame, fits: pd.DataFrame) -> Figure:
    """One panel per key parameter: median and 94 % HDI per epoch; colour = band, marker = model, hollow = not converged."""
    params = campaign_parameters(summary)
    positions = _epoch_positions(fits)
    models = sorted(summary["model"].unique())
    bands = sorted(summary["band"].astype(str).unique())
    colours = {b: f"C{i}" for i, b in enumerate(bands)}
    markers = dict(zip(models, "osD^v<>ph*"))
    offsets = {m: (i - (len(models) - 1) / 2) * 0.12 for i, m in enumerate(models)}
    fig, axes = plt.subplots(len(params), 1, figsize=(max(6, 0.6 * len(positions) + 3), 2.3 * len(params) + 0.6),
                             squeeze=False, sharex=True)
    for ax, param in zip(axes[:, 0], params):
        rows = summary[summary["parameter"] == param]
        for _, r in rows.iterrows():
            x = positions[r["epoch"]] + offsets[r["model"]]
            colour = colours[str(r["band"])]
            ax.errorbar(x, r["median"], yerr=[[r["median"] - r["hdi_low"]], [r["hdi_high"] - r["median"]]],
                        fmt=markers[r["model"]], color=colour, mfc=colour if bool(r["converged"]) else "none", ms=5, lw=1)
        ax.set_ylabel(param, fontsize=8)
        ax.grid(alpha=0.3)
    ax = axes[-1, 0]
    ax.set_xticks(list(positions.values()))
    ax.set_xticklabels(list(positions), rotation=45, ha="right", fontsize=7)
    handles = [plt.Line2D([], [], ls="", marker=markers[m], color="k", label=m) for m in models]
    handles += [plt.Line2D([], [], ls="", marker="s", color=colours[b], label=f"band {b}") for b in bands]
    handles.append(plt.Line2D([], [], ls="", marker="o", color="k", mfc="none", label="not converged"))
    axes[0, 0].legend(handles=handles, fontsize=7, ncol=min(len(handles), 4), loc="best")
    axes[0, 0].set_title("posterior median and 94 % HDI per epoch", fontsize=10)
    fig.tight_layout()
    return fig


def loo_figure(loo: pd.DataFrame, fits: pd.DataFrame) -> Figure:
    """elpd_loo difference to each epoch's best model ± its standard error; one panel."""
    positions = _epoch_positions(fits)
    models = sorted(loo["model"].unique()) if len(loo) else []
    markers = dict(zip(models, "osD^v<>ph*"))
    offsets = {m: (i - (len(models) - 1) / 2) * 0.12 for i, m in enumerate(models)}
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(positions) + 3), 3.6))
    for model in models:
        rows = loo[loo["model"] == model]
        x = [positions[e] + offsets[model] for e in rows["epoch"] if e in positions]
        rows = rows[rows["epoch"].isin(positions)]
        ax.errorbar(x, -rows["elpd_diff"], yerr=rows["dse"], fmt=markers[model], ms=5, lw=1, label=model)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(list(positions.values()))
    ax.set_xticklabels(list(positions), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("elpd_loo − best (± dse)")
    ax.set_title("PSIS-LOO model comparison per epoch (0 = preferred)", fontsize=10)
    if models:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def overview_figure(fits: pd.DataFrame, loo: pd.DataFrame, problems: pd.DataFrame | None = None) -> Figure:
    """Epoch × model grid: green converged, red not, grey missing; a star marks each epoch's LOO winner."""
    positions = _epoch_positions(fits)
    models = sorted(fits["model"].unique())
    grid = np.full((len(models), len(positions)), np.nan)
    for _, r in fits.iterrows():
        grid[models.index(r["model"]), positions[r["epoch"]]] = 1.0 if bool(r["converged"]) else 0.0
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(positions) + 3), 0.6 * len(models) + 2.6))
    cmap = matplotlib.colors.ListedColormap(["#d9534f", "#5cb85c"]).with_extremes(bad="0.85")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    winners = loo[loo["rank"] == 0] if len(loo) else loo
    for _, r in winners.iterrows():
        if r["epoch"] in positions and r["model"] in models:
            # a marker, not a ★ glyph: the default fonts of many installs lack it
            ax.plot(positions[r["epoch"]], models.index(r["model"]), marker="*", color="k", ms=11, ls="none")
    ax.set_xticks(range(len(positions)))
    ax.set_xticklabels(list(positions), rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels(models, fontsize=8)
    n_bad = int((~fits["converged"].astype(bool)).sum())
    n_problems = 0 if problems is None else len(problems)
    ax.set_title(f"{len(fits)} fits, {n_bad} not converged (red), {n_problems} problem(s) reported; * = LOO preferred",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_campaign(gather_dir, out_dir, *, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Parameter-vs-epoch, LOO comparison and overview plots from a gather directory."""
    from vlbicore.survey.gather import load_gathered

    tables = load_gathered(gather_dir)
    out_dir = Path(out_dir)
    fits = tables["fits"]
    if fits.empty:
        raise VlbiError(f"{gather_dir}: the gather holds no fits; check problems.csv")
    paths = []
    paths += save_figure(overview_figure(fits, tables["loo"], tables["problems"]), out_dir, "overview", formats)
    paths += save_figure(parameter_epoch_figure(tables["summary"], fits), out_dir, "parameters_vs_epoch", formats)
    paths += save_figure(loo_figure(tables["loo"], fits), out_dir, "loo_comparison", formats)
    return paths
