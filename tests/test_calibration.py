"""Simulation-based calibration: ranks and coverage bookkeeping, and a small calibration of the default
fit that fails when its intervals do not cover the truth at their nominal rates (binomial bounds).

The calibration here is small (20 simulated data sets in one fit_many batch, 2 short chains each); the
large one (60 data sets, the default sampler) is bench/bench_calibration.py, its numbers in
docs/benchmarks.md.
"""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import m87_file
from vlbicore.calibration import (CalibrationPlan, binomial_interval, coverage_consistent, coverage_table,
                                  draw_truth, gather, rank_statistics, read_tables, run_batch, simulate_products,
                                  load_template, write_table)
from vlbicore.config import FitConfig
from vlbicore.errors import VlbiError
from vlbicore.survey.calibration_plots import outside_band

SHORT = {"chains": 2, "warmup": 150, "samples": 150, "starts": 16}
TRUTHS = {"d": [38, 46], "beta1_re": [-0.2, 0.2], "beta1_im": [-0.2, 0.2]}


def plan_of(noise="default", n=20, batch=20, sampler=None, **changes):
    config = FitConfig.from_layers(({"model": {"type": "mring", "order": 1}, "sampler": {**SHORT, **(sampler or {})},
                                     "noise": noise}, "test"))
    settings = {"nonclosing": 0.05, "gains": 0.1, "truths": TRUTHS, "seed": 3, **changes}
    return CalibrationPlan(like=str(m87_file(101, "lo")), config=config, model_name="mring1", n_simulations=n,
                           batch_size=batch, **settings)


def test_pit_rank_and_intervals_of_weighted_chains():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(2, 4000))
    truth = stats.norm.ppf(0.2)
    out = rank_statistics(draws, np.ones(2), truth, rank_draws=99)
    assert out["pit"] == pytest.approx(0.2, abs=0.02)
    assert out["n_rank"] == 99 and abs(out["rank"] - 20) <= 12  # binomial(99, 0.2): sd 4
    assert (out["in50"], out["in68"], out["in95"]) == (False, True, True)
    # a mode of mass 0.75 entirely below the truth, one of mass 0.25 above: u = 0.75
    two = np.stack([np.full(100, -1.0), np.full(100, 1.0)])
    out = rank_statistics(two, np.array([0.75, 0.25]), 0.0, rank_draws=100)
    assert out["pit"] == pytest.approx(0.75) and out["rank"] == 75 and out["n_rank"] == 100
    assert out["mean"] == pytest.approx(-0.5)


def test_angles_are_ranked_on_the_circle_relative_to_the_truth():
    rng = np.random.default_rng(1)
    truth = np.pi - 0.05
    draws = np.mod(truth + 0.1 + 0.1 * rng.normal(size=(2, 2000)) + np.pi, 2 * np.pi) - np.pi  # wraps past ±π
    out = rank_statistics(draws, np.ones(2), truth, period=2 * np.pi)
    assert out["pit"] == pytest.approx(stats.norm.cdf(-1.0), abs=0.03)
    assert abs(out["median"] - (-np.pi + 0.05)) < 0.02  # reported as a value in (-π, π]


def test_binomial_intervals():
    n = 20
    low, high = binomial_interval(0, n, method="clopper-pearson")
    assert low == 0 and high == pytest.approx(1 - 0.025 ** (1 / n))
    for k in (3, 10, 19):
        j_low, j_high = binomial_interval(k, n)
        c_low, c_high = binomial_interval(k, n, method="clopper-pearson")
        assert c_low <= j_low < k / n < j_high <= c_high  # Jeffreys lies inside the exact interval
    assert coverage_consistent(19, 20, 0.95) and not coverage_consistent(12, 20, 0.95)
    with pytest.raises(VlbiError, match="unknown method"):
        binomial_interval(1, 2, method="wald")


def test_ecdf_band_accepts_uniform_and_rejects_overconfident_pit():
    rng = np.random.default_rng(2)
    assert not outside_band(rng.uniform(size=100))
    assert outside_band(rng.beta(0.3, 0.3, size=100))  # PIT piled at 0 and 1: intervals too narrow


def test_plan_errors_are_one_line():
    with pytest.raises(VlbiError, match=r"calibration.truths.F0: not a free parameter"):
        plan_of(truths={"F0": 1.0})
    with pytest.raises(VlbiError, match=r"calibration.truths.d: .* neither a number nor a range"):
        plan_of(truths={"d": [50, 40]})
    with pytest.raises(VlbiError, match=r"calibration.nonclosing"):
        plan_of(nonclosing=-0.1)
    with pytest.raises(VlbiError, match=r"calibration batch 3: out of range"):
        plan_of(n=10, batch=5).batch_indices(3)


def test_simulations_do_not_depend_on_the_batching():
    a, b = plan_of(n=12, batch=5), plan_of(n=12, batch=7)
    assert list(a.batch_indices(2)) == [10, 11] and list(b.batch_indices(1)) == [7, 8, 9, 10, 11]
    assert draw_truth(a, 10) == draw_truth(b, 10) != draw_truth(a, 11)
    t = draw_truth(a, 10)
    assert 38 <= t["d"] <= 46 and abs(t["beta1_re"]) <= 0.2
    template = load_template(a)
    pa, pb = simulate_products(a, template, t, 10), simulate_products(b, template, t, 10)
    np.testing.assert_array_equal(pa["cphase"].values, pb["cphase"].values)


def test_tables_round_trip_and_duplicates_are_refused(tmp_path):
    frame = pd.DataFrame([{c: 0 for c in ("simulation", "truth", "mean", "sd", "median", "pit", "rank", "n_rank",
                                          "chi2_total_per_n", "batch_seconds")}
                          | {"parameter": "d", "model": "m", "in50": True, "in68": True, "in95": True,
                             "converged": True, "adequate": True, "multimodal": False}])
    path = write_table(frame, tmp_path / "batch-000.csv")
    assert not list(tmp_path.glob(".*tmp*"))  # written by rename, nothing left behind
    assert len(read_tables([path])) == 1
    with pytest.raises(VlbiError, match="appears in two tables"):
        read_tables([path, path])


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """20 simulated m-ring data sets (101-lo coverage, 5 % non-closing errors, 10 % gain errors), fitted
    with the default noise model in one fit_many batch."""
    out = tmp_path_factory.mktemp("calibration")
    frame = run_batch(plan_of(), 0)
    path = write_table(frame, out / "batch-000.csv")
    print(coverage_table(frame).to_string())  # shown with -s or on failure
    return frame, path, out


def test_default_fit_covers_the_truth_at_the_nominal_rates(calibration):
    frame, _, _ = calibration
    assert frame.simulation.nunique() == 20
    assert set(frame.parameter) >= {"d", "beta1_re", "beta1_im", "beta1_abs", "brightness_PA", "noise.nonclosing"}
    coverage = coverage_table(frame)
    bad = [f"{r.parameter} {r.level}: {r.covered}/{r.n}" for r in coverage.itertuples()
           if r.parameter in ("d", "noise.nonclosing") and r.level in (0.68, 0.95)
           and not coverage_consistent(r.covered, r.n, r.level)]
    assert not bad, f"coverage outside the 99 % binomial acceptance interval: {bad}\n{coverage.to_string()}"
    # the injected 5 % is recovered: the fitted non-closing term's posterior medians scatter around it
    medians = frame.loc[frame.parameter == "noise.nonclosing", "median"]
    assert abs(np.median(medians) - 0.05) < 0.01


def test_thermal_only_fit_of_the_same_data_is_caught(calibration):
    """The sanity check of the check: noise none on data with 5 % non-closing errors undercovers, and the
    criterion of the test above says so."""
    frame = run_batch(plan_of(noise="none", n=10, batch=10, sampler={"warmup": 100, "samples": 100}), 0)
    d = frame[frame.parameter == "d"]
    assert not coverage_consistent(int(d.in95.sum()), len(d), 0.95), d[["truth", "median", "sd", "pit"]]
    assert outside_band(d.pit.to_numpy()) or d.in95.mean() < 0.7


def test_gather_writes_tables_and_plots(calibration):
    _, path, out = calibration
    written = gather([path], out / "gathered")
    coverage = pd.read_csv(written["coverage"])
    assert set(coverage.level) == {0.5, 0.68, 0.95} and (coverage.n == 20).all()
    assert (coverage.ci_low <= coverage.rate).all() and (coverage.rate <= coverage.ci_high).all()
    assert written["ecdf_mring1"].stat().st_size > 10_000 and written["coverage_mring1"].is_file()
    from vlbicore.survey.report import calibration_section

    section = calibration_section(out / "gathered")
    assert "Simulation-based calibration" in section and section.count("data:image/png;base64") == 2
    assert section.count("<tr") == len(coverage) + 1  # one row per parameter and level, plus the header


def test_campaign_calibration_section_is_checked_before_any_job():
    """What the Snakefile checks when it loads a campaign with a calibration section (schema, then names)."""
    from vlbicore.survey.campaign import (calibration_batches, calibration_models, calibration_settings,
                                          check_calibration, schema_problems)

    config = {"epochs": [{"id": "a", "uvfits": "a.uvfits"}], "products": ["cphase", "lcamp"],
              "models": {"mring1": {"type": "mring", "order": 1}, "crescent": {"type": "crescent"}},
              "calibration": {"like": "a.uvfits", "n_simulations": 10, "batch_size": 4, "truths": {"d": [38, 46]}}}
    assert schema_problems(config) == []
    check_calibration(config)  # both models have a diameter d
    assert calibration_models(config) == ["mring1", "crescent"] and calibration_batches(config) == [0, 1, 2]
    assert calibration_settings(config)["nonclosing"] == 0.05 and "like" not in calibration_settings(config)
    config["calibration"]["truths"] = {"beta1_re": [-0.1, 0.1]}
    with pytest.raises(VlbiError, match="calibration.truths.beta1_re: not a free parameter of models.crescent"):
        check_calibration(config)
    config["calibration"]["models"] = ["mring2"]
    with pytest.raises(VlbiError, match="calibration.models: 'mring2' is not a model"):
        check_calibration(config)
    config["calibration"]["n_simulations"] = 0
    assert any(p.startswith("calibration.n_simulations") for p in schema_problems(config))
