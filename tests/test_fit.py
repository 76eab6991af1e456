"""`vlbicore fit` end to end: stores, errors, recovery of known parameters, and the M87* science check.

Fits here are small (2 chains, a few hundred draws) so the suite stays within CI's time; the full-size
fits live in bench/.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import ARRAYS, m87_file
from vlbicore.config import FitConfig
from vlbicore.pipeline import run_fit
from vlbicore.models import build_model
from vlbicore.data.simulate import simulate_observation

SMALL = {"chains": 4, "warmup": 300, "samples": 500, "starts": 24}
M87_SAMPLER = {"chains": 2, "warmup": 250, "samples": 300, "starts": 24}  # 8 files in one batch: enough to see the mode
CLI_ENV = {**os.environ, "VLBICORE_JAX_CACHE": "off"}


def vlbicore_cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "vlbicore", *map(str, args)], capture_output=True, text=True,
                          env=CLI_ENV, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"vlbicore {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def m87_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "101-lo_thick_mring1.zarr"
    vlbicore_cli("fit", m87_file(101, "lo"), "--model", "thick_mring", "--order", 1, "--products", "cphase,lcamp",
                 "--chains", 2, "--warmup", 250, "--samples", 250, "--starts", 24, "--epoch", "101-lo", "--out", out,
                 "--quiet")
    return out


def test_store_is_arviz_shaped_with_provenance_and_fit_quality(m87_store):
    tree = xr.open_datatree(m87_store, engine="zarr")
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data", "posterior_predictive",
            "diagnostics"} <= set(tree.children)
    post = tree["posterior"].ds
    assert post["d"].dims == ("chain", "draw") and post["d"].shape == (2, 250)
    assert {"d", "alpha", "beta1_re", "beta1_im", "beta1_abs"} <= set(post.data_vars)
    assert "F0" not in post  # closure-only: total flux is pinned, not sampled
    assert post["d"].attrs["units"] == "µas"
    assert post["brightness_PA"].attrs["period"] == pytest.approx(2 * np.pi)  # summarised on the circle
    assert "period" not in post["d"].attrs
    assert tree["log_likelihood"].ds["cphase"].shape[:2] == (2, 250)
    attrs = tree.attrs
    assert attrs["epoch"] == "101-lo" and attrs["band"] == "lo" and attrs["date"] == "2017-04-11"
    assert len(attrs["data_sha256"]) == 64
    assert json.loads(attrs["model_spec"])["fixed"] == {"F0": 1.0, "x0": 0.0, "y0": 0.0}
    assert {"optimise", "warmup", "sampling", "total"} <= set(json.loads(attrs["timings"]))
    chi2 = tree["diagnostics"].ds["reduced_chi2"]
    assert set(chi2["product"].values) == {"cphase", "lcamp"}
    # against the thermal errors alone real data misfit; against thermal + the fitted non-closing term
    # (the default noise model) the fit is at the noise
    assert np.all(chi2.values > 1)
    total = tree["diagnostics"].ds["reduced_chi2_total"].values
    assert np.all((total > 0.5) & (total < 2)), total
    assert "noise.nonclosing" in post and post["noise.nonclosing"].attrs["units"] == "1"
    assert 39 < float(post["d"].median()) < 47


def test_defaults_closure_covariance_and_chi2_at_the_best_draw(m87_store):
    """Closure covariance is on by default; χ² is labelled χ²/N and χ²/(N − p) and is evaluated at the
    draw of highest posterior density (recomputed here from that draw's stored predictions)."""
    tree = xr.open_datatree(m87_store, engine="zarr")
    assert tree.attrs["covariance"] is True and json.loads(tree.attrs["snr_cut"]) == {"lcamp": 3.0}
    gof = tree["diagnostics"].ds
    lp = tree["sample_stats"].ds["lp"].values.reshape(-1)
    best = int(np.argmax(lp))
    from vlbicore.likelihood import reduced_chi_squared_of
    from vlbicore.pipeline import prepare_products

    # the products the fit used (from the store's own configuration), and the predictions of the best draw
    products = prepare_products(m87_file(101, "lo"), FitConfig.from_dict(json.loads(tree.attrs["fit_config"])))[1]
    predicted = tree["posterior_predictive"].ds
    at_best = {kind: predicted[kind].values.reshape(lp.size, -1)[best] for kind in ("cphase", "lcamp")}
    p = int(tree.attrs["n_parameters"])
    for kind, (chi2_per_n, n) in reduced_chi_squared_of(products, at_best).items():
        row = gof.sel(product=kind)
        assert float(row["reduced_chi2"]) == pytest.approx(chi2_per_n, rel=1e-3)
        assert float(row["reduced_chi2_dof"]) == pytest.approx(chi2_per_n * n / (n - p), rel=1e-3)
        assert int(row["n_data"]) == n and n == tree["observed_data"].ds[kind].size


def test_summary_reports_convergence_modes_and_goodness_of_fit(m87_store):
    text = vlbicore_cli("summary", m87_store).stdout
    assert "converged:" in text and "adequate:" in text and "multimodal:" in text and "chi2/N" in text and "chi2/(N-p)" in text
    assert "modes found" in text and "mass=" in text
    assert "d " in text and "rhat" in text


def test_summary_writes_table_and_plots_in_one_call(m87_store, tmp_path):
    """What the workflow's per-fit job runs: the printed summary, the CSV table and the PNG plots."""
    text = vlbicore_cli("summary", m87_store, "--csv", tmp_path / "table.csv", "--plots", tmp_path / "plots",
                        "--formats", "png").stdout
    assert "converged:" in text
    table = pd.read_csv(tmp_path / "table.csv", index_col=0)
    assert "d" in table.index and {"mean", "rhat", "ess_bulk"} <= set(table.columns)
    pngs = sorted(p.stem for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["corner", "image", "normalised_residuals", "residuals", "trace", "uv_coverage"]
    assert all(p.stat().st_size > 5000 for p in (tmp_path / "plots").glob("*.png"))


def test_float32_fit_finds_the_same_ring(tmp_path, m87_store):
    """--dtype float32 (JAX without x64, as on most GPUs): same mode, same diameter as float64."""
    out = tmp_path / "f32.zarr"
    vlbicore_cli("fit", m87_file(101, "lo"), "--model", "thick_mring", "--order", 1, "--products", "cphase,lcamp",
                 "--chains", 2, "--warmup", 200, "--samples", 200, "--starts", 16, "--dtype", "float32",
                 "--out", out, "--quiet")
    tree = xr.open_datatree(out, engine="zarr")
    assert json.loads(tree.attrs["sampler"])["dtype"] == "float32"
    float64 = float(xr.open_datatree(m87_store, engine="zarr")["posterior"].ds["d"].median())
    assert float(tree["posterior"].ds["d"].median()) == pytest.approx(float64, abs=1.0)


def test_existing_store_is_refused_unless_overwrite(m87_store):
    proc = vlbicore_cli("fit", m87_file(101, "lo"), "--model", "ring", "--out", m87_store, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "already exists" in proc.stderr and "--overwrite" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--model", "donut"], "donut"),
    (["--model", "mring", "--products", "cphase,closure"], "closure"),
    (["--model", "mring", "--config", "/nonexistent/fit.yaml"], "fit.yaml"),
    (["--model", "mring", "--fit-json", '{"priors": {"diameter": [1, 2]}}'], "diameter"),
    (["--model", "mring", "--fit-json", '{"sampler": {"target_accept": 2}}'], "target_accept"),
    # product sets that count the same data twice are refused, naming the valid sets
    (["--model", "mring", "--products", "amp,lcamp"], "amp+cphase"),
    (["--model", "mring", "--products", "vis,cphase"], "same data twice"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    proc = vlbicore_cli("fit", m87_file(100, "lo"), "--out", tmp_path / "x.zarr", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("vlbicore: error:") and proc.stderr.strip().count("\n") == 0
    assert message in proc.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_unreadable_data_file_names_itself(tmp_path):
    bad = tmp_path / "broken.uvfits"
    bad.write_bytes(m87_file(100, "lo").read_bytes()[:20000])
    proc = vlbicore_cli("fit", bad, "--model", "ring", "--out", tmp_path / "x.zarr", check=False)
    assert proc.returncode == 2 and "broken.uvfits" in proc.stderr and proc.stderr.strip().count("\n") == 0


TRUTH = {"d": 44.0, "alpha": 10.0, "beta1_re": -0.15, "beta1_im": 0.2}


def _simulated_fit(tmp_path, seed):
    model = build_model({"type": "thick_mring", "order": 1})
    truth = {**TRUTH, "F0": 0.8, "x0": 0.0, "y0": 0.0}
    import jax.numpy as jnp

    path = tmp_path / f"sim{seed}.uvfits"
    # one 60-s record per 40-min scan on EHT 2017 tracks with M87-like SEFDs: scan averaging is then exact, so
    # closures of the data and of the model agree (averaging 10-s records would smear the loop's uv points)
    simulate_observation(lambda u, v: model.visibility({k: jnp.asarray(x) for k, x in truth.items()}, u, v),
                         array=ARRAYS / "EHT2017_m87.txt", tint=60, tadv=2400, seed=seed, out=path)
    config = FitConfig.from_dict({"model": {"type": "thick_mring", "order": 1}, "products": ["cphase", "lcamp"],
                                  "sampler": {**SMALL, "seed": seed}})
    store = run_fit(path, config, tmp_path / f"sim{seed}.zarr")
    return xr.open_datatree(store, engine="zarr")


@pytest.mark.slow
def test_simulated_parameters_are_recovered_with_calibrated_intervals(tmp_path):
    """Truth inside the 95 % interval for every parameter on each seed; coverage over the small batch."""
    inside = []
    for seed in range(3):
        tree = _simulated_fit(tmp_path, seed)
        # short test chains: demand agreement (R-hat < 1.05), not the store's strict 1.01 gate
        assert json.loads(tree.attrs["convergence"])["max_rhat"] < 1.05, tree.attrs["convergence"]
        post = tree["posterior"].ds
        for name, value in TRUTH.items():
            lo, hi = np.quantile(post[name].values, [0.025, 0.975])
            inside.append(lo <= value <= hi)
        # a correct model on its own simulated data fits to the noise
        assert np.all(tree["diagnostics"].ds["reduced_chi2"].values < 1.6)
    assert np.mean(inside) >= 0.8, inside


M87_FILES = [(day, band) for day in (95, 96, 100, 101) for band in ("lo", "hi")]


@pytest.fixture(scope="module")
def m87_batch():
    """The default fit (thick m-ring m = 2, closure phases + log closure amplitudes, non-closing term,
    closure covariance) of all 8 shipped files, as one batch of posteriors in one program (fit_many); each
    posterior is seeded as its lone fit would be with ``seed``."""
    from vlbicore.inference.fit import fit_many
    from vlbicore.pipeline import prepare_products

    config = FitConfig.from_dict({"model": {"type": "thick_mring", "order": 2}, "products": ["cphase", "lcamp"],
                                  "sampler": M87_SAMPLER})
    products = [prepare_products(m87_file(day, band), config)[1] for day, band in M87_FILES]
    seeds = [day * 10 + (band == "hi") for day, band in M87_FILES]
    return fit_many(products, config.sky_model, config.sampler, config.noise_model, seeds=seeds)


@pytest.mark.slow
def test_m87_ring_diameter_matches_published_42_pm_3_uas(m87_batch):
    """EHT 2019 Paper VI: 42 ± 3 µas, on every one of the 8 files. Thick m-ring m = 2 (m = 1 is not adequate
    on the 2017-04-10/11 files: it needs a non-closing term of ~17 % and then drifts to ~46 µas); every chain
    must sit in the one global mode."""
    for (day, band), result in zip(M87_FILES, m87_batch):
        d = result.posterior["d"]
        assert 39.0 <= np.median(d) <= 45.0, (day, band, np.median(d))
        chain_medians = np.median(d, axis=1)
        assert np.ptp(chain_medians) < 1.5, (day, band, chain_medians)  # all chains in one mode
        assert result.modes[0]["lp"] == max(m["lp"] for m in result.modes)
        assert not any("chains disagree" in r for r in result.convergence["reasons"]), result.convergence


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "known defect, open in issue 13: the default fit's per-file intervals of d are still too narrow on real "
    "M87* data. Measured (4 chains × (300 + 500), 2026-12-03): medians 41.68 41.29 42.29 42.63 43.24 44.76 43.46 "
    "43.14 µas (95 lo, hi ... 101 hi), sds 0.39 0.41 0.24 0.23 0.64 0.40 0.06 0.05; χ² 91 for 7 dof; "
    "101 lo and hi, the same minutes of the same source, differ by 0.32 µas = 4 combined sds. On simulated "
    "m-rings with 5 % non-closing errors the same fit is calibrated at a posterior sd of ~0.06 µas "
    "(bench/bench_calibration.py), so what is missing is model error (M87* is not an m-ring to 0.06 µas), "
    "which neither the noise model nor the adequacy verdict yet captures"))
def test_m87_ring_does_not_change_in_a_week(m87_batch):
    """Physics check: M87*'s ring does not change its diameter between 2017-04-05 and 04-11, so the 8
    per-file diameters must agree within their own intervals: χ² of the posterior medians about their
    inverse-variance mean, with each file's posterior sd, is not improbably large (p > 0.001 for 7 degrees of
    freedom), and the intervals are honest, not the ±0.04 µas of thermal-only fits (sd ≥ 0.3 µas)."""
    from scipy import stats

    medians = np.array([np.median(r.posterior["d"]) for r in m87_batch])
    sds = np.array([np.std(r.posterior["d"]) for r in m87_batch])
    weights = 1 / sds**2
    mean = np.sum(weights * medians) / np.sum(weights)
    chi2 = float(np.sum(weights * (medians - mean) ** 2))
    assert stats.chi2.sf(chi2, len(medians) - 1) > 1e-3, (medians.round(2), sds.round(2), chi2)
    assert np.all(sds >= 0.3), sds


def test_prior_that_excludes_the_data_is_flagged(tmp_path):
    """A diameter prior of 20-30 µas cannot hold M87*'s 42 µas ring: the fit says so, loudly. With the
    default noise model the fitted non-closing term swallows the misfit and the adequacy verdict fails;
    with thermal errors only, the posterior piles up at the prior edge and the convergence gate fails."""
    for noise in ("default", "none"):
        out = tmp_path / f"narrow-{noise}.zarr"
        vlbicore_cli("fit", m87_file(100, "lo"), "--model", "mring", "--order", 1, "--chains", 2, "--warmup", 100,
                     "--samples", 100, "--starts", 8, "--noise", noise, "--fit-json", '{"priors": {"d": [20, 30]}}',
                     "--out", out, "--quiet")
        text = vlbicore_cli("summary", out).stdout
        if noise == "default":
            assert "adequate:  NO - noise.nonclosing" in text
        else:
            assert "warning:   d: " in text and "edge of its prior [20, 30]" in text
            assert "converged: NO" in text and "prior edge: d:" in text


def test_gather_of_real_fit_stores_matches_each_store_opened_alone(m87_store, tmp_path):
    from vlbicore.survey.gather import gather_stores
    from vlbicore.store import summary_table

    other = tmp_path / "100-lo_mring1.zarr"
    vlbicore_cli("fit", m87_file(100, "lo"), "--model", "mring", "--order", 1, "--chains", 2, "--warmup", 100,
                 "--samples", 100, "--starts", 8, "--epoch", "100-lo", "--out", other, "--quiet")
    result = gather_stores([m87_store, other], tmp_path / "gather")
    assert len(result.fits) == 2
    for store in (m87_store, other):
        alone = summary_table(store)
        epoch = alone.attrs["epoch"]
        rows = result.summary[(result.summary["epoch"] == epoch)].set_index("parameter")
        for name in ("d", "beta1_re"):
            assert rows.loc[name, "mean"] == pytest.approx(alone.loc[name, "mean"], rel=1e-10)
            assert rows.loc[name, "sd"] == pytest.approx(alone.loc[name, "sd"], rel=1e-10)
    assert (tmp_path / "gather" / "summary.csv").exists() and (tmp_path / "gather" / "gathered.zarr").exists()


def test_composite_model_from_yaml(tmp_path):
    spec = tmp_path / "ring_jet.yaml"
    spec.write_text("components:\n  ring: {type: mring, order: 1}\n  jet: {type: gauss}\n")
    out = tmp_path / "composite.zarr"
    vlbicore_cli("fit", m87_file(100, "lo"), "--model", spec, "--products", "amp,cphase", "--chains", 2,
                 "--warmup", 50, "--samples", 50, "--starts", 8, "--out", out, "--quiet")
    post = xr.open_datatree(out, engine="zarr")["posterior"].ds
    assert {"ring.d", "ring.beta1_re", "jet.FWHM_maj", "total_flux", "jet.flux_fraction", "jet.F0"} <= set(post.data_vars)


def test_a_ring_fitted_to_a_jet_is_not_adequate(tmp_path):
    """Adequacy is separate from convergence: a thick m-ring fitted to a two-component Gaussian jet
    (simulated on the coverage of the 2017-04-11 lo file) may well converge, but it must be called not
    adequate, with its reasons in the store and the summary."""
    import jax.numpy as jnp

    jet = build_model({"components": {"core": {"type": "circ_gauss"}, "knot": {"type": "gauss"}}, "flux": "components"})
    truth = {"core.F0": 0.5, "core.FWHM": 20.0, "core.x0": 0.0, "core.y0": 0.0, "knot.F0": 0.3, "knot.FWHM_maj": 60.0,
             "knot.FWHM_min": 20.0, "knot.PA": 1.1, "knot.x0": 40.0, "knot.y0": 25.0}
    path = tmp_path / "jet.uvfits"
    simulate_observation(lambda u, v: jet.visibility({k: jnp.asarray(x) for k, x in truth.items()}, u, v),
                         like=m87_file(101, "lo"), seed=3, out=path)
    config = FitConfig.from_dict({"model": {"type": "thick_mring", "order": 1},
                                  "sampler": {"chains": 2, "warmup": 150, "samples": 200, "starts": 16}})
    store = run_fit(path, config, tmp_path / "ring_on_jet.zarr")
    tree = xr.open_datatree(store, engine="zarr")
    adequacy = json.loads(tree.attrs["adequacy"])
    assert tree.attrs["adequate"] is False and adequacy["reasons"], adequacy
    text = vlbicore_cli("summary", store).stdout
    assert "chi2/N" in text and "adequate:  NO" in text
