"""Figures for one fit (trace, corner, model image with the fitted ring, data against the model, normalised
residuals, uv coverage) and for a campaign (parameters against epoch, model comparison, overview), per source.

Matplotlib with the Agg backend (no display needed); every figure is saved as PNG and SVG. The
``*_figure`` functions return the ``Figure`` so tests and notebooks can inspect it; ``plot_fit`` and
``plot_campaign`` save them and return the file paths.

Conventions: sizes in µas, angles in degrees (stores keep radians; :mod:`vlbicore.survey.display`),
every axis labelled with its unit; an angle's draws, and its series across epochs, are unwrapped on the
circle so they stay contiguous instead of jumping at ±180°; images with East to the left (RA increases
leftwards), North up; uv coverage in Gλ with u increasing to the left, as in EHT papers. Parameters of
different meaning (an m-ring's ring diameter ``d`` and a crescent's outer diameter ``d``) never share
an axis: campaign panels are per parameter *and* meaning, and say which models they hold.
"""
from __future__ import annotations

import dataclasses
import json
import math
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
from vlbicore.statistics import HDI_PROB  # noqa: E402
from vlbicore.store import is_snapshot_store, open_fit_store, parameter_names, snapshot_view  # noqa: E402
from vlbicore.store.summary import snapshot_summary  # noqa: E402
from vlbicore.survey import display  # noqa: E402

FORMATS = ("png", "svg")
MAX_CORNER_PARAMS = 8
MAX_TRACE_POINTS = 1000
KEY_PARAMETERS = ("d", "alpha", "beta1_abs", "brightness_PA", "PA", "beta1_arg", "F0", "flux")
PRODUCT_UNITS = {"cphase": "closure phase (deg)", "lcamp": "log closure amplitude (dimensionless)",
                 "amp": "amplitude (Jy)", "vis": "|V| (Jy)"}
NORMALISED = "(data − model) / σ (dimensionless)"
MAX_PANEL_SERIES = 4  # entries shown of a posterior variable with extra dimensions (e.g. snapshots)
MAX_CAMPAIGN_PANELS = 8


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
    verdicts = ["converged" if a.get("converged") else "NOT converged"]
    if a.get("adequate") is False:
        verdicts.append("NOT adequate")
    if a.get("multimodal"):
        verdicts.append("multimodal")
    return f"{a.get('epoch', '?')} · {a.get('model_name', '?')} · {', '.join(verdicts)}"


@dataclasses.dataclass
class Series:
    """One posterior quantity as plotted: its label, displayed unit and draws (chain, draw)."""

    label: str
    units: str
    draws: np.ndarray

    @property
    def axis_label(self) -> str:
        return display.axis_label(self.label, self.units)


def posterior_series(tree: xr.DataTree, max_entries: int = MAX_PANEL_SERIES) -> list[Series]:
    """Every posterior variable in fit order, in displayed units (angles in degrees, unwrapped around
    their circular mean). A variable with dimensions beyond (chain, draw), e.g. one value per snapshot,
    gives one series per entry (``name[i]``, the first ``max_entries``)."""
    posterior = tree["posterior"].dataset
    out = []
    for name in parameter_names(tree):
        variable = posterior[name]
        units = variable.attrs.get("units", "")
        period = display.display_period(variable.attrs.get("period"), units)
        values = np.asarray(variable.transpose("chain", "draw", ...).values, dtype=np.float64)
        entries = values.reshape(values.shape[0], values.shape[1], -1)
        for i in range(min(entries.shape[2], max_entries)):
            label = name if entries.shape[2] == 1 else f"{name}[{i}]"
            draws = display.unwrap_draws(display.to_display(entries[:, :, i], units), period)
            out.append(Series(label, display.display_unit(units) if units else "", draws))
    return out


def trace_figure(tree: xr.DataTree) -> Figure:
    """Per parameter: draws per chain against draw number (left) and their histogram on the same value
    axis (right); 2 panels per parameter."""
    series = posterior_series(tree)
    fig, axes = plt.subplots(len(series), 2, figsize=(10, 1.6 * len(series) + 0.8), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]}, sharey="row")
    for row, item in zip(axes, series):
        values = item.draws
        step = max(1, values.shape[1] // MAX_TRACE_POINTS)
        for chain in range(values.shape[0]):
            row[0].plot(np.arange(0, values.shape[1], step), values[chain, ::step], lw=0.5, alpha=0.8)
            finite = values[chain][np.isfinite(values[chain])]
            if finite.size:
                row[1].hist(finite, bins=40, histtype="step", density=True, orientation="horizontal")
        row[0].set_ylabel(item.axis_label, fontsize=8)
        row[1].tick_params(labelleft=False, labelsize=7)
        row[0].tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("draw (after warmup)")
    axes[-1, 1].set_xlabel("probability density (per unit)")
    fig.suptitle(_title(tree), fontsize=10)
    set_margins(fig, left=1.0, wspace=0.05, hspace=0.3)
    return fig


def _plot_range(x: np.ndarray) -> tuple[float, float]:
    """Central 99 % of the finite draws, widened when a parameter is constant."""
    finite = x[np.isfinite(x)]
    low, high = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    pad = 0.5 * max(abs(low), 1.0) if high <= low else 0.0
    return float(low - pad), float(high + pad)


def corner_figure(tree: xr.DataTree, max_params: int = MAX_CORNER_PARAMS) -> Figure:
    """Lower-triangle corner plot of the first ``max_params`` parameters (displayed units): n(n+1)/2 panels."""
    series = posterior_series(tree)[:max_params]
    samples = {item.label: item.draws.ravel() for item in series}
    labels = {item.label: item.axis_label for item in series}
    names = list(samples)
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
                if j == 0:
                    ax.set_ylabel("probability density (per unit)", fontsize=7)
            else:
                ax.hist2d(samples[xname], samples[yname], bins=40, range=[limits[xname], limits[yname]], cmap="Greys")
                if j == 0:
                    ax.set_ylabel(labels[yname], fontsize=7)
                else:
                    ax.set_yticklabels([])
            if i == n - 1:
                ax.set_xlabel(labels[xname], fontsize=7)
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

    return _model_image(build_model(spec), params, fov_uas, npix)


def _model_image(model, params: dict[str, float], fov_uas: float, npix: int):
    missing = [q.name for q in model.params if q.name not in params]
    p = {q.name: params.get(q.name, 0.5 * (q.low + q.high)) for q in model.params}
    x, y, image = model.image(p, fov_uas, npix)
    return np.asarray(x), np.asarray(y), np.asarray(image, dtype=np.float64), missing


def ring_outlines(model, params: dict[str, float]) -> list[tuple[str, str, float, float, float]]:
    """(parameter, meaning, x0, y0, diameter) in µas for every diameter ``d`` of the model (a ring's, a
    disk's, a crescent's outer one; ``<component>.d`` in a sum), centred where its component is."""
    values = {**model.fixed, **params}
    outlines = []
    for q in model.component.params:
        if q.name.split(".")[-1] != "d":
            continue
        prefix = q.name[: -len("d")]
        diameter = values.get(q.name)
        if diameter is None or not np.isfinite(diameter) or diameter <= 0:
            continue
        outlines.append((q.name, q.description, float(values.get(prefix + "x0", 0.0)),
                         float(values.get(prefix + "y0", 0.0)), float(diameter)))
    return outlines


def image_figure(tree: xr.DataTree, npix: int = 128) -> Figure:
    """Best-draw model image in µas, East left, North up, with every fitted diameter drawn as a dashed
    circle (the posterior median and 94 % HDI in the legend); one panel."""
    from matplotlib.patches import Circle

    from vlbicore.models import build_model
    from vlbicore.statistics import draw_statistics

    spec = tree.attrs.get("model_spec")
    spec = json.loads(spec) if isinstance(spec, str) else spec
    if not spec:
        raise VlbiError(f"{tree.attrs.get('epoch', 'store')}: no model_spec attribute; cannot draw the model image")
    model = build_model(spec)
    params = best_draw(tree)
    x, y, image, missing = _model_image(model, params, _field_of_view(params), npix)
    width, height = 5.5, 5.4  # inches; fixed axes positions (no layout pass): image, colour bar, legend below
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0.8 / width, 1.35 / height, 3.3 / width, 3.4 / height))
    colour_axes = fig.add_axes((4.15 / width, 1.35 / height, 0.12 / width, 3.4 / height))
    shown = ax.imshow(image, origin="lower", extent=(x[0], x[-1], y[0], y[-1]), cmap="afmhot", interpolation="nearest")
    posterior = tree["posterior"].dataset
    handles = []
    for (name, meaning, cx, cy, diameter), colour in zip(ring_outlines(model, params), ("cyan", "lime", "magenta", "white")):
        circle = Circle((cx, cy), diameter / 2, fill=False, ls="--", lw=1.2, color=colour)
        ax.add_patch(circle)
        label = f"{name} = {diameter:.1f} µas ({meaning})"
        if name in posterior:
            stats = draw_statistics(np.asarray(posterior[name].values))
            label += f"; median {stats['median']:.1f}, {HDI_PROB:.0%} HDI {stats['hdi_low']:.1f}–{stats['hdi_high']:.1f}"
        circle.set_label(label)
        handles.append(circle)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    ax.set_xlabel("relative RA (µas), East ←")
    ax.set_ylabel("relative Dec (µas)")
    fig.colorbar(shown, cax=colour_axes, label="flux density (Jy / pixel)")
    if handles:
        fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.1 / width, 0.05 / height), fontsize=6.5,
                   frameon=False)
    note = f"; {', '.join(missing)} at prior centre" if missing else ""
    fig.suptitle(f"{_title(tree)}\nhighest-lp draw, fitted diameter dashed{note}", fontsize=8)
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


def normalised_residuals(kind: str, observed: xr.Dataset, predictive: xr.Dataset) -> dict[str, np.ndarray]:
    """(data − model) / σ of one product kind, the model being the posterior-predictive median (closure
    phases: on the circle, the residual wrapped into ±180°; complex visibilities: real and imaginary parts
    as two residuals each), with the uv distance (Gλ) and time (h UTC) of each residual."""
    values = np.asarray(observed[kind].values)
    n = values.shape[0]
    sigma = np.asarray(observed[f"{kind}_sigma"].values) if f"{kind}_sigma" in observed else np.ones(n)
    draws = np.asarray(predictive[kind].values).reshape(-1, n)
    if kind == "cphase":
        residual = -np.median(_wrap(draws - values), axis=0)  # data − model, on the branch nearest the datum
        residual = _wrap(residual)
    elif np.iscomplexobj(values) or np.iscomplexobj(draws):
        model = np.median(draws.real, axis=0) + 1j * np.median(draws.imag, axis=0)
        difference = values - model
        residual = np.concatenate([difference.real, difference.imag])
        sigma = np.concatenate([sigma, sigma])
    else:
        residual = values - np.median(draws, axis=0)
    repeat = residual.size // n
    coordinate = lambda name, scale: (np.tile(np.asarray(observed[f"{kind}_{name}"].values) / scale, repeat)
                                      if f"{kind}_{name}" in observed else np.tile(np.arange(n, dtype=float), repeat))
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = residual / sigma
    return {"residual": normalised, "uvdist": coordinate("uvdist", 1e9), "time": coordinate("time", 1.0)}


def normalised_residual_figure(tree: xr.DataTree) -> Figure:
    """Per product kind: (data − model)/σ against baseline length and against time, and its histogram
    against the standard normal it follows when the model and the error bars are right (3 panels per kind)."""
    if "posterior_predictive" not in tree.children:
        raise VlbiError(f"{tree.attrs.get('epoch', 'store')}: no posterior_predictive group; no residuals to plot")
    observed = tree["observed_data"].dataset
    predictive = tree["posterior_predictive"].dataset
    kinds = [k for k in _product_kinds(observed) if k in predictive]
    if not kinds:
        raise VlbiError(f"{tree.attrs.get('epoch', 'store')}: no product has a posterior prediction; no residuals")
    fig, axes = plt.subplots(len(kinds), 3, figsize=(12, 3.0 * len(kinds)), squeeze=False,
                             gridspec_kw={"width_ratios": [2, 2, 1.3]})
    grid = np.linspace(-5, 5, 201)
    for row, kind in zip(axes, kinds):
        view = normalised_residuals(kind, observed, predictive)
        residual = view["residual"]
        finite = np.isfinite(residual)
        for ax, key, label in ((row[0], "uvdist", "longest baseline (Gλ)"), (row[1], "time", "time (h UTC)")):
            ax.plot(view[key][finite], residual[finite], ".", ms=3, color="k")
            for level, style in ((0, "-"), (-3, ":"), (3, ":")):
                ax.axhline(level, color="0.5", lw=0.7, ls=style)
            ax.set_xlabel(label)
            ax.set_ylabel(NORMALISED, fontsize=8)
        limit = max(5.0, float(np.nanmax(np.abs(residual[finite]))) if finite.any() else 5.0)
        row[2].hist(residual[finite], bins=np.linspace(-limit, limit, 41), density=True, color="0.6",
                    label=f"{kind}, n = {int(finite.sum())}")
        row[2].plot(grid, np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi), color="tab:red", lw=1.2,
                    label="N(0, 1)")
        row[2].set_xlabel(NORMALISED, fontsize=8)
        row[2].set_ylabel("probability density (per σ)", fontsize=8)
        chi2 = float(np.mean(residual[finite] ** 2)) if finite.any() else math.nan
        row[2].set_title(f"{kind}: mean of squares {chi2:.2f}", fontsize=8)
        row[2].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{_title(tree)}\nnormalised residuals against the posterior-predictive median", fontsize=9)
    set_margins(fig, left=0.85, top=0.6, wspace=0.3, hspace=0.5)
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


def gains_figure(tree: xr.DataTree) -> Figure:
    """Sampled station gains against time, one row per station: |G| (median and 68 % interval per
    segment, at the segment's mean time) and, for visibility fits, the gain phase in degrees. Segments
    without data for a station are NaN in the store and left out."""
    ds = tree["gains"].dataset
    stations = [str(s) for s in ds["station"].values]
    time = np.asarray(ds["segment_time"].values, float)
    panels = [("log_amplitude", "|G|", np.exp)]
    if "phase" in ds:
        panels.append(("phase", "arg G (deg)", np.degrees))
    fig, axes = plt.subplots(len(stations), len(panels), figsize=(3.6 * len(panels) + 1.2, 1.2 * len(stations) + 1.0),
                             squeeze=False, sharex=True)
    for column, (name, label, to_display) in enumerate(panels):
        values = np.asarray(ds[name].values, float)  # (chain, draw, station, segment)
        draws = values.reshape(-1, *values.shape[2:])
        if name == "phase":  # the circular mean as centre, then quantiles of the wrapped offsets
            centre = np.angle(np.sum(np.where(np.isfinite(draws), np.exp(1j * draws), 0), axis=0))
            draws = centre + _wrap(draws - centre)
        for row, station in enumerate(stations):
            ax = axes[row, column]
            mine = draws[:, row, :]
            keep = np.all(np.isfinite(mine), axis=0)
            if keep.any():
                low, mid, high = to_display(np.quantile(mine[:, keep], [0.16, 0.5, 0.84], axis=0))
                ax.errorbar(time[keep], mid, yerr=[mid - low, high - mid], fmt="o", ms=2.5, lw=0.8,
                            color=f"C{row % 10}")
            ax.axhline(1.0 if name == "log_amplitude" else 0.0, color="0.5", lw=0.6, ls=":")
            ax.set_ylabel(f"{station}\n{label}", fontsize=7)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[-1, column].set_xlabel("time (hours UTC)", fontsize=8)
    fig.suptitle(f"{_title(tree)}\nstation gains per {ds.attrs.get('segmentation', 'segment')}: median and 68 % "
                 f"interval (max R-hat {float(ds.attrs.get('max_rhat', math.nan)):.3f})", fontsize=9)
    set_margins(fig, left=0.8, top=0.6, wspace=0.35, hspace=0.15)
    return fig


def snapshot_table(tree: xr.DataTree) -> pd.DataFrame:
    """A snapshot store's per-snapshot rows (parameter, snapshot, time_start, time_end, median, HDI,
    converged, ...) and pooled rows, with each parameter's ``units`` and ``period``."""
    frame = snapshot_summary(tree).reset_index()
    posterior = tree["posterior"].dataset
    frame["units"] = [str(posterior[p].attrs.get("units", "")) if p in posterior else "" for p in frame["parameter"]]
    frame["period"] = [float(posterior[p].attrs.get("period", math.nan)) if p in posterior else math.nan
                       for p in frame["parameter"]]
    return frame


def parameter_time_figure(table: pd.DataFrame, title: str = "") -> Figure:
    """One panel per key parameter against time (hours UTC): each snapshot's median and 94 % HDI at the
    middle of its window (horizontal bar: the window), hollow = not converged; one series per (epoch,
    model) when the table has those columns; a store's pooled value as a line with its ±1σ band."""
    rows = table[table["snapshot"].astype(str) != "pooled"]
    pooled = table[table["snapshot"].astype(str) == "pooled"]
    names = campaign_parameters(rows.assign(parameter=rows["parameter"]))
    keys = [c for c in ("epoch", "model") if c in rows]
    series = list(rows.groupby(keys, sort=True)) if keys else [((), rows)]
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.3 * len(names) + 0.9), squeeze=False, sharex=True)
    for ax, name in zip(axes[:, 0], names):
        units = ""
        for i, (key, group) in enumerate(series):
            group = group[group["parameter"] == name].sort_values("time_start")
            if not len(group):
                continue
            units = str(group["units"].iloc[0]) if "units" in group else ""
            period = display.display_period(float(group["period"].iloc[0]) if "period" in group else None, units)
            median = display.to_display(np.asarray(group["median"], float), units)
            shift = display.unwrap_series(median, period)
            low = display.to_display(np.asarray(group["hdi_low"], float), units) + shift
            high = display.to_display(np.asarray(group["hdi_high"], float), units) + shift
            median = median + shift
            mid = 0.5 * (np.asarray(group["time_start"], float) + np.asarray(group["time_end"], float))
            half = 0.5 * (np.asarray(group["time_end"], float) - np.asarray(group["time_start"], float))
            colour = f"C{i % 10}"
            label = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,))) or None
            for j, ok in enumerate(np.asarray(group["converged"], bool)):
                ax.errorbar(mid[j], median[j], xerr=half[j], yerr=[[median[j] - low[j]], [high[j] - median[j]]],
                            fmt="o", color=colour, mfc=colour if ok else "none", ms=4, lw=1,
                            label=label if j == 0 else None)
            mine = pooled[pooled["parameter"] == name]
            for k in keys:
                mine = mine[mine[k] == group[k].iloc[0]] if k in mine else mine
            if len(mine):
                value = float(display.to_display(np.asarray(mine["median"], float), units)[0])
                error = float(display.to_display(np.asarray(mine["sd"], float), units)[0])
                if period and np.isfinite(value):  # the pooled angle on the branch of the series
                    value += period * np.round((np.nanmedian(median) - value) / period)
                ax.axhline(value, color=colour, lw=0.8, ls="--")
                ax.axhspan(value - error, value + error, color=colour, alpha=0.15, lw=0)
        ax.set_ylabel(display.axis_label(name, units), fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (hours UTC)")
    if len(series) > 1 or keys:
        axes[0, 0].legend(fontsize=7, loc="best")
    heading = f"{title}\n" if title else ""
    fig.suptitle(f"{heading}median and {HDI_PROB:.0%} HDI per snapshot; dashed: pooled ±1σ",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_fit(store_path, out_dir, *, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Trace, corner, model image, data against model, normalised residuals, uv-coverage and gains plots
    of one store (PNG + SVG each; the last three only where the store has predictions, uv coordinates and
    sampled gains). A snapshot store gets each parameter against time (``parameters_time``) and the lone-fit
    plots of its first snapshot (``snapshot0_*``)."""
    tree = open_fit_store(store_path)
    out_dir = Path(out_dir)
    if is_snapshot_store(tree):
        paths = save_figure(parameter_time_figure(snapshot_table(tree), _title(tree)), out_dir, "parameters_time",
                            formats)
        view = snapshot_view(tree, 0)
        for stem, build in (("trace", trace_figure), ("corner", corner_figure), ("residuals", residual_figure)):
            paths.extend(save_figure(build(view), out_dir, f"snapshot0_{stem}", formats))
        return paths
    builders = {
        "trace": trace_figure,
        "corner": corner_figure,
        "image": image_figure,
        "residuals": residual_figure,
        "normalised_residuals": normalised_residual_figure,
        "uv_coverage": uv_figure,
        "gains": gains_figure,
    }
    optional = {  # parts a store need not have
        "uv_coverage": "uv_u" in tree["observed_data"].dataset,
        "gains": "gains" in tree.children,
        "normalised_residuals": "posterior_predictive" in tree.children,
    }
    paths: list[Path] = []
    for stem, build in builders.items():
        if optional.get(stem, True):
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


def parameter_meanings(fits: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(model, parameter) -> what the parameter means in that model, from the model built from the spec
    its stores record (``Param.description``: "ring diameter", "outer disk diameter", ...)."""
    from vlbicore.models import build_model

    meanings: dict[tuple[str, str], str] = {}
    if "model_spec" not in fits:
        return meanings
    for model_id, spec in fits.drop_duplicates("model")[["model", "model_spec"]].itertuples(index=False):
        try:
            model = build_model(json.loads(spec) if isinstance(spec, str) else spec)
        except Exception:  # an unknown or old spec: its parameters get a panel of their own (meaning unknown)
            continue
        for q in model.component.params:
            meanings[(str(model_id), q.name)] = q.description
    return meanings


def meaning_of(meanings: dict, model: str, parameter: str) -> str:
    """The parameter's meaning in ``model``; when unknown, one of its own, so it shares no axis."""
    return meanings.get((model, parameter)) or display.derived_meaning(parameter) or f"{parameter} of {model}"


def _epoch_positions(fits: pd.DataFrame) -> dict[str, int]:
    columns = [c for c in ("epoch", "source", "date", "band") if c in fits]
    epochs = fits[columns].drop_duplicates("epoch").sort_values(columns[1:] + ["epoch"])
    return {e: i for i, e in enumerate(epochs["epoch"])}


def _column(frame: pd.DataFrame, name: str, default) -> pd.Series:
    return frame[name] if name in frame else pd.Series([default] * len(frame), index=frame.index)


def _epoch_axis(ax, positions: dict[str, int]) -> None:
    ax.set_xlim(-0.5, len(positions) - 0.5)
    ax.set_xticks(list(positions.values()))
    ax.set_xticklabels(list(positions), rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("epoch")


def parameter_panels(summary: pd.DataFrame, fits: pd.DataFrame, limit: int = MAX_CAMPAIGN_PANELS):
    """[(parameter, meaning, [models])]: one panel per parameter and meaning, in key-parameter order."""
    meanings = parameter_meanings(fits)
    panels: dict[tuple[str, str], list[str]] = {}
    for param in campaign_parameters(summary):
        for model in sorted(summary.loc[summary["parameter"] == param, "model"].unique()):
            panels.setdefault((param, meaning_of(meanings, model, param)), []).append(model)
    return [(param, meaning, models) for (param, meaning), models in panels.items()][:limit]


def parameter_epoch_figure(summary: pd.DataFrame, fits: pd.DataFrame, title: str = "") -> Figure:
    """One panel per key parameter and meaning: median and 94 % HDI per epoch in displayed units (angles in
    degrees, each model's series unwrapped to stay contiguous); colour = band, marker = model, hollow =
    not converged. The panel title says what the parameter means and which models share the axis."""
    panels = parameter_panels(summary, fits)
    positions = _epoch_positions(fits)
    models = sorted(summary["model"].unique())
    bands = sorted(summary["band"].astype(str).unique())
    colours = {b: f"C{i}" for i, b in enumerate(bands)}
    markers = dict(zip(models, "osD^v<>ph*"))
    offsets = {m: (i - (len(models) - 1) / 2) * 0.12 for i, m in enumerate(models)}
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6, 0.6 * len(positions) + 3), 2.5 * len(panels) + 0.9),
                             squeeze=False, sharex=True)
    for ax, (param, meaning, panel_models) in zip(axes[:, 0], panels):
        units = ""
        for model in panel_models:
            rows = summary[(summary["parameter"] == param) & (summary["model"] == model)]
            rows = rows[rows["epoch"].isin(positions)]
            rows = rows.assign(position=rows["epoch"].map(positions)).sort_values("position")
            units = str(_column(rows, "units", "").iloc[0]) if len(rows) else units
            period = display.display_period(float(_column(rows, "period", math.nan).iloc[0]) if len(rows) else None, units)
            median = display.to_display(rows["median"], units)
            shift = display.unwrap_series(median, period)  # a PA series crossing ±180° stays in one band
            low, high = display.to_display(rows["hdi_low"], units) + shift, display.to_display(rows["hdi_high"], units) + shift
            median = median + shift
            for (_, r), m, lo, hi in zip(rows.iterrows(), median, low, high):
                colour = colours[str(r["band"])]
                ax.errorbar(r["position"] + offsets[model], m, yerr=[[m - lo], [hi - m]], fmt=markers[model],
                            color=colour, mfc=colour if bool(r["converged"]) else "none", ms=5, lw=1)
        ax.set_ylabel(display.axis_label(param, units), fontsize=8)
        ax.set_title(f"{param}: {meaning} — {', '.join(panel_models)}", fontsize=8, loc="left")
        ax.grid(alpha=0.3)
    _epoch_axis(axes[-1, 0], positions)
    handles = [plt.Line2D([], [], ls="", marker=markers[m], color="k", label=m) for m in models]
    handles += [plt.Line2D([], [], ls="", marker="s", color=colours[b], label=f"band {b}") for b in bands]
    handles.append(plt.Line2D([], [], ls="", marker="o", color="k", mfc="none", label="not converged"))
    height = fig.get_size_inches()[1]  # a band of fixed height on top: legend, then the title
    fig.legend(handles=handles, fontsize=7, ncol=min(len(handles), 6), loc="upper center", frameon=False)
    fig.suptitle(f"{title + ': ' if title else ''}posterior median and {HDI_PROB:.0%} HDI per epoch", fontsize=10,
                 y=1 - 0.22 / height, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))
    return fig


def loo_figure(loo: pd.DataFrame, fits: pd.DataFrame, title: str = "") -> Figure:
    """elpd_loo difference to each epoch's best model ± its standard error; one panel."""
    positions = _epoch_positions(fits)
    models = sorted(loo["model"].unique()) if len(loo) else []
    markers = dict(zip(models, "osD^v<>ph*"))
    offsets = {m: (i - (len(models) - 1) / 2) * 0.12 for i, m in enumerate(models)}
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(positions) + 3), 3.8))
    for model in models:
        rows = loo[(loo["model"] == model) & loo["epoch"].isin(positions)]
        x = [positions[e] + offsets[model] for e in rows["epoch"]]
        ax.errorbar(x, -rows["elpd_diff"], yerr=rows["dse"], fmt=markers[model], ms=5, lw=1, label=model)
    ax.axhline(0, color="0.5", lw=0.8)
    _epoch_axis(ax, positions)
    ax.set_ylabel("elpd_loo − best (nats, ± dse)")
    ax.set_title(f"{title + ': ' if title else ''}PSIS-LOO model comparison per epoch (0 = preferred)", fontsize=10)
    if models:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def overview_figure(fits: pd.DataFrame, loo: pd.DataFrame, problems: pd.DataFrame | None = None,
                    title: str = "") -> Figure:
    """Epoch × model grid: green converged, red not, grey missing; a star marks each epoch's LOO winner,
    a cross a fit found not adequate, a diamond a multimodal posterior."""
    positions = _epoch_positions(fits)
    models = sorted(fits["model"].unique())
    grid = np.full((len(models), len(positions)), np.nan)
    for _, r in fits.iterrows():
        grid[models.index(r["model"]), positions[r["epoch"]]] = 1.0 if bool(r["converged"]) else 0.0
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(positions) + 3), 0.6 * len(models) + 2.8))
    cmap = matplotlib.colors.ListedColormap(["#d9534f", "#5cb85c"]).with_extremes(bad="0.85")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    winners = loo[loo["rank"] == 0] if len(loo) else loo
    for _, r in winners.iterrows():
        if r["epoch"] in positions and r["model"] in models:
            # a marker, not a ★ glyph: the default fonts of many installs lack it
            ax.plot(positions[r["epoch"]], models.index(r["model"]), marker="*", color="k", ms=11, ls="none")
    for column, marker, offset in (("adequate", "x", -0.25), ("multimodal", "D", 0.25)):
        flagged = fits[_column(fits, column, None).map(lambda v: v is not None and bool(v) == (column == "multimodal"))
                       & _column(fits, column, None).notna()]
        for _, r in flagged.iterrows():
            ax.plot(positions[r["epoch"]] + offset, models.index(r["model"]), marker=marker, color="k", ms=6,
                    mfc="none", ls="none")
    _epoch_axis(ax, positions)
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels(models, fontsize=8)
    ax.set_ylabel("model")
    n_bad = int((~fits["converged"].astype(bool)).sum())
    n_problems = 0 if problems is None else len(problems)
    ax.set_title(f"{title + ': ' if title else ''}{len(fits)} fits, {n_bad} not converged (red), {n_problems} "
                 "problem(s) reported\n* = LOO preferred, x = not adequate, ◇ = multimodal", fontsize=9)
    fig.tight_layout()
    return fig


def sources_of(fits: pd.DataFrame) -> list[str]:
    return sorted(_column(fits, "source", "").fillna("").astype(str).unique())


def source_tables(tables: dict[str, pd.DataFrame], source: str) -> dict[str, pd.DataFrame]:
    """The gather tables restricted to one source's epochs."""
    fits = tables["fits"][_column(tables["fits"], "source", "").fillna("").astype(str) == source]
    epochs = set(fits["epoch"])
    pick = lambda frame: frame[frame["epoch"].isin(epochs)] if len(frame) else frame
    out = {"fits": fits, "summary": pick(tables["summary"]), "loo": pick(tables["loo"]),
           "problems": pick(tables["problems"])}
    if "snapshots" in tables:
        out["snapshots"] = pick(tables["snapshots"])
    return out


def plot_sources(tables: dict[str, pd.DataFrame], out_dir, *, formats: Iterable[str] = FORMATS) -> dict[str, dict[str, list[Path]]]:
    """Overview, parameters-vs-epoch and LOO plots per source: ``{source: {plot: [paths]}}``. Files are
    ``<plot>.<fmt>`` for a one-source campaign, ``<plot>_<source>.<fmt>`` otherwise."""
    out_dir = Path(out_dir)
    sources = sources_of(tables["fits"])
    out = {}
    for source in sources:
        part = source_tables(tables, source)
        suffix = "" if len(sources) == 1 else "_" + "".join(c if c.isalnum() or c in "-_." else "-" for c in source or "unknown")
        title = source if len(sources) > 1 else ""
        figures = {
            "overview": lambda: overview_figure(part["fits"], part["loo"], part["problems"], title),
            "parameters_vs_epoch": lambda: parameter_epoch_figure(part["summary"], part["fits"], title),
            "loo_comparison": lambda: loo_figure(part["loo"], part["fits"], title),
        }
        if len(part.get("snapshots", ())):  # snapshot fits: each parameter against time
            figures["parameters_vs_time"] = lambda: parameter_time_figure(_with_pooled(part), title)
        out[source] = {name: save_figure(build(), out_dir, name + suffix, formats) for name, build in figures.items()}
    return out


def _with_pooled(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The gather's snapshot rows plus each snapshot store's pooled rows (its ``summary`` rows)."""
    snapshots = tables["snapshots"]
    keys = set(zip(snapshots["epoch"], snapshots["model"]))
    summary = tables["summary"]
    pooled = summary[[(e, m) in keys for e, m in zip(summary["epoch"], summary["model"])]]
    pooled = pooled.assign(snapshot="pooled", time_start=np.nan, time_end=np.nan)
    return pd.concat([snapshots.assign(snapshot=snapshots["snapshot"].astype(object)), pooled[
        [c for c in snapshots.columns if c in pooled.columns]]], ignore_index=True)


def plot_campaign(gather_dir, out_dir, *, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Parameter-vs-epoch, LOO comparison and overview plots from a gather directory, per source."""
    from vlbicore.survey.gather import load_gathered

    tables = load_gathered(gather_dir)
    if tables["fits"].empty:
        raise VlbiError(f"{gather_dir}: the gather holds no fits; check problems.csv")
    return [path for plots in plot_sources(tables, out_dir, formats=formats).values()
            for paths in plots.values() for path in paths]
