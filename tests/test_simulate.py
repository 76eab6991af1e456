"""Synthetic observations: written uvfits load back, closures match the model, noise matches sigma."""
import functools

import numpy as np
import pytest
from conftest import m87_file
from scipy.special import j0

from vlbicore.data import ehtim, load_uvfits, quiet
from vlbicore.errors import VlbiError
from vlbicore.products import build_products
from vlbicore.data.simulate import parse_params, simulate_observation
from vlbicore.units import RAD_PER_UAS


def ring_with_hotspot(u, v):
    """A 42 µas thin ring (0.6 Jy) plus an offset point (0.2 Jy): non-zero closure phases."""
    rho = np.hypot(u, v)
    ring = 0.6 * j0(np.pi * 42 * RAD_PER_UAS * rho)
    spot = 0.2 * np.exp(2j * np.pi * (u * 15 * RAD_PER_UAS + v * 5 * RAD_PER_UAS))
    return ring + spot


@functools.lru_cache(maxsize=None)
def simulated(tmp_dir, noise, like=None, seed=0):
    """(written path, loaded scan-averaged Observation), shared across tests."""
    out = tmp_dir / f"sim_{noise}_{seed}_{like is not None}.uvfits"
    simulate_observation(ring_with_hotspot, array="EHT2017", like=like, noise=noise, seed=seed, out=out)
    return out, load_uvfits(out)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("simulate")


def residuals(products, obs):
    model = ring_with_hotspot(obs.u, obs.v)
    out = {}
    for kind, p in products.items():
        r = np.asarray(p.predict(model)) - p.values
        out[kind] = np.angle(np.exp(1j * r)) if kind == "cphase" else r
    return out


def test_noise_free_ring_closures_match_the_model(tmp_dir):
    path, obs = simulated(tmp_dir, noise=False)
    assert set(obs.stations) == {"AA", "AP", "AZ", "JC", "LM", "PV", "SM"}  # uvfits codes, not ALMA...
    assert (obs.source, obs.date, obs.band) == ("M87", "2017-04-11", "lo")
    assert obs.flag_counts["intra_site"] > 0 and obs.uvdist.min() > 1e9
    products = build_products(obs, ("cphase", "lcamp"))
    assert products["cphase"].n > 200 and products["lcamp"].n > 200
    assert np.max(np.abs(products["cphase"].values)) > 0.5  # the model is far from point-symmetric
    r = residuals(products, obs)
    # float32 storage in uvfits: ~1e-6 relative
    assert np.max(np.abs(r["cphase"])) < 1e-4 and np.max(np.abs(r["lcamp"])) < 1e-4
    with quiet():
        assert len(ehtim().obsdata.load_uvfits(str(path)).data) > len(obs)  # ehtim reads it too


def test_noise_scatter_matches_sigma(tmp_dir):
    _, obs = simulated(tmp_dir, noise=True, seed=3)
    products = build_products(obs, ("vis", "cphase", "lcamp"))
    r = residuals(products, obs)
    for kind, p in products.items():
        dof = 2 * p.n if kind == "vis" else p.n
        chi2 = np.sum(np.abs(r[kind] / p.sigma) ** 2) / dof
        # std of chi2/dof is sqrt(2/dof) <= 0.07 here; closures at SNR ~ 10-100 add ~4/SNR^2
        assert chi2 == pytest.approx(1.0, abs=0.2), kind


def test_like_copies_the_real_coverage_and_sigmas(tmp_dir):
    real_path = m87_file(100, "lo")
    _, obs = simulated(tmp_dir, noise=False, like=real_path)
    real = load_uvfits(real_path)
    assert (obs.source, obs.date, obs.band, obs.stations) == (real.source, real.date, real.band, real.stations)
    np.testing.assert_array_equal(obs.time, real.time)
    np.testing.assert_allclose(obs.u, real.u, rtol=1e-6)
    np.testing.assert_allclose(obs.sigma, real.sigma, rtol=1e-5)
    products = build_products(obs, ("cphase", "lcamp"))
    assert products["cphase"].n == build_products(real, "cphase")["cphase"].n
    r = residuals(products, obs)
    # 10-s records averaged over scans of up to ~10 min: the mean of the model along the uv track
    # differs from the model at the mean (u, v) at second order (measured 1.3e-4 rad at most)
    assert np.max(np.abs(r["cphase"])) < 1e-3 and np.max(np.abs(r["lcamp"])) < 1e-3


def test_seeded_noise_is_reproducible():
    a = simulate_observation(ring_with_hotspot, tstart=4, tstop=8, seed=7)
    b = simulate_observation(ring_with_hotspot, tstart=4, tstop=8, seed=7)
    c = simulate_observation(ring_with_hotspot, tstart=4, tstop=8, seed=8)
    clean = simulate_observation(ring_with_hotspot, tstart=4, tstop=8, noise=False)
    np.testing.assert_array_equal(a.vis, b.vis)
    assert not np.allclose(a.vis, c.vis)
    np.testing.assert_allclose(clean.vis, ring_with_hotspot(clean.u, clean.v))
    pulls = (a.vis - clean.vis) / a.sigma
    assert np.std(pulls.real) == pytest.approx(1.0, abs=0.15) and np.std(pulls.imag) == pytest.approx(1.0, abs=0.15)
    assert a.path == "<simulated>" and np.all(a.time >= 4) and np.all(a.time <= 8)


def test_bad_simulation_inputs(tmp_path):
    with pytest.raises(VlbiError, match="EHT1999.*EHT2017"):
        simulate_observation(ring_with_hotspot, array="EHT1999")
    with pytest.raises(VlbiError, match="model_fn: returned shape"):
        simulate_observation(lambda u, v: np.ones(3), tstart=4, tstop=5)
    with pytest.raises(VlbiError, match="NaN"):
        simulate_observation(lambda u, v: u * np.nan, tstart=4, tstop=5)
    with pytest.raises(VlbiError, match="output folder does not exist"):
        simulate_observation(ring_with_hotspot, tstart=4, tstop=5, out=tmp_path / "no" / "x.uvfits")
    with pytest.raises(VlbiError, match="tstop > tstart"):
        simulate_observation(ring_with_hotspot, tstart=5, tstop=4)


def test_command_line_simulation_of_an_mring(tmp_path, capsys):
    from vlbicore.cli import main
    from vlbicore.models import visibility

    out = tmp_path / "mring.uvfits"
    status = main(["simulate", "--model", "mring", "--param", "F0=0.6", "--param", "d=42",
                   "--param", "beta_list=0.2+0.1j", "--out", str(out), "--no-noise"])
    assert status in (0, None) and "mring" in capsys.readouterr().out
    obs = load_uvfits(out)
    cphase = build_products(obs, "cphase")["cphase"]
    model = np.asarray(visibility("mring", obs.u, obs.v, F0=0.6, d=42.0, beta_list=[0.2 + 0.1j]))
    residual = np.angle(np.exp(1j * (np.asarray(cphase.predict(model)) - cphase.values)))
    assert np.max(np.abs(cphase.values)) > 0.3 and np.max(np.abs(residual)) < 1e-4
    with pytest.raises(VlbiError, match="NAME=VALUE"):
        parse_params(["d"])
    assert parse_params(["d=42", "beta_list=0.2+0.1j,-0.05j"]) == {"d": 42.0, "beta_list": [0.2 + 0.1j, -0.05j]}


def test_uncalibrated_phases_are_told_apart_from_a_source():
    """A vis fit needs calibrated phases: random station phases per scan (as raw EHT data have) trip the
    one-line warning that points to closure products or gains; the same ring with calibrated phases does
    not."""
    import jax.numpy as jnp

    from vlbicore.data.quality import uncalibrated_phases
    from vlbicore.models import build_model

    ring = build_model({"type": "mring", "order": 1})
    truth = {"F0": 0.6, "d": 42.0, "beta1_re": -0.1, "beta1_im": 0.15, "x0": 0.0, "y0": 0.0}
    model_fn = lambda u, v: ring.visibility({k: jnp.asarray(x) for k, x in truth.items()}, u, v)  # noqa: E731
    common = dict(tint=60.0, tadv=600.0, seed=4)
    calibrated = simulate_observation(model_fn, **common)
    assert uncalibrated_phases(calibrated) is None
    raw = simulate_observation(model_fn, gains=0.1, **common)  # gains: log-amplitude sd 0.1, phases uniform
    warning = uncalibrated_phases(raw)
    assert warning and "uncalibrated" in warning and "cphase" in warning and "gains" in warning
    assert "\n" not in warning

    # a vis fit with gain phases per scan models exactly these phases: no warning; one gain for the track does not
    from vlbicore.config import FitConfig
    from vlbicore.pipeline import data_quality_warnings

    def warns(gains):
        return bool(data_quality_warnings(raw, FitConfig.from_dict({"model": {"type": "mring", "order": 1},
                                                                    "products": ["vis"], "gains": gains})))

    assert warns(False) and warns({"segment": "track"}) and not warns(True) and not warns({"segment": "integration"})
