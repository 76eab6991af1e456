"""Leave-one-scan-out PSIS-LOO and model comparison (survey.compare) against exact answers and arviz-stats."""
import numpy as np
import pytest
import xarray as xr
from arviz_stats import compare as arviz_compare
from arviz_stats import loo as arviz_loo
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm

from vlbicore.errors import VlbiError
from vlbicore.store import build_fit_tree, write_fit_store
from vlbicore.survey.compare import compare_models, compare_stores, loo, loo_from_tree
from vlbicore.survey.gather import gather_stores
from vlbicore.testing import synthetic_fit_inputs


def _inputs(log_lik, values, scans=None, **attrs):
    """write_fit_store/build_fit_tree arguments for a fit with the given per-kind log likelihood and data."""
    kinds = list(log_lik)
    chains, draws = next(iter(log_lik.values())).shape[:2]
    inputs = synthetic_fit_inputs(0, n_chains=chains, n_draws=draws)
    inputs["log_likelihood"] = log_lik
    inputs["posterior_predictive"] = None
    inputs["observed_data"] = {
        kind: {"values": values[kind], "sigma": np.ones(len(values[kind])), "time": np.arange(len(values[kind])) * 0.1,
               **({"scan": scans[kind]} if scans is not None else {})}
        for kind in kinds
    }
    inputs["diagnostics"].update(reduced_chi2={k: 1.0 for k in kinds}, n_data={k: len(values[k]) for k in kinds})
    inputs["attrs"].update(products=kinds, **attrs)
    return inputs


# ---------------------------------------------------------------------------------------------------
# The unit is one scan


def _log_marginal(y, prior_means, prior_weights, tau):
    """log p(y) for y_j ~ N(θ, 1), θ ~ Σ_m w_m N(a_m, τ²): y ~ Σ_m w_m N(a_m 1, I + τ² 11ᵀ)."""
    cov = np.eye(y.size) + tau**2
    return logsumexp([np.log(w) + multivariate_normal.logpdf(y, np.full(y.size, a), cov)
                      for a, w in zip(prior_means, prior_weights)])


def _exact_leave_one_scan_out(y, scan, prior_means, prior_weights, tau):
    full = _log_marginal(y, prior_means, prior_weights, tau)
    return np.array([full - _log_marginal(y[scan != s], prior_means, prior_weights, tau) for s in np.unique(scan)])


def _scan_data(n_scans=8, per_scan=3, seed=0, mean=0.0):
    """y split over two kinds (cphase: the first two data of each scan, lcamp: the third)."""
    y = np.random.default_rng(seed).normal(0.0, 1.0, n_scans * per_scan)
    y += mean - y.mean()
    scan = np.repeat(np.arange(n_scans), per_scan)
    first = np.arange(y.size) % per_scan < per_scan - 1
    return y, scan, {"cphase": first, "lcamp": ~first}


def _by_kind(array, parts):
    return {kind: array[..., mask] for kind, mask in parts.items()}


def test_loo_leaves_out_whole_scans_of_every_kind_and_matches_exact_leave_one_scan_out():
    y, scan, parts = _scan_data()
    tau = 3.0  # a single Gaussian prior: conjugate posterior N(mean, var)
    var = 1 / (1 / tau**2 + y.size)
    mean = var * y.sum()
    theta = np.random.default_rng(1).normal(mean, np.sqrt(var), (4, 2000))
    ll = norm.logpdf(y, theta[..., None], 1.0)
    tree = build_fit_tree(**_inputs(_by_kind(ll, parts), _by_kind(y, parts), _by_kind(scan, parts)))
    result = loo_from_tree(tree)
    exact = _exact_leave_one_scan_out(y, scan, [0.0], [1.0], tau)
    assert result.pointwise.shape == (8,) and result.unit == "scan" and result.n_data == y.size
    np.testing.assert_allclose(result.pointwise, exact, atol=0.02)
    assert result.elpd_loo == pytest.approx(exact.sum(), abs=0.05)


def _cholesky_terms(x, mean, cov):
    """Per-datum Cholesky conditionals of log N(x; mean, cov) (last axis), which sum to the joint density."""
    chol = np.linalg.cholesky(cov)
    r = np.linalg.solve(chol, (x - mean)[..., None])[..., 0]
    return -0.5 * r**2 - np.log(np.diag(chol)) - 0.5 * np.log(2 * np.pi)


def test_scan_loo_does_not_depend_on_which_minimal_closure_set_was_chosen():
    """Closure phases of 3 triangles per scan with covariance; another minimal set is T x with |det T| = 1
    (triangles replaced by sums of two, in another order): its per-datum conditionals differ, its scan
    densities do not."""
    rng = np.random.default_rng(2)
    n_scans = 10
    cov = 0.01 * (np.eye(3) + 0.5 * (1 - np.eye(3)))
    T = np.array([[1.0, 1, 0], [0, 1, 0], [0, 1, 1]])
    x = rng.multivariate_normal(np.zeros(3), cov, n_scans)
    theta = rng.normal(0.0, 0.03, (4, 500))
    trees, per_datum = [], []
    for values, covariance, transform in ((x, cov, np.eye(3)), (x @ T.T, T @ cov @ T.T, T)):
        predicted = theta[..., None, None] * transform.sum(axis=1)  # every closure of the set predicted by θ
        ll = _cholesky_terms(values, predicted, covariance).reshape(4, 500, -1)
        per_datum.append(ll)
        scan = np.repeat(np.arange(n_scans), 3)
        trees.append(build_fit_tree(**_inputs({"cphase": ll}, {"cphase": values.ravel()}, {"cphase": scan}, covariance=True)))
    assert not np.allclose(per_datum[0], per_datum[1])  # the per-closure terms are not the same numbers
    a, b = (loo_from_tree(t) for t in trees)
    np.testing.assert_allclose(a.pointwise, b.pointwise, rtol=0, atol=1e-9)
    assert a.elpd_loo == pytest.approx(b.elpd_loo, abs=1e-8)
    # and it is arviz-stats' PSIS-LOO of the scans' joint densities
    joint = np.stack([multivariate_normal.logpdf(x - t, np.zeros(3), cov) for t in theta.ravel()]).reshape(4, 500, n_scans)
    reference = arviz_loo(xr.DataTree.from_dict({"log_likelihood": xr.Dataset({"ll": (("chain", "draw", "scan"), joint)})}),
                          var_name="ll", reff=1.0, pointwise=True)
    np.testing.assert_allclose(a.pointwise, reference.elpd_i.values, atol=1e-9)
    np.testing.assert_allclose(a.pareto_k, reference.pareto_k.values, atol=1e-9)
    assert (a.se, a.p_loo, a.good_k) == pytest.approx((reference.se, reference.p, reference.good_k), abs=1e-9)


def test_a_store_without_scans_falls_back_to_time_stamps():
    inputs = synthetic_fit_inputs(0, n_draws=100)
    result = loo_from_tree(build_fit_tree(**inputs))
    assert result.unit == "time" and result.n_units == 50  # synthetic times are all distinct
    with_scans = loo_from_tree(build_fit_tree(**synthetic_fit_inputs(0, n_draws=100, n_scans=6)))
    assert with_scans.unit == "scan" and with_scans.n_units == 6 and with_scans.n_data == 50


# ---------------------------------------------------------------------------------------------------
# Chains weighted by mode mass


def test_chain_weighted_loo_matches_exact_loo_of_a_two_mode_posterior():
    """θ ~ ½N(-1, 0.2²) + ½N(1, 0.2²): a posterior with two modes of masses W; chains 0-1 sample one mode,
    2-3 the other, weighted W/2 each; exact leave-one-scan-out from the marginal likelihoods."""
    y, scan, parts = _scan_data(mean=0.035)
    means, tau = np.array([-1.0, 1.0]), 0.2
    var = 1 / (1 / tau**2 + y.size)
    post_means = var * (means / tau**2 + y.sum())
    log_mass = [multivariate_normal.logpdf(y, np.full(y.size, a), np.eye(y.size) + tau**2) for a in means]
    mass = np.exp(log_mass - logsumexp(log_mass))
    assert 0.15 < mass[0] < 0.45  # two modes of clearly unequal mass
    rng = np.random.default_rng(3)
    theta = np.concatenate([rng.normal(post_means[m], np.sqrt(var), (2, 2000)) for m in (0, 1)])
    chain_weight = np.repeat(mass, 2) / 2
    ll = norm.logpdf(y, theta[..., None], 1.0)
    tree = build_fit_tree(**_inputs(_by_kind(ll, parts), _by_kind(y, parts), _by_kind(scan, parts)))
    equal = loo_from_tree(tree)
    tree["diagnostics"] = tree["diagnostics"].to_dataset().assign(chain_weight=("chain", chain_weight))
    weighted = loo_from_tree(tree)

    exact = _exact_leave_one_scan_out(y, scan, means, [0.5, 0.5], tau)
    np.testing.assert_allclose(weighted.pointwise, exact, atol=0.05)
    assert weighted.elpd_loo == pytest.approx(exact.sum(), abs=0.12)
    assert abs(equal.elpd_loo - exact.sum()) > 0.3  # equal chain weights are measurably wrong here
    # p_loo = lppd - elpd_loo with the posterior's lppd: per scan, Σ_m W_m N(y_s; μ_m 1, I + var 11ᵀ)
    lppd = [logsumexp([np.log(mass[m]) + multivariate_normal.logpdf(y[scan == s], np.full(3, post_means[m]), np.eye(3) + var)
                       for m in (0, 1)]) for s in np.unique(scan)]
    assert weighted.p_loo == pytest.approx(np.sum(lppd) - exact.sum(), abs=0.1)
    assert weighted.chain_weighted and weighted.max_k < weighted.good_k


def test_equal_chain_weights_give_the_unweighted_loo():
    inputs = synthetic_fit_inputs(0, n_draws=200, n_scans=5)
    tree = build_fit_tree(**inputs)
    plain = loo_from_tree(tree)
    tree["diagnostics"] = tree["diagnostics"].to_dataset().assign(chain_weight=("chain", np.full(4, 0.25)))
    weighted = loo_from_tree(tree)
    np.testing.assert_allclose(weighted.pointwise, plain.pointwise, atol=1e-10)
    assert weighted.p_loo == pytest.approx(plain.p_loo, abs=1e-8)
    tree["diagnostics"] = tree["diagnostics"].to_dataset().assign(chain_weight=("chain", np.full(4, 0.3)))
    with pytest.raises(VlbiError, match="chain_weight.*summing to 1"):
        loo_from_tree(tree)


# ---------------------------------------------------------------------------------------------------
# Weights: stacking (default) or pseudo-BMA+, from arviz-stats


def _scan_sums(path):
    """(chain, draw, scan) sums of a store's log likelihood, computed here independently, per scan."""
    tree = xr.open_datatree(path, engine="zarr")
    ll, obs = tree["log_likelihood"].dataset, tree["observed_data"].dataset
    scans = np.unique(np.concatenate([obs[f"{k}_scan"].values for k in ll.data_vars]))
    return np.stack([sum(ll[k].values[..., obs[f"{k}_scan"].values == s].sum(axis=-1) for k in ll.data_vars) for s in scans], axis=-1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pandas, inside the reference arviz_compare
@pytest.mark.parametrize("method, arviz_method", [("stacking", "stacking"), ("pseudo-BMA+", "BB-pseudo-BMA")])
def test_compare_stores_is_arviz_stats_on_scan_sums(tmp_path, method, arviz_method):
    paths = {model: write_fit_store(tmp_path / f"{model}.zarr", **synthetic_fit_inputs(
        seed, model=model, n_draws=300, offset_bias=bias, n_scans=12)) for seed, (model, bias) in enumerate(
        (("ring", 0.0), ("mring", 0.02), ("crescent", 0.04)))}
    kwargs = {} if method == "stacking" else {"method": method}
    ours = compare_stores(paths, **kwargs)
    reference = {m: arviz_loo(xr.DataTree.from_dict({"log_likelihood": xr.Dataset({"ll": (("chain", "draw", "scan"), _scan_sums(p))})}),
                              var_name="ll", reff=1.0, pointwise=True) for m, p in paths.items()}
    theirs = arviz_compare(reference, method=arviz_method)
    assert list(ours.index) == list(theirs.index)
    np.testing.assert_allclose(ours["weight"], theirs["weight"], atol=1e-6)
    np.testing.assert_allclose(ours[["elpd_loo", "p_loo", "elpd_diff", "dse"]], theirs[["elpd", "p", "elpd_diff", "dse"]], atol=1e-9)
    np.testing.assert_allclose(ours["se"], [reference[m].se for m in ours.index], atol=1e-9)
    assert (ours["weight_method"] == method.lower()).all() and (ours["n_units"] == 12).all()


def _complementary(n_scans=20, seed=4):
    """Model a predicts the first half of the scans well and b the second, a slightly better in total."""
    rng = np.random.default_rng(seed)
    base = rng.normal(-3.0, 0.05, (4, 500, n_scans))
    half = np.arange(n_scans) < n_scans // 2
    return loo(base - np.where(half, 0.0, 2.0)), loo(base - np.where(half, 2.5, 0.0))


def test_weights_are_stacking_not_pseudo_bma():
    a, b = _complementary()
    assert a.elpd_loo - b.elpd_loo == pytest.approx(5.0, abs=0.2)
    table = compare_models({"a": a, "b": b})
    # pseudo-BMA would give b exp(-5)/(1 + exp(-5)) = 0.007; stacking weighs the two complementary models
    assert table.loc["b", "weight"] == pytest.approx(0.5, abs=0.15)
    assert table["weight"].sum() == pytest.approx(1.0) and (table["weight_method"] == "stacking").all()
    plus = compare_models({"a": a, "b": b}, method="pseudo-BMA+")
    assert 0.05 < plus.loc["b", "weight"] < 0.5  # the bootstrap sees the per-scan spread of the difference
    with pytest.raises(VlbiError, match="not offered; use stacking"):
        compare_models({"a": a, "b": b}, method="pseudo-BMA")


def test_stacking_weights_survive_scans_of_very_low_density():
    shifted = {"a": loo(np.zeros((4, 500, 20)) - 1000.0 + np.random.default_rng(5).normal(0, 0.05, (4, 500, 20))),
               "b": loo(np.zeros((4, 500, 20)) - 1000.5 + np.random.default_rng(6).normal(0, 0.05, (4, 500, 20)))}
    table = compare_models(shifted)  # exp(-1000) underflows: arviz-stats alone returns 0.5 / 0.5
    assert table.loc["a", "weight"] > 0.99 and table.loc["a", "rank"] == 0
    assert np.isfinite(table["weight"]).all()


# ---------------------------------------------------------------------------------------------------
# Fits of different data variables are refused


def _amp_store(path, amp_likelihood, seed, **attrs):
    inputs = synthetic_fit_inputs(seed, model=path.stem, n_draws=100, n_amp=12, n_scans=6, amp_likelihood=amp_likelihood)
    inputs["attrs"].update(attrs)
    return write_fit_store(path, **inputs)


def test_rice_and_gauss_amplitude_fits_are_not_compared(tmp_path):
    gauss = _amp_store(tmp_path / "gauss.zarr", "gauss", 1)
    rice = _amp_store(tmp_path / "rice.zarr", "rice", 2)
    with pytest.raises(VlbiError) as refused:
        compare_stores({"gauss": gauss, "rice": rice})
    message = str(refused.value)
    assert "\n" not in message and str(gauss) in message and str(rice) in message
    assert "amp is the debiased amplitude" in message and "raw amplitude" in message and "amp_likelihood" in message
    result = gather_stores([gauss, rice], tmp_path / "g", n_workers=1)
    problems = [p for p in result.problems if p["problem"] == "not_comparable"]
    assert len(problems) == 1 and "raw amplitude (rice)" in problems[0]["message"]
    assert sorted(result.comparison["rank"]) == [0, 0] and sorted(result.comparison["data_set"]) == [0, 1]


def test_other_models_of_the_same_data_stay_comparable(tmp_path):
    """Covariance, systematic and noise settings model the same variables; amp_likelihood without amp too."""
    a = _amp_store(tmp_path / "a.zarr", "gauss", 1, covariance=False, systematic=0.0)
    b = _amp_store(tmp_path / "b.zarr", None, 2, covariance=True, systematic=0.05)  # absent = the default, gauss
    assert list(compare_stores({"a": a, "b": b})["rank"]) == [0, 1]
    no_amp = {name: write_fit_store(tmp_path / f"{name}.zarr", **synthetic_fit_inputs(
        seed, n_draws=100, n_scans=6, amp_likelihood=name)) for seed, name in enumerate(("gauss", "rice"))}
    assert len(compare_stores(no_amp)) == 2


def test_a_store_without_scans_is_not_compared_with_one_that_has_them(tmp_path):
    old = write_fit_store(tmp_path / "old.zarr", **synthetic_fit_inputs(1, n_draws=100))
    new = write_fit_store(tmp_path / "new.zarr", **synthetic_fit_inputs(2, n_draws=100, n_scans=6))
    with pytest.raises(VlbiError, match="leave-one-out units differ.*refit the older store"):
        compare_stores({"old": old, "new": new})
