"""Station gains: the analytic marginalisation of gain log-amplitudes against the dense joint normal,
configuration errors, and fits of simulated M87*-like rings with injected gains (amp + closure phases)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from conftest import m87_file
from vlbicore.config import FitConfig
from vlbicore.data import load_observation
from vlbicore.data.simulate import simulate_observation
from vlbicore.errors import VlbiError
from vlbicore.inference import fit_many
from vlbicore.likelihood import NoiseModel, likelihood_data, pointwise_terms
from vlbicore.likelihood.gains import GainModel
from vlbicore.models import build_model
from vlbicore.pipeline import prepare_products
from vlbicore.products import build_products

TRUTH = {"F0": 0.6, "d": 42.0, "alpha": 10.0, "beta1_re": -0.2, "beta1_im": 0.1, "x0": 0.0, "y0": 0.0}
SPEC = {"type": "thick_mring", "order": 1}
INJECTED = {"LM": 0.3, "default": 0.1}  # 30 % on the LMT, 10 % elsewhere, per scan, random phases


@pytest.fixture(scope="module")
def obs():
    return load_observation(m87_file(101, "lo"))


def test_marginal_density_is_the_joint_normal_of_each_scan(obs):
    """Per scan, the summed per-datum values are the dense N(0, D + A Σ_g Aᵀ) log density of the log
    amplitudes (minus log A), with the fractional term in D; padding adds exactly 0; Σ z² = rᵀC⁻¹r;
    the gradient is finite."""
    products = build_products(obs, ["amp", "cphase"], covariance=True, snr_cut={"amp": 3.0})
    gains = GainModel.of({"stations": {"AA": 0.05}})
    layout, data = likelihood_data(products, pad=True, noise=NoiseModel.of("default", products), gains=gains)
    assert layout["kinds"]["amp"] == "gains_marginal"
    model_vis = np.abs(obs.vis) * np.exp(np.random.default_rng(1).normal(0, 0.2, len(obs)))
    terms = {"noise.fractional": 0.05, "noise.nonclosing": 0.01}
    ll, z2 = pointwise_terms(layout, data, jnp.asarray(model_vis + 0j), noise=terms)
    amp = products["amp"]
    n = amp.n
    assert len(ll["amp"]) > n and np.all(np.asarray(ll["amp"])[n:] == 0.0)
    ll_amp, z2_amp = np.asarray(ll["amp"])[:n], np.asarray(z2["amp"])[:n]
    rows = amp.rows
    d = (amp.sigma**2 + (0.05 * np.abs(obs.vis[rows])) ** 2) / amp.values**2
    r = np.log(amp.values) - np.log(model_vis[rows])
    sd = gains.station_sigma(obs)
    assert sd[obs.stations.index("LM")] == 1.0 and sd[obs.stations.index("AA")] == 0.05
    quad = 0.0
    for scan in np.unique(obs.scan[rows]):
        k = np.flatnonzero(obs.scan[rows] == scan)
        incidence = np.zeros((len(k), len(obs.stations)))
        incidence[np.arange(len(k)), obs.ant1[rows[k]]] += 1
        incidence[np.arange(len(k)), obs.ant2[rows[k]]] += 1
        cov = np.diag(d[k]) + incidence @ np.diag(sd**2) @ incidence.T
        expected = scipy.stats.multivariate_normal(np.zeros(len(k)), cov).logpdf(r[k]) - np.sum(np.log(amp.values[k]))
        assert ll_amp[k].sum() == pytest.approx(expected, rel=1e-10, abs=1e-9)
        quad += r[k] @ np.linalg.solve(cov, r[k])
    assert z2_amp.sum() == pytest.approx(quad, rel=1e-10)

    def total(scale):
        logp, _ = pointwise_terms(layout, data, jnp.asarray(model_vis + 0j) * scale, noise=terms)
        return sum(jnp.sum(x) for x in logp.values())

    assert np.isfinite(jax.grad(total)(1.1))


@pytest.mark.parametrize("setting, message", [
    ({"stations": {"XX": 0.2}}, "gains.stations: XX is not a station"),
    ({"method": "laplace"}, "gains.method: 'laplace' is unknown"),
    ({"segment": "day"}, "gains.segment: 'day' is unknown"),
    ({"sigma": -1}, "gains.sigma: -1 is not a log-amplitude sd"),
    ({"priors": 1}, "gains: unknown key(s) priors"),
])
def test_bad_gain_settings_are_one_line(obs, setting, message):
    with pytest.raises(VlbiError, match=None) as err:
        GainModel.of(setting).station_sigma(obs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_gains_in_the_fit_config():
    """``gains: true`` means the marginalised EHT 2017 defaults for amp and cuts amplitudes below SNR 3;
    closure-only fits have no gains; vis cannot be marginalised."""
    config = FitConfig.from_dict({"model": SPEC, "products": ["amp", "cphase"], "gains": True})
    assert config.gain_model == GainModel() and config.snr_cuts == {"amp": 3.0}
    assert FitConfig.from_dict({"model": SPEC, "gains": True}).gain_model is None
    assert FitConfig.from_dict({"model": SPEC, "products": ["vis"], "gains": True}).gain_model.method == "sampled"
    with pytest.raises(VlbiError, match="gains.method: marginal integrates out gain amplitudes of amp only"):
        FitConfig.from_dict({"model": SPEC, "products": ["vis"], "gains": {"method": "marginal"}})


def _simulated_products(tmp_path, seed, config):
    model = build_model(SPEC)
    path = tmp_path / f"gains{seed}.uvfits"
    simulate_observation(lambda u, v: model.visibility({k: jnp.asarray(x) for k, x in TRUTH.items()}, u, v),
                         like=m87_file(101, "lo"), seed=seed, gains=INJECTED, out=path)
    return prepare_products(path, config)[1]


@pytest.mark.slow
def test_marginalised_gains_recover_the_ring_at_the_nominal_rate(tmp_path):
    """Six simulated data sets (thermal noise + injected gains) in ONE batched fit (short chains): the
    true diameter inside the 95 % interval in at least 5 of 6 (ten seeds at longer chains:
    ``python bench/bench_gains.py --coverage amp,cphase``); with the marginalised gains amplitudes
    fit to the noise (gain-corrected χ²/N < 1.5). Without gains, the first data set's amplitudes are
    badly fitted (χ²/N > 10): the instrument model matters."""
    sampler = {"chains": 2, "warmup": 100, "samples": 120, "starts": 16}
    config = FitConfig.from_dict({"model": SPEC, "products": ["amp", "cphase"], "gains": True, "sampler": sampler})
    sets = [_simulated_products(tmp_path, seed, config) for seed in range(6)]
    results = fit_many(sets, config.sky_model, config.sampler, config.noise_model, gains=config.gain_model,
                       seeds=range(6))
    inside = []
    for r in results:
        lo, hi = np.quantile(r.posterior["d"], [0.025, 0.975])
        inside.append(lo <= TRUTH["d"] <= hi)
    assert sum(inside) >= 5, [(np.quantile(r.posterior["d"], [0.025, 0.975]), r.goodness_of_fit) for r in results]
    good = [r.goodness_of_fit["amp"]["chi2_per_n"] for r, ok in zip(results, inside) if ok]
    assert np.all(np.array(good) < 1.5), good

    plain = config.replace(gains=False, snr_cut={"lcamp": 3.0, "amp": 3.0}, sampler={"chains": 2, "warmup": 80,
                                                                                     "samples": 80, "starts": 12})
    alone = fit_many([sets[0]], plain.sky_model, plain.sampler, plain.noise_model)[0]
    assert alone.goodness_of_fit["amp"]["chi2_per_n"] > 10, alone.goodness_of_fit


@pytest.mark.slow
def test_sampled_and_marginalised_gains_agree(tmp_path):
    """(a) gains sampled by NUTS and (b) gain log-amplitudes integrated out give the same posterior of the
    ring on the same data (one gain per station for the track keeps (a) small); (a) stores its gains as
    station × segment draws."""
    sampler = {"chains": 2, "warmup": 150, "samples": 200, "starts": 12}
    out = {}
    for method in ("marginal", "sampled"):
        config = FitConfig.from_dict({"model": SPEC, "products": ["amp", "cphase"], "sampler": sampler,
                                      "gains": {"method": method, "segment": "track"}})
        products = _simulated_products(tmp_path, 0, config)
        out[method] = fit_many([products], config.sky_model, config.sampler, config.noise_model,
                               gains=config.gain_model)[0]
    a, b = out["sampled"], out["marginal"]
    for name in ("d", "F0"):
        xa, xb = np.ravel(a.posterior[name]), np.ravel(b.posterior[name])
        spread = np.hypot(xa.std(), xb.std())
        assert abs(xa.mean() - xb.mean()) < 0.5 * spread, (name, xa.mean(), xb.mean(), spread)
        assert 0.7 < xa.std() / xb.std() < 1.4, (name, xa.std(), xb.std())
    grid = a.gains["log_amplitude"]
    assert grid.shape[2:] == (len(products.obs.stations), 1) and not any(k.startswith("gain.") for k in a.posterior)
    assert not b.gains


@pytest.fixture(scope="module")
def sampled_gain_scores(tmp_path_factory):
    """Gains sampled per station and scan (amp + closure phases) of two simulated data sets with the
    injected gains (30 % LMT / 10 % elsewhere), in one batch: per set the diameter's 95 % interval, the
    scores of the injected gains (:func:`vlbicore.calibration.injected_gain_scores`: log-amplitudes
    relative to their set's mean level, and the level's z) and the non-LMT gains' posterior sds."""
    from vlbicore.calibration import injected_gain_scores
    from vlbicore.data.simulate import injected_gains, injected_gains_at

    tmp_path = tmp_path_factory.mktemp("sampled_gains")
    sampler = {"chains": 2, "warmup": 300, "samples": 300, "starts": 12}
    config = FitConfig.from_dict({"model": SPEC, "products": ["amp", "cphase"], "sampler": sampler,
                                  "gains": {"method": "sampled", "segment": "scan"}})
    seeds = (3, 4)
    sets = [_simulated_products(tmp_path, seed, config) for seed in seeds]
    results = fit_many(sets, config.sky_model, config.sampler, config.noise_model, gains=config.gain_model,
                       seeds=seeds)
    out = {"d_interval": [], "z": [], "inside": [], "levels": [], "widths": []}
    for seed, r in zip(seeds, results):
        out["d_interval"].append(np.quantile(r.posterior["d"], [0.025, 0.975]))
        injected = injected_gains(m87_file(101, "lo"), seed=seed, gains=INJECTED)
        scores, level_z = injected_gain_scores(r.gains, injected_gains_at(injected, r.gains["stations"],
                                                                          r.gains["segment_time"]))
        out["levels"].append(level_z)
        out["z"].extend(score for kind, _, _, score in scores if kind == "log_amplitude")
        out["inside"].extend(hit for kind, _, hit, _ in scores if kind == "log_amplitude")
        draws = np.asarray(r.gains["log_amplitude"])
        sd = draws.reshape(-1, *draws.shape[2:]).std(axis=0)[[s != "LM" for s in r.gains["stations"]]]
        out["widths"].extend(sd[np.isfinite(sd)])
    return out


@pytest.mark.slow
def test_sampled_gains_cover_the_injected_gains(sampled_gain_scores):
    """The injected log gain amplitudes, relative to their set's mean level, are inside their 95 %
    intervals at the nominal rate and not too narrow (z rms ≤ 1.25); the data narrow the gains well
    below their prior; the true diameter is inside its 95 % interval; each set's level (known only
    through the gain prior: it trades with the total flux, so its error is shared by every gain of a set;
    scored absolutely, two sets gave rms 0.58 and four 0.92) lies within its posterior's range."""
    out = sampled_gain_scores
    for lo, hi in out["d_interval"]:
        assert lo <= TRUTH["d"] <= hi, (lo, hi)
    rate, rms = np.mean(out["inside"]), np.sqrt(np.mean(np.square(out["z"])))
    assert len(out["z"]) > 150 and 0.9 <= rate <= 0.995 and rms <= 1.25, (rate, rms, len(out["z"]))
    assert np.all(np.abs(out["levels"]) < 3.5), out["levels"]
    assert np.median(out["widths"]) < 0.6 * INJECTED["default"], np.median(out["widths"])


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="open (issue 15): the relative gain amplitudes of amp + closure phases are "
                   "too wide: z rms 0.78 over 206 gains (98.5 % inside their 95 % intervals; 0.84 with noise: none, so the "
                   "fitted noise terms explain part of it; measured 2026-12-03). Visibility fits of the same kind of "
                   "data give rms 0.96 over 1030 (bench_gains --coverage vis)")
def test_sampled_gain_intervals_are_not_too_wide(sampled_gain_scores):
    """The z-scores of the relative gain amplitudes have rms ≥ 0.85 (intervals not wider than the errors)."""
    assert np.sqrt(np.mean(np.square(sampled_gain_scores["z"]))) >= 0.85


def test_sampled_gains_group_round_trips_and_is_summarised(tmp_path):
    """The ``gains`` group: (chain, draw, station, segment) with station codes and segment times; the
    summary prints the gain model and one line per station."""
    import xarray as xr

    from vlbicore.store import format_summary, write_fit_store
    from vlbicore.testing import synthetic_fit_inputs

    inputs = synthetic_fit_inputs(1, n_draws=50)
    rng = np.random.default_rng(0)
    log_amplitude = rng.normal(0.0, 0.1, (4, 50, 3, 5))
    log_amplitude[:, :, 2, 4] = np.nan  # no data for that station in that segment
    gains = {"log_amplitude": log_amplitude, "stations": ("AA", "LM", "SM"), "segment_time": np.arange(5.0),
             "segment": "scan", "rhat": 1.001}
    attrs = {**inputs["attrs"], "gains": json.dumps(GainModel().to_dict())}
    path = write_fit_store(tmp_path / "g.zarr", **{**inputs, "attrs": attrs}, gains=gains)
    ds = xr.open_datatree(path, engine="zarr")["gains"].ds
    assert ds["log_amplitude"].dims == ("chain", "draw", "station", "segment")
    assert list(ds["station"].values) == ["AA", "LM", "SM"] and ds.attrs["segmentation"] == "scan"
    np.testing.assert_allclose(ds["log_amplitude"].values, log_amplitude, rtol=1e-6)
    text = format_summary(path)
    assert "gains:     marginal, one per station and scan, log-amplitude prior sd 0.1 (LM 1)" in text
    assert "  SM: |G| median" in text and "over 4 segments" in text


def test_command_line_fit_of_visibilities_with_gains(tmp_path):
    """``vlbicore fit DATA --products vis --gains``: sampled gains (log-amplitude and phase per station and
    segment) are stored in the ``gains`` group, named by the summary and plotted against time."""
    import subprocess
    import sys

    import xarray as xr

    out = tmp_path / "vis_gains.zarr"
    command = [sys.executable, "-m", "vlbicore", "fit", str(m87_file(101, "lo")), "--model", "thick_mring",
               "--order", "1", "--products", "vis", "--gains", "--gain-segment", "track", "--chains", "2",
               "--warmup", "60", "--samples", "60", "--starts", "8", "--out", str(out), "--quiet"]
    fit = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert fit.returncode == 0, fit.stderr[-3000:]
    tree = xr.open_datatree(out, engine="zarr")
    assert json.loads(tree.attrs["gains"])["method"] == "sampled"
    ds = tree["gains"].ds
    n_stations = len(load_observation(m87_file(101, "lo")).stations)
    assert ds["log_amplitude"].shape == (2, 60, n_stations, 1) and ds["phase"].shape == (2, 60, n_stations, 1)
    summary = subprocess.run([sys.executable, "-m", "vlbicore", "summary", str(out), "--plots", str(tmp_path / "plots"),
                              "--formats", "png"], capture_output=True, text=True, timeout=600)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "gains:     sampled, one per station and track" in summary.stdout, summary.stdout
    assert (tmp_path / "plots" / "gains.png").stat().st_size > 5000
