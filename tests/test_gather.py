"""Gather over synthetic stores (Dask LocalCluster and an external scheduler) and PSIS-LOO model comparison."""
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import norm

from vlbicore.survey.compare import compare_models, compare_stores, loo
from vlbicore.errors import VlbiError
from vlbicore.survey.gather import gather_stores, load_gathered, open_posteriors
from vlbicore.store import summary_table, write_fit_store
from vlbicore.testing import synthetic_fit_inputs

EPOCHS = [("2017-04-05-lo", "2017-04-05", "lo"), ("2017-04-05-hi", "2017-04-05", "hi"), ("2017-04-11-lo", "2017-04-11", "lo")]
MODELS = {"ring": 0.0, "mring": 0.1}  # offset_bias: "ring" is the correct model, "mring" is off by 1 σ


def _campaign(root):
    """3 epochs × 2 models (one fit not converged), a corrupt store, a foreign-schema store, a missing path."""
    paths, seed = [], 0
    for e, (epoch, date, band) in enumerate(EPOCHS):
        for model, bias in MODELS.items():
            seed += 1
            converged = not (epoch == "2017-04-11-lo" and model == "mring")
            inputs = synthetic_fit_inputs(
                seed, epoch=epoch, model=model, date=date, band=band, n_draws=250, diameter=38.0 + 2 * e,
                offset_bias=bias, converged=converged, data_seed=e,
            )
            paths.append(write_fit_store(root / f"{epoch}_{model}.zarr", **inputs))
    corrupt = write_fit_store(root / "corrupt.zarr", **synthetic_fit_inputs(99, epoch="2017-04-06-lo", n_draws=20))
    for chunk in (corrupt / "posterior" / "d").glob("0.*"):
        chunk.write_bytes(b"\x00garbage")
    foreign = write_fit_store(root / "foreign.zarr", **synthetic_fit_inputs(98, epoch="2017-04-07-lo", n_draws=20))
    for name in (".zattrs", ".zmetadata"):
        meta = json.loads((foreign / name).read_text())
        (meta if name == ".zattrs" else meta["metadata"][".zattrs"])["vlbicore_schema"] = 999
        (foreign / name).write_text(json.dumps(meta))
    return paths, [corrupt, foreign, root / "missing.zarr"]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("campaign")
    good, bad = _campaign(root)
    result = gather_stores(good + bad, root / "gather", n_workers=2)
    return good, bad, result, root / "gather"


def test_gathered_numbers_equal_each_store_opened_alone(campaign):
    good, _, result, _ = campaign
    assert len(result.fits) == len(good)
    for path in good:
        alone = summary_table(path)
        rows = result.summary[(result.summary["epoch"] == alone.attrs["epoch"]) & (result.summary["model"] == alone.attrs["model_name"])]
        rows = rows.set_index("parameter")
        for param in alone.index:
            for ours, theirs in (("mean", "mean"), ("sd", "sd"), ("median", "median"), ("hdi_low", "hdi_low"), ("hdi_high", "hdi_high"), ("rhat", "rhat"), ("ess_bulk", "ess_bulk")):
                assert rows.loc[param, ours] == pytest.approx(alone.loc[param, theirs], rel=1e-12), (path, param, ours)
        assert bool(rows["converged"].iloc[0]) == alone.attrs["converged"]
        assert rows["reduced_chi2_cphase"].iloc[0] == pytest.approx(alone.attrs["reduced_chi2"]["cphase"])


def test_gathered_zarr_has_epoch_model_parameter_dims_and_epoch_coords(campaign):
    _, _, result, out = campaign
    ds = xr.open_zarr(out / "gathered.zarr")
    assert dict(ds["mean"].sizes) == {"epoch": 3, "model": 2, "parameter": 3}
    assert list(ds["epoch"].values) == ["2017-04-05-hi", "2017-04-05-lo", "2017-04-11-lo"]  # by date, then band
    assert list(ds["band"].values) == ["hi", "lo", "lo"]
    assert list(ds["date"].values) == ["2017-04-05", "2017-04-05", "2017-04-11"]
    value = float(ds["mean"].sel(epoch="2017-04-11-lo", model="ring", parameter="d"))
    row = result.summary.query("epoch == '2017-04-11-lo' and model == 'ring' and parameter == 'd'")
    assert value == pytest.approx(float(row["mean"].iloc[0]))
    assert value == pytest.approx(42.0, abs=0.2)
    assert ds["converged"].sel(epoch="2017-04-11-lo", model="mring").values == 0.0
    assert ds["reduced_chi2"].dims == ("epoch", "model", "product")


def test_open_posteriors_is_lazy_and_agrees_with_the_gather(campaign):
    good, _, result, _ = campaign
    posteriors = open_posteriors(good)
    assert posteriors["d"].dims == ("epoch", "model", "chain", "draw")
    assert posteriors["d"].chunks is not None  # dask-backed, nothing read yet
    assert list(posteriors["band"].values) == ["hi", "lo", "lo"]
    medians = posteriors["d"].median(("chain", "draw")).compute()
    expected = result.summary[result.summary["parameter"] == "d"].set_index(["epoch", "model"])["median"]
    for (epoch, model), value in expected.items():
        assert float(medians.sel(epoch=epoch, model=model)) == pytest.approx(value, rel=1e-12)


def test_problems_are_reported_and_the_rest_still_gathers(campaign):
    _, bad, result, out = campaign
    problems = pd.read_csv(out / "problems.csv")
    by_kind = problems.groupby("problem")["path"].apply(list).to_dict()
    corrupt, foreign, missing = (str(p) for p in bad)
    assert by_kind["unreadable"] == [corrupt, missing]
    assert by_kind["schema"] == [foreign]
    assert [p.endswith("2017-04-11-lo_mring.zarr") for p in by_kind["not_converged"]] == [True]
    assert "R-hat 1.200" in problems.set_index("problem").loc["not_converged", "message"]
    assert all(str(p) in problems["message"].str.cat() for p in bad)  # each error names its store
    assert len(result.problems) == len(problems)
    assert (out / "summary.parquet").exists() and (out / "fits.csv").exists()
    assert pd.read_parquet(out / "summary.parquet").shape == result.summary.shape


def test_loo_prefers_the_correct_model_in_every_epoch(campaign):
    _, _, result, _ = campaign
    winners = result.comparison[result.comparison["rank"] == 0].set_index("epoch")["model"]
    assert winners.to_dict() == {epoch: "ring" for epoch, _, _ in EPOCHS}
    losers = result.comparison[result.comparison["rank"] == 1]
    assert (losers["elpd_diff"] > 2 * losers["dse"]).all()
    assert np.allclose(result.comparison.groupby("epoch")["weight"].sum(), 1.0)
    assert (result.comparison["max_pareto_k"] < 0.7).all()


def test_gather_through_an_external_scheduler_gives_the_same_tables(campaign, tmp_path):
    from distributed import LocalCluster

    good, _, result, _ = campaign
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        again = gather_stores(good[:2], tmp_path / "g", scheduler=cluster.scheduler_address)
    key = ["epoch", "model", "parameter"]
    ours = again.summary.set_index(key).sort_index()
    first = result.summary.set_index(key).loc[ours.index]
    pd.testing.assert_frame_equal(ours[["mean", "hdi_low", "hdi_high"]], first[["mean", "hdi_low", "hdi_high"]])
    assert load_gathered(tmp_path / "g")["fits"].shape[0] == 2


def test_duplicate_epoch_model_is_reported_not_merged(campaign, tmp_path):
    good, _, _, _ = campaign
    result = gather_stores([good[0], good[0]], tmp_path / "dup", n_workers=1)
    assert len(result.fits) == 1
    assert [p["problem"] for p in result.problems] == ["duplicate"]


def test_models_fitted_to_different_observations_are_not_ranked_together(tmp_path):
    a = write_fit_store(tmp_path / "a.zarr", **synthetic_fit_inputs(1, model="ring", n_draws=50, data_seed=0))
    b = write_fit_store(tmp_path / "b.zarr", **synthetic_fit_inputs(2, model="mring", n_draws=50, data_seed=1))
    result = gather_stores([a, b], tmp_path / "g", n_workers=1)
    assert "not_comparable" in [p["problem"] for p in result.problems]
    assert sorted(result.comparison["rank"]) == [0, 0]  # each ranked only within its own data set
    with pytest.raises(VlbiError, match="different observations"):
        compare_stores({"ring": a, "mring": b})


def test_high_pareto_k_is_reported_at_the_arviz_stats_threshold(tmp_path):
    inputs = synthetic_fit_inputs(3, n_draws=250, n_scans=5)  # 1000 draws: good_k = 1 - 1/log10(1000)
    inputs["observed_data"]["cphase"]["values"][0] = 3.0  # an outlier the posterior does not know about
    inputs["log_likelihood"]["cphase"][..., 0] = norm.logpdf(3.0, inputs["posterior"]["offset"], 0.1)
    result = gather_stores([write_fit_store(tmp_path / "outlier.zarr", **inputs)], tmp_path / "g", n_workers=1)
    (problem,) = [p for p in result.problems if p["problem"] == "high_pareto_k"]
    assert "1 of 5 scans have Pareto k > 0.67" in problem["message"]
    row = result.comparison.iloc[0]
    assert row["n_bad_k"] == 1 and row["good_k"] == pytest.approx(2 / 3) and row["max_pareto_k"] > 2 / 3


# ---------------------------------------------------------------------------------------------------
# PSIS-LOO against known answers


def _conjugate_gaussian(y, sigma=1.0, tau=10.0):
    precision = 1 / tau**2 + y.size / sigma**2
    return y.sum() / sigma**2 / precision, 1 / precision


def _posterior_log_lik(y, seed=0):
    """(chain, draw, n) log likelihood of y under draws of its exact posterior (flat-ish prior, σ = 1)."""
    rng = np.random.default_rng(seed)
    mean, var = _conjugate_gaussian(y)
    mu = rng.normal(mean, np.sqrt(var), (4, 1000))
    return norm.logpdf(y[None, None, :], mu[..., None], 1.0)


def test_psis_loo_matches_exact_loo_of_a_conjugate_gaussian():
    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 1.0, 40)
    result = loo(_posterior_log_lik(y))
    exact = []
    for i in range(y.size):
        m, v = _conjugate_gaussian(np.delete(y, i))
        exact.append(norm.logpdf(y[i], m, np.sqrt(v + 1.0)))
    np.testing.assert_allclose(result.pointwise, exact, atol=0.02)
    assert result.elpd_loo == pytest.approx(np.sum(exact), abs=0.05)
    assert 0.4 < result.p_loo < 1.5  # about one effective parameter
    assert result.max_k < 0.5


def test_pareto_k_flags_an_influential_outlier():
    rng = np.random.default_rng(1)
    y = rng.normal(1.0, 1.0, 40)
    y[0] = 15.0
    result = loo(_posterior_log_lik(y))
    assert result.good_k == pytest.approx(0.7)  # arviz-stats: min(1 - 1/log10(S), 0.7), S = 4000
    assert result.pareto_k[0] > result.good_k and result.n_bad_k == 1


def test_compare_refuses_different_numbers_of_observations():
    ll = np.random.default_rng(0).normal(-1, 0.1, (4, 100, 5))
    with pytest.raises(VlbiError, match="different numbers of scans"):
        compare_models({"a": loo(ll), "b": loo(ll[..., :4])})
