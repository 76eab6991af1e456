"""Mode finding, chain-parallel NUTS and convergence diagnostics on targets with known answers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlbicore.inference.diagnostics import convergence_verdict, ess_bulk, ess_tail, parameter_diagnostics, rhat
from vlbicore.errors import VlbiError
from vlbicore.inference import (BatchGradient, Box, NutsRunner, SamplerSettings, devices_for, find_modes, log_posterior_fn,
                                run_nuts, segment_length)

BOX = Box(("a", "b"), np.array([-10.0, -10.0]), np.array([10.0, 10.0]))


def bimodal_loglike(p):
    """Mode at a = +4 (log weight 0) and a weaker one at a = -4 (log weight -5); b ~ N(1, 2)."""
    a_term = jnp.logaddexp(-0.5 * ((p["a"] - 4) / 0.5) ** 2, -0.5 * ((p["a"] + 4) / 0.5) ** 2 - 5.0)
    return a_term - 0.5 * ((p["b"] - 1) / 2) ** 2


LOG_POST = log_posterior_fn(BOX, bimodal_loglike)


@pytest.fixture(scope="module")
def modes():
    batch = BatchGradient.of_function(LOG_POST, 32, jnp.float64)
    return find_modes(batch, BOX, jax.random.PRNGKey(0), starts=32, steps=300)


def test_find_modes_records_both_modes_best_first(modes):
    assert len(modes) == 2
    assert modes[0].values[0] == pytest.approx(4.0, abs=0.05)
    assert modes[1].values[0] == pytest.approx(-4.0, abs=0.05)
    assert modes[0].lp - modes[1].lp == pytest.approx(5.0, abs=0.2)
    assert sum(m.starts for m in modes) == 32


def test_find_modes_rejects_nowhere_finite_posterior():
    with pytest.raises(VlbiError, match="priors"):
        batch = BatchGradient.of_function(lambda z: jnp.nan * jnp.sum(z), 4, jnp.float64)
        find_modes(batch, BOX, jax.random.PRNGKey(0), starts=4, steps=5)


def _run(method, chains, z_start=None, warmup=300, samples=600, seed=1):
    settings = SamplerSettings(chains=chains, warmup=warmup, samples=samples, chain_method=method)
    if z_start is None:
        z_start = jnp.tile(jnp.asarray(BOX.to_unconstrained([4.0, 1.0])), (chains, 1))
    runner = NutsRunner.of_function(LOG_POST, settings, devices_for(chains, method))
    batch = BatchGradient.of_function(LOG_POST, chains, z_start.dtype)
    return run_nuts(runner, batch, z_start, settings, jax.random.PRNGKey(seed))


@pytest.fixture(scope="module")
def parallel_run():
    return _run("parallel", 4)


def test_parallel_chains_use_all_four_devices_and_recover_the_target(parallel_run):
    draws, warm, devices, timings = parallel_run
    assert len(jax.local_devices()) == 4 and len(devices) == 4
    x = np.asarray(BOX.to_values(draws["z"]))
    assert x.shape == (4, 600, 2)
    assert x[..., 0].mean() == pytest.approx(4.0, abs=0.05)
    assert x[..., 1].mean() == pytest.approx(1.0, abs=0.3)
    assert x[..., 1].std() == pytest.approx(2.0, rel=0.15)
    assert not draws["diverging"].any()
    assert set(timings) == {"warmup", "sampling"}


@pytest.mark.parametrize("method", ["vectorized", "sequential"])
def test_chain_methods_agree_in_distribution(parallel_run, method):
    # same seeds, but differently compiled code: rounding differs and trajectories diverge chaotically,
    # so compare posterior summaries, not bytes
    draws, _, devices, _ = _run(method, 4)
    assert len(devices) == 1
    ours = np.asarray(BOX.to_values(draws["z"]))
    ref = np.asarray(BOX.to_values(parallel_run[0]["z"]))
    assert ours[..., 0].mean() == pytest.approx(ref[..., 0].mean(), abs=0.05)
    assert ours[..., 1].mean() == pytest.approx(ref[..., 1].mean(), abs=0.4)
    assert ours[..., 1].std() == pytest.approx(ref[..., 1].std(), rel=0.2)


def test_more_chains_than_devices_are_vectorised_within_devices():
    assert len(devices_for(6, "parallel")) == 3
    assert len(devices_for(5, "parallel")) == 1 or len(devices_for(5, "parallel")) == 5
    draws, _, devices, _ = _run("parallel", 6, warmup=100, samples=100)
    assert len(devices) == 3 and draws["lp"].shape == (6, 100)


def test_segment_length_divides_warmup_and_samples():
    for warmup, samples in [(1000, 2000), (300, 300), (301, 300), (50, 70)]:
        seg = segment_length(warmup, samples)
        assert warmup % seg == 0 and samples % seg == 0


def test_chains_stuck_in_different_modes_are_flagged_not_averaged():
    z_start = jnp.asarray([BOX.to_unconstrained([4.0, 1.0])] * 2 + [BOX.to_unconstrained([-4.0, 1.0])] * 2)
    draws, *_ = _run("parallel", 4, z_start=z_start, warmup=200, samples=300)
    posterior = {"a": np.asarray(BOX.to_values(draws["z"]))[..., 0]}
    verdict = convergence_verdict(parameter_diagnostics(posterior), draws["diverging"], draws["lp"])
    assert verdict["converged"] is False
    assert verdict["max_rhat"] > 1.5
    assert any("R-hat" in r for r in verdict["reasons"])
    assert any("chains disagree" in r for r in verdict["reasons"])


def test_rank_normalised_diagnostics_on_iid_and_shifted_chains():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 1000))
    assert rhat(iid) < 1.01
    assert 3000 < ess_bulk(iid) < 5000 and 2500 < ess_tail(iid) < 5000
    shifted = iid + np.array([0.0, 0.0, 0.0, 1.0])[:, None]
    assert rhat(shifted) > 1.05
    ar = np.zeros((4, 1000))
    for t in range(1, 1000):  # AR(1), rho = 0.9: ESS about N (1 - rho)/(1 + rho) ~ 210
        ar[:, t] = 0.9 * ar[:, t - 1] + rng.normal(size=4)
    assert 100 < ess_bulk(ar) < 400


def test_sampler_settings_name_the_bad_field():
    with pytest.raises(VlbiError, match="sampler.target_accept"):
        SamplerSettings(target_accept=1.5)
    with pytest.raises(VlbiError, match="unknown setting"):
        SamplerSettings.from_dict({"chain": 4})


def test_angle_spanning_its_whole_box_has_a_circular_median_and_no_edge():
    """A crescent's phi in [0, 2π) near 0: draws at both ends of the box are one posterior, not an edge."""
    from vlbicore.inference import posterior_median, prior_edge_warnings

    box = Box(("phi", "d"), np.array([0.0, 0.0]), np.array([2 * np.pi, 100.0]))
    rng = np.random.default_rng(0)
    phi = (-0.01 + 0.05 * rng.normal(size=4000)) % (2 * np.pi)  # just below 0: most draws near 2π
    values = np.stack([phi, 50 + rng.normal(size=4000)], axis=1)
    median = posterior_median(box, values, {"phi": 2 * np.pi})
    assert 0 <= median["phi"] < 2 * np.pi
    def error(angle):  # distance to the true -0.01 on the circle
        return abs(np.angle(np.exp(1j * (angle + 0.01))))

    assert error(median["phi"]) < 0.005
    assert error(np.median(phi)) > 0.05  # the linear median is pulled off by the draws wrapped to ~0
    best = np.array([0.001, 50.0])
    assert prior_edge_warnings(box, best, values[0], {"phi": 2 * np.pi}) == []
    assert any(w.startswith("phi:") for w in prior_edge_warnings(box, best))  # without the period: an edge
