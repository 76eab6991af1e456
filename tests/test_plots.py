"""Per-fit and campaign plots render with the expected panels; the HTML report builds and flags bad fits."""
import re

import numpy as np
import pytest

from vlbicore.survey.gather import gather_stores, load_gathered
from vlbicore.survey.plots import (
    campaign_parameters,
    corner_figure,
    image_figure,
    loo_figure,
    overview_figure,
    parameter_epoch_figure,
    plot_campaign,
    plot_fit,
    residual_figure,
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
    assert stems == ["corner", "image", "residuals", "trace", "uv_coverage"]
    assert sorted({p.suffix for p in paths}) == [".png", ".svg"]
    assert _nonempty(paths)


def test_campaign_plots(gathered, tmp_path):
    _, root = gathered
    tables = load_gathered(root / "gather")
    params = campaign_parameters(tables["summary"])
    assert params == ["d", "alpha"]  # the key parameters present, diameter first
    assert len(parameter_epoch_figure(tables["summary"], tables["fits"]).axes) == len(params)
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
    linked = re.findall(r'src="(fits/[^"]+\.png)"', page)
    assert len(linked) == 4 * 5 and all((tmp_path / "report" / p).exists() for p in linked)
