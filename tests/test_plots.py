"""Per-fit and campaign plots render with the expected panels, units on every axis, angles in degrees and
contiguous on the circle, the fitted ring on the model image, families of parameters kept apart; the
HTML report builds and flags bad fits (its content in detail: tests/test_report.py)."""
import re

import numpy as np
import pytest

from vlbicore.survey.gather import gather_stores, load_gathered
from matplotlib.patches import Circle

from synthetic_campaign import write_campaign
from vlbicore.survey.plots import (
    best_draw,
    campaign_parameters,
    corner_figure,
    gains_figure,
    image_figure,
    loo_figure,
    normalised_residual_figure,
    normalised_residuals,
    overview_figure,
    parameter_epoch_figure,
    parameter_panels,
    plot_campaign,
    plot_fit,
    posterior_series,
    residual_figure,
    source_tables,
    trace_figure,
    uv_figure,
)
from vlbicore.survey.report import write_report
from vlbicore.store import open_fit_store, write_fit_store
from vlbicore.testing import synthetic_fit_inputs


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    """2 epochs × 2 models (one not converged), gathered."""
    root = tmp_path_factory.mktemp("plots")
    paths, seed = [], 0
    for e, (date, band) in enumerate([("2017-04-05", "lo"), ("2017-04-06", "hi")]):
        for model, bias in (("ring", 0.0), ("mring", 0.1)):
            seed += 1
            inputs = synthetic_fit_inputs(seed, epoch=f"{date}-{band}", model=model, date=date, band=band, n_draws=150,
                                          offset_bias=bias, converged=(seed != 4), data_seed=e)
            paths.append(write_fit_store(root / f"{date}_{model}.zarr", **inputs))
    gather_stores(paths, root / "gather", n_workers=1)
    return paths, root


def _nonempty(paths):
    return all(p.exists() and p.stat().st_size > 500 for p in paths)


def test_fit_figures_have_one_panel_set_per_parameter_and_product(gathered):
    tree = open_fit_store(gathered[0][0])
    n_params = len(tree["posterior"].data_vars)  # d, alpha, offset
    assert len(trace_figure(tree).axes) == 2 * n_params
    assert len(corner_figure(tree).axes) == n_params * (n_params + 1) // 2
    residuals = residual_figure(tree)
    assert len(residuals.axes) == 2 * 2  # (cphase, lcamp) × (vs |uv|, vs time)
    # the 94 % predictive band brackets the predictive median drawn on each panel
    band = residuals.axes[0].collections[0].get_segments()
    assert len(band) == 30
    assert len(uv_figure(tree).axes) == 1


def test_model_image_has_east_to_the_left(gathered):
    tree = open_fit_store(gathered[0][0])
    fig = image_figure(tree)
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    assert left > 0 > right  # relative RA decreases to the right: East left
    image = ax.images[0].get_array()
    assert image.shape == (128, 128) and np.isfinite(image).all() and image.max() > 0


def test_plot_fit_writes_png_and_svg_of_every_plot(gathered, tmp_path):
    paths = plot_fit(gathered[0][0], tmp_path / "fit")
    stems = sorted({p.stem for p in paths})
    assert stems == ["corner", "image", "normalised_residuals", "residuals", "trace", "uv_coverage"]
    assert sorted({p.suffix for p in paths}) == [".png", ".svg"]
    assert _nonempty(paths)


def test_sampled_gains_are_plotted_against_time_per_station(tmp_path):
    """A store with a ``gains`` group gets ``gains.png``: per station |G| and (vis) the gain phase
    against time, median and 68 % interval per segment; phases near ±180° stay on one branch; a segment
    without data for a station is left out, not drawn as NaN."""
    import json

    from vlbicore.likelihood.gains import GainModel

    inputs = synthetic_fit_inputs(1, n_draws=60)
    rng = np.random.default_rng(3)
    log_amplitude = rng.normal(np.log(1.2), 0.02, (4, 60, 3, 5))
    phase = np.pi - 0.05 + rng.normal(0, 0.03, (4, 60, 3, 5))  # straddles +180° (wraps to −180°)
    phase = (phase + np.pi) % (2 * np.pi) - np.pi
    log_amplitude[:, :, 2, 4] = phase[:, :, 2, 4] = np.nan
    gains = {"log_amplitude": log_amplitude, "phase": phase, "stations": ("AA", "LM", "SM"),
             "segment_time": np.linspace(1.0, 9.0, 5), "segment": "scan", "rhat": 1.002}
    attrs = {**inputs["attrs"], "gains": json.dumps(GainModel(method="sampled").to_dict())}
    path = write_fit_store(tmp_path / "g.zarr", **{**inputs, "attrs": attrs}, gains=gains)
    paths = plot_fit(path, tmp_path / "fit")
    assert "gains" in {p.stem for p in paths} and _nonempty(paths)
    fig = gains_figure(open_fit_store(path))
    assert len(fig.axes) == 3 * 2  # 3 stations × (|G|, phase)
    amplitude_points = fig.axes[0].lines[0].get_ydata()  # AA, |G|
    np.testing.assert_allclose(amplitude_points, 1.2, rtol=0.03)
    phase_points = np.concatenate([fig.axes[2 * i + 1].lines[0].get_ydata() for i in range(3)])
    assert np.all(np.abs(np.abs(phase_points) - 177) < 5)  # near ±180°, not averaged to 0°
    assert len(fig.axes[4].lines[0].get_xdata()) == 4  # SM has no data in the last segment
    assert "time (hours UTC)" in fig.axes[-1].get_xlabel()


def test_campaign_plots(gathered, tmp_path):
    _, root = gathered
    tables = load_gathered(root / "gather")
    params = campaign_parameters(tables["summary"])
    assert params == ["d", "alpha"]  # the key parameters present, diameter first
    # both models are rings here: their d shares a panel; alpha is no ring parameter (the synthetic stores
    # add it), so nothing says it means the same in both, and each model's alpha gets its own panel
    panels = parameter_panels(tables["summary"], tables["fits"])
    assert panels == [("d", "ring diameter", ["mring", "ring"]), ("alpha", "alpha of mring", ["mring"]),
                      ("alpha", "alpha of ring", ["ring"])]
    assert len(parameter_epoch_figure(tables["summary"], tables["fits"]).axes) == len(panels)
    assert len(loo_figure(tables["loo"], tables["fits"]).axes) == 1
    overview = overview_figure(tables["fits"], tables["loo"], tables["problems"])
    assert "1 not converged" in overview.axes[0].get_title()
    stars = [line for line in overview.axes[0].lines if line.get_marker() == "*"]
    assert len(stars) == 2  # one LOO winner per epoch
    paths = plot_campaign(root / "gather", tmp_path / "campaign")
    assert sorted(p.name for p in paths) == sorted(
        f"{s}.{f}" for s in ("overview", "parameters_vs_epoch", "loo_comparison") for f in ("png", "svg")
    )
    assert _nonempty(paths)


def test_report_embeds_plots_and_highlights_non_converged_fits(gathered, tmp_path):
    _, root = gathered
    index = write_report(root / "gather", tmp_path / "report")
    page = index.read_text()
    assert page.count("data:image/png;base64,") == 3  # the campaign plots, embedded
    bad_rows = re.findall(r'<tr class="bad">(.*?)</tr>', page)
    assert any("2017-04-06-hi" in row and "mring" in row and "R-hat 1.200" in row for row in bad_rows)
    assert "not_converged" in page  # listed under Problems
    fit_pages = re.findall(r'<a href="(fits/[^"]+/index\.html)">', page)
    assert len(set(fit_pages)) == 4
    for fit_page in set(fit_pages):
        text = (tmp_path / "report" / fit_page).read_text()
        images = re.findall(r'src="([^"]+\.png)"', text)
        assert len(images) == 6 and all((tmp_path / "report" / fit_page).parent.joinpath(i).exists() for i in images)


# --------------------------------------------------------------------------------------------------
# units, degrees, circular wrap, rings, residuals, families (a campaign with units and an angle)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return write_campaign(tmp_path_factory.mktemp("angles"), n_draws=80)


def _store_of(paths, epoch, model):
    return next(open_fit_store(p) for p in paths if (open_fit_store(p).attrs["epoch"], open_fit_store(p).attrs["model_name"]) == (epoch, model))


def test_every_quantity_axis_states_its_unit(campaign):
    paths, _ = campaign
    tree = _store_of(paths, "nan", "1e5")
    trace = trace_figure(tree)
    left = trace.axes[0::2]
    assert [ax.get_ylabel() for ax in left] == ["d (µas)", "alpha (µas)", "offset (dimensionless)", "brightness_PA (deg)"]
    assert trace.axes[-2].get_xlabel() and trace.axes[-1].get_xlabel()
    corner = corner_figure(tree)
    assert {ax.get_xlabel() for ax in corner.axes if ax.get_xlabel()} == {ax.get_ylabel() for ax in trace.axes[0::2]}
    for figure in (residual_figure(tree), normalised_residual_figure(tree), uv_figure(tree), image_figure(tree)):
        for ax in figure.axes:
            if getattr(ax, "_colorbar", None) is not None:  # the colour scale of an image
                assert "(Jy / pixel)" in ax.get_ylabel()
            elif ax.get_images() or ax.lines or ax.collections or ax.patches:
                assert "(" in ax.get_xlabel() and "(" in ax.get_ylabel(), (ax.get_xlabel(), ax.get_ylabel())


def test_angle_draws_are_degrees_and_contiguous_across_180(campaign):
    paths, _ = campaign
    tree = _store_of(paths, "nan", "1e5")
    raw = np.asarray(tree["posterior"]["brightness_PA"].values)
    assert raw.min() < -3 and raw.max() > 3  # stored in radians, on both sides of ±π
    angle = next(s for s in posterior_series(tree) if s.label == "brightness_PA")
    assert angle.units == "deg" and np.ptp(angle.draws) < 60 and 170 < np.median(angle.draws) < 190


def test_campaign_angle_series_stay_contiguous_and_families_keep_their_own_axes(campaign):
    _, gather_dir = campaign
    tables = load_gathered(gather_dir)
    m87 = source_tables(tables, "M87")
    panels = parameter_panels(m87["summary"], m87["fits"])
    assert ("d", "ring diameter", ["1e5"]) in panels and ("d", "outer disk diameter", ["crescent"]) in panels
    figure = parameter_epoch_figure(m87["summary"], m87["fits"])
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert "d: ring diameter — 1e5" in titles and "d: outer disk diameter — crescent" in titles
    angle_axes = figure.axes[[i for i, t in enumerate(titles) if t.startswith("brightness_PA")][0]]
    assert angle_axes.get_ylabel() == "brightness_PA (deg)"
    medians = np.concatenate([line.get_ydata() for line in angle_axes.lines if len(line.get_ydata())])
    # medians +178° and -178° on consecutive epochs: one band around 180°, not two at the plot's edges
    assert np.ptp(medians) < 20 and 170 < medians.mean() < 190
    assert all(ax.get_ylabel().endswith(")") for ax in figure.axes)


def test_model_image_draws_the_fitted_ring(campaign):
    paths, _ = campaign
    tree = _store_of(paths, "nan", "1e5")
    ax = image_figure(tree).axes[0]
    circles = [p for p in ax.patches if isinstance(p, Circle)]
    assert len(circles) == 1
    assert circles[0].get_radius() == pytest.approx(best_draw(tree)["d"] / 2)
    assert "ring diameter" in circles[0].get_label() and "94% HDI" in circles[0].get_label()


def test_normalised_residuals_are_data_minus_the_predictive_median_over_sigma(campaign):
    paths, _ = campaign
    tree = _store_of(paths, "NA", "crescent")
    observed, predictive = tree["observed_data"].dataset, tree["posterior_predictive"].dataset
    expected = (observed["lcamp"].values - np.median(predictive["lcamp"].values.reshape(-1, observed.sizes["lcamp_dim"]), axis=0)) \
        / observed["lcamp_sigma"].values
    assert normalised_residuals("lcamp", observed, predictive)["residual"] == pytest.approx(expected)
    # a closure phase near +179° against a model at -179° is 2° off, not 358°
    shifted = observed.copy()
    shifted["cphase"] = shifted["cphase"] * 0 + np.deg2rad(179.0)
    near = predictive.copy()
    near["cphase"] = near["cphase"] * 0 + np.deg2rad(-179.0)
    wrapped = normalised_residuals("cphase", shifted, near)["residual"] * observed["cphase_sigma"].values
    assert np.rad2deg(wrapped) == pytest.approx(np.full(observed.sizes["cphase_dim"], -2.0))
    figure = normalised_residual_figure(tree)
    assert len(figure.axes) == 3 * 2 and all(any(line.get_label() == "N(0, 1)" for line in ax.lines) for ax in figure.axes[2::3])


def test_campaign_plots_are_drawn_per_source(campaign, tmp_path):
    _, gather_dir = campaign
    paths = plot_campaign(gather_dir, tmp_path / "plots", formats=("png",))
    assert sorted(p.name for p in paths) == sorted(f"{kind}_{source}.png" for kind in ("overview", "parameters_vs_epoch", "loo_comparison")
                                                   for source in ("3C279", "M87"))
