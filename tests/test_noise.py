"""The fitted error terms: which terms a fit gets, their exact densities (normalising terms included) and
the variability power law."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from conftest import m87_file
from vlbicore.data import load_uvfits
from vlbicore.errors import VlbiError
from vlbicore.likelihood import NoiseModel, make_log_likelihood
from vlbicore.likelihood.noise import variability_variance
from vlbicore.models import build_model
from vlbicore.products import build_products

P = {"F0": 0.6, "d": 42.0, "alpha": 10.0, "beta1_re": -0.1, "beta1_im": 0.1, "x0": 0.0, "y0": 0.0}


@pytest.fixture(scope="module")
def obs():
    return load_uvfits(m87_file(101, "lo"))


def test_default_terms_follow_the_products():
    assert NoiseModel.of("default", ("cphase", "lcamp")).names == ("noise.nonclosing",)
    assert NoiseModel.of("default", ("amp", "cphase")).names == ("noise.nonclosing", "noise.fractional")
    assert NoiseModel.of("default", ("vis",)).names == ("noise.fractional",)
    assert NoiseModel.of("none", ("amp", "cphase")).names == ()
    assert NoiseModel.of({"variability": True}, ("vis",)).names[1:] == ("noise.var_a", "noise.var_u0", "noise.var_b",
                                                                          "noise.var_c")
    fixed = NoiseModel.of("default", ("cphase",), fixed={"noise.nonclosing": 0.02})
    assert fixed.names == () and fixed.values({}) == {"noise.nonclosing": 0.02}
    prior = NoiseModel.of("default", ("cphase",), priors={"noise.nonclosing": {"halfnormal": 0.03}})
    assert prior.params[0].prior == ("halfnormal", 0.03)


@pytest.mark.parametrize("setting, priors, message", [
    ({"nonclosng": True}, {}, "nonclosng"),
    ("default", {"noise.fractional": {"halfnormal": 0.1}}, "not a noise term of this fit"),
    ("always", {}, "always"),
])
def test_bad_noise_settings_are_one_line(setting, priors, message):
    with pytest.raises(VlbiError, match=message) as error:
        NoiseModel.of(setting, ("cphase", "lcamp"), priors)
    assert "\n" not in str(error.value)


def test_closure_density_with_the_nonclosing_term_is_the_exact_normal(obs):
    """Every leg's relative variance gains f²: the summed log-likelihood equals the joint normal density of
    the closures with C = A diag(σ²/|V|² + f²) Aᵀ, log det C included (so LOO compares noise models)."""
    model = build_model({"type": "thick_mring", "order": 1})
    products = build_products(obs, ("cphase", "lcamp"), covariance=True)
    noise = NoiseModel.of("default", ("cphase", "lcamp"))
    loglike = make_log_likelihood(products, model, noise=noise)[0]
    V = np.asarray(model.visibility(P, obs.u, obs.v))
    for f in (0.0, 0.03, 0.2):
        expected = 0.0
        for product in products.values():
            design = np.zeros((product.n, len(obs)))
            for k in range(product.n):
                np.add.at(design[k], product.rows[k], product.signs[k])
            cov = (design * ((obs.sigma / np.abs(obs.vis)) ** 2 + f**2)) @ design.T
            residual = np.asarray(product.residual_of(product.values - np.asarray(product.predict(V))))
            expected += stats.multivariate_normal(np.zeros(product.n), cov).logpdf(residual)
        assert float(loglike({**P, "noise.nonclosing": f})) == pytest.approx(expected, rel=1e-10)


def test_amplitude_density_with_the_fractional_term(obs):
    model = build_model({"type": "thick_mring", "order": 1})
    products = build_products(obs, ("amp",))
    noise = NoiseModel.of("default", ("amp",))
    amp = products["amp"]
    model_amp = np.abs(np.asarray(model.visibility(P, obs.u, obs.v)))[amp.rows]
    sd = np.sqrt(amp.sigma**2 + (0.1 * np.abs(obs.vis[amp.rows])) ** 2)
    expected = stats.norm.logpdf(amp.values, model_amp, sd).sum()
    assert float(make_log_likelihood(products, model, noise=noise)[0]({**P, "noise.fractional": 0.1})) == \
        pytest.approx(expected, rel=1e-10)


def test_variability_power_law_is_a_at_4_glambda_and_breaks_at_u0():
    jax.config.update("jax_enable_x64", True)
    noise = {"noise.var_a": 0.02, "noise.var_u0": 2.0, "noise.var_b": 3.0, "noise.var_c": 2.0}
    uv = jnp.array([0.2e9, 4e9, 40e9])
    sigma = np.sqrt(np.asarray(variability_variance(noise, uv)))
    assert sigma[1] == pytest.approx(0.02, rel=1e-12)
    # σ² ∝ |u|^c well below the break and ∝ |u|^-b well above it
    low = np.sqrt(np.asarray(variability_variance(noise, jnp.array([0.01e9, 0.02e9]))))
    high = np.sqrt(np.asarray(variability_variance(noise, jnp.array([200e9, 400e9]))))
    assert 2 * np.log2(low[1] / low[0]) == pytest.approx(2.0, abs=0.01)
    assert 2 * np.log2(high[1] / high[0]) == pytest.approx(-3.0, abs=0.01)
    assert sigma[0] < sigma[1] and sigma[2] < sigma[1]
