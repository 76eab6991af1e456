"""Snapshot fits: time windows of one observation, every window one posterior of one batch, one store.

Physics checks: a simulated m-ring whose brightness position angle rotates linearly through the night is
recovered window by window (truth inside the 95 % intervals at the nominal rate), and M87* — static over
a night — fitted per window and pooled agrees with the whole-track fit of the same file.
"""
import json

import numpy as np
import pytest
from scipy.stats import binom

from conftest import m87_file
from vlbicore.config import FitConfig
from vlbicore.data import load_observation, parse_spec, split_windows, window_observation
from vlbicore.data.simulate import simulate_observation
from vlbicore.errors import VlbiError
from vlbicore.inference import fit_many
from vlbicore.models import build_model
from vlbicore.pipeline import prepare_products, run_snapshot_fit, snapshot_products
from vlbicore.statistics import pooled_estimate
from vlbicore.store import (format_summary, is_snapshot_store, open_fit_store, parameter_statistics, snapshot_records,
                            snapshot_view, summary_table)

SHORT = {"chains": 2, "warmup": 250, "samples": 250, "starts": 32, "optimiser_steps": 200}


# --------------------------------------------------------------------------------------------------
# windows (no fitting)


@pytest.fixture(scope="module")
def m87_obs():
    return load_observation(m87_file(95, "lo"))


def test_scan_windows_partition_the_rows_in_time_order(m87_obs):
    windows = split_windows(m87_obs, "scan")
    assert len(windows) == len(np.unique(m87_obs.scan))
    rows = np.concatenate([w.rows for w in windows])
    assert np.array_equal(np.sort(rows), np.arange(len(m87_obs)))  # every row once
    starts = [w.time_start for w in windows]
    assert starts == sorted(starts)
    for w in windows:
        assert np.all((m87_obs.time[w.rows] >= w.time_start) & (m87_obs.time[w.rows] <= w.time_end))
        assert len(np.unique(m87_obs.scan[w.rows])) == 1


def test_fixed_and_explicit_windows(m87_obs):
    windows = split_windows(m87_obs, "2h")
    assert np.array_equal(np.sort(np.concatenate([w.rows for w in windows])), np.arange(len(m87_obs)))
    for w in windows:
        assert w.time_end - w.time_start == pytest.approx(2.0)
        t = m87_obs.time[w.rows]
        assert np.all((t >= w.time_start - 1e-9) & (t < w.time_end))
    t0, t1 = float(m87_obs.time.min()), float(m87_obs.time.max())
    mid = 0.5 * (t0 + t1)
    explicit = split_windows(m87_obs, [[t0, mid], [mid, t1]])
    assert [len(w.rows) for w in explicit] == [int(np.sum(m87_obs.time < mid)), int(np.sum(m87_obs.time >= mid))]
    part = window_observation(m87_obs, explicit[0])
    assert len(part) == len(explicit[0].rows) and part.stations == m87_obs.stations
    assert parse_spec("10min") == pytest.approx(1 / 6) and parse_spec("90s") == pytest.approx(0.025)


@pytest.mark.parametrize("spec", ["fortnight", "0min", [[2, 1]], [[1, 2, 3]], 7])
def test_bad_snapshot_specs_are_one_line_errors(spec):
    with pytest.raises(VlbiError, match="snapshots"):
        FitConfig.from_dict({"model": "mring", "snapshots": spec})


def test_pooling_is_inverse_variance_weighted():
    p = pooled_estimate([1.0, 3.0], [1.0, 1.0])
    assert p["mean"] == pytest.approx(2.0) and p["sd"] == pytest.approx(1 / np.sqrt(2))
    assert p["chi2"] == pytest.approx(2.0) and p["dof"] == 1
    # angles near ±π pool on the circle
    q = pooled_estimate([np.pi - 0.1, -np.pi + 0.1], [0.1, 0.1], period=2 * np.pi)
    assert abs(np.cos(q["mean"]) + 1) < 1e-9


# --------------------------------------------------------------------------------------------------
# a ring rotating through the night, recovered window by window


PA_RATE = np.deg2rad(15.0)  # rad per hour: 120° over an 8-hour track
BETA_ABS, DIAMETER = 0.35, 42.0


def rotating_ring(times):
    """m-ring order 1 (0.6 Jy, 42 µas) whose β₁ phase turns by PA_RATE per hour from its first time stamp."""
    model = build_model({"type": "mring", "order": 1})
    t0 = float(np.min(times))

    def visibilities(u, v):
        phase = 0.3 + PA_RATE * (times - t0)
        p = {"F0": 0.6, "d": DIAMETER, "x0": 0.0, "y0": 0.0,
             "beta1_re": BETA_ABS * np.cos(phase), "beta1_im": BETA_ABS * np.sin(phase)}
        return np.asarray(model.visibility(p, u, v))

    return visibilities, t0


@pytest.fixture(scope="module")
def rotating_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rotating")
    like = m87_file(95, "lo")
    template = simulate_observation(lambda u, v: np.ones_like(u, complex), like=like, noise=False)
    model_fn, t0 = rotating_ring(np.asarray(template.time))
    simulate_observation(model_fn, like=like, seed=3, out=tmp / "rotating.uvfits")
    # a single scan's few baselines leave diameter aliases near 95 µas: a 30-60 µas prior on d, as a
    # snapshot analysis would state, keeps each window's posterior to the ring that is there
    config = FitConfig.from_dict({"model": {"type": "mring", "order": 1}, "noise": "none", "sampler": SHORT,
                                  "priors": {"d": [30, 60]}, "snapshots": "scan"})
    store = run_snapshot_fit(tmp / "rotating.uvfits", config, tmp / "rotating.zarr", epoch="rotating")
    return store, t0


def test_snapshot_store_layout(rotating_store):
    store, _ = rotating_store
    tree = open_fit_store(store)
    assert is_snapshot_store(tree)
    posterior = tree["posterior"].dataset
    assert posterior["d"].dims == ("chain", "draw", "snapshot")
    for coord in ("time_start", "time_end", "n_cphase", "n_lcamp"):
        assert coord in posterior.coords
    records = snapshot_records(tree)
    skipped = json.loads(tree.attrs["skipped_snapshots"])
    n_scans = len(np.unique(load_observation(tree.attrs["data_path"]).scan))
    assert len(records) + len(skipped) == n_scans  # every scan fitted or listed
    assert all(s["n_data"].get("cphase", 0) < 2 or "data for" in s["reason"] for s in skipped)
    assert np.all(posterior["n_cphase"].values >= 2)
    # each snapshot reads as a lone fit: its own data, chains and verdicts
    view = snapshot_view(tree, 1)
    assert view["posterior"]["d"].dims == ("chain", "draw")
    observed = tree["observed_data"].dataset
    assert view["observed_data"].sizes["cphase_dim"] == int(np.sum(observed["cphase_snapshot"].values == 1))
    assert view["log_likelihood"].dataset["cphase"].shape[2] == view["observed_data"].sizes["cphase_dim"]
    assert bool(view.attrs["converged"]) == records[1]["converged"]
    text = format_summary(store)
    assert "pooled:" in text and "inverse-variance" in text and text.count("pooled ") >= len(posterior.data_vars)


def test_rotating_ring_is_recovered_snapshot_by_snapshot(rotating_store):
    """Truth inside the central 95 % interval of β₁'s phase (circular) and of d for ≥ the binomial 0.1 %
    lower bound of windows; and the fitted phases follow the rotation (slope of the medians within 20 %)."""
    store, t0 = rotating_store
    tree = open_fit_store(store)
    records = snapshot_records(tree)
    hits, trials, mids, medians = 0, 0, [], []
    for r in records:
        view = snapshot_view(tree, r["index"])
        mid = 0.5 * (r["time_start"] + r["time_end"])
        truth = 0.3 + PA_RATE * (mid - t0)
        arg = np.asarray(view["posterior"]["beta1_arg"].values).ravel()
        offset = np.angle(np.exp(1j * (arg - truth)))  # draws relative to the truth, on the circle
        lo, hi = np.quantile(offset, [0.025, 0.975])
        hits += int(lo <= 0 <= hi)
        d = np.asarray(view["posterior"]["d"].values).ravel()
        lo, hi = np.quantile(d, [0.025, 0.975])
        hits += int(lo <= DIAMETER <= hi)
        trials += 2
        mids.append(mid)
        medians.append(truth + np.median(offset))
    assert len(records) >= 8
    assert hits >= binom.ppf(0.001, trials, 0.95), f"{hits} of {trials} intervals hold the truth"
    slope = np.polyfit(np.asarray(mids), np.unwrap(np.asarray(medians)), 1)[0]
    assert slope == pytest.approx(PA_RATE, rel=0.2)


# --------------------------------------------------------------------------------------------------
# M87* is static over a night


def test_m87_windows_pooled_agree_with_the_whole_track():
    """Stated test: fit 2-hour windows of one shipped file and the whole track in one batch (m-ring order
    1, closure phases and log closure amplitudes, the default error terms). The inverse-variance pooled
    diameter and β₁ components (see ``vlbicore.statistics.POOLING_METHOD``) agree with the whole-track
    medians within 3 σ, σ² = pooled error² + whole-track posterior sd²."""
    config = FitConfig.from_dict({"model": {"type": "mring", "order": 1}, "sampler": SHORT})
    obs, whole, _ = prepare_products(m87_file(95, "lo"), config)
    windows, parts, skipped = snapshot_products(obs, config, "2h")
    assert len(windows) >= 3
    results = fit_many([whole, *parts], config.sky_model, config.sampler, config.noise_model)
    for name in ("d", "beta1_re", "beta1_im"):
        medians = [float(np.median(r.posterior[name])) for r in results[1:]]
        sds = [float(np.std(r.posterior[name])) for r in results[1:]]
        pooled = pooled_estimate(medians, sds)
        whole_median = float(np.median(results[0].posterior[name]))
        whole_sd = float(np.std(results[0].posterior[name]))
        sigma = np.hypot(pooled["sd"], whole_sd)
        assert abs(pooled["mean"] - whole_median) < 3 * sigma, (name, pooled, whole_median, whole_sd)


def test_snapshot_store_gathers_with_times_and_plots_against_time(rotating_store, tmp_path):
    from vlbicore.survey.gather import gather_stores, load_gathered
    from vlbicore.survey.plots import plot_fit, plot_sources

    store, _ = rotating_store
    result = gather_stores([store], tmp_path / "gather", n_workers=1)
    tables = load_gathered(tmp_path / "gather")
    snapshots = tables["snapshots"]
    n = len(snapshot_records(open_fit_store(store)))
    assert set(snapshots["snapshot"]) == set(range(n))
    d = snapshots[snapshots["parameter"] == "d"].sort_values("snapshot")
    assert np.all(d["time_end"].to_numpy() >= d["time_start"].to_numpy())
    assert np.all((d["hdi_low"] <= d["median"]) & (d["median"] <= d["hdi_high"]))
    # the fit's row in summary.csv is the pooled value; fits.csv says how many snapshots it has
    pooled = result.summary[result.summary["parameter"] == "d"].iloc[0]
    expected = pooled_estimate(d["median"], d["sd"])
    assert pooled["mean"] == pytest.approx(expected["mean"]) and pooled["sd"] == pytest.approx(expected["sd"])
    assert int(result.fits["n_snapshots"].iloc[0]) == n
    plots = plot_sources(tables, tmp_path / "plots", formats=("png",))
    assert all(p.stat().st_size > 0 for p in next(iter(plots.values()))["parameters_vs_time"])
    assert (tmp_path / "fit" / "parameters_time.png") in plot_fit(store, tmp_path / "fit", formats=("png",))
