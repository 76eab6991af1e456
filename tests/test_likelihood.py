"""Likelihoods against hand-computed densities (scipy.stats) and against ehtim's own chi-squared functions."""
import json
import pathlib
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from conftest import m87_file
from vlbicore.data import load_uvfits
from vlbicore.errors import VlbiError
from vlbicore.likelihood import make_log_likelihood, reduced_chi_squared, with_systematic
from vlbicore.models import build_model
from vlbicore.products import build_products

import ehtim_reference_env


@pytest.fixture(scope="module")
def obs():
    return load_uvfits(m87_file(101, "lo"))


@pytest.fixture(scope="module")
def products(obs):
    return build_products(obs, ("vis", "amp", "cphase", "lcamp"))


MRING = {"type": "thick_mring", "order": 1}
MRING_P = {"F0": 0.6, "d": 42.0, "alpha": 12.0, "beta1_re": -0.2, "beta1_im": 0.1, "x0": 1.0, "y0": -2.0}


def _model_values(products, model, p):
    V = model.visibility({k: jnp.asarray(x) for k, x in p.items()}, jnp.asarray(products.obs.u), jnp.asarray(products.obs.v))
    return {kind: np.asarray(prod.predict(V)) for kind, prod in products.items()}, np.asarray(V)


def test_pointwise_densities_match_scipy(products):
    model = build_model(MRING)
    _, pointwise = make_log_likelihood(products, model)
    ll = {k: np.asarray(x) for k, x in pointwise({k: jnp.asarray(x) for k, x in MRING_P.items()}).items()}
    pred, _ = _model_values(products, model, MRING_P)
    cp, lc, amp, vis = products["cphase"], products["lcamp"], products["amp"], products["vis"]
    np.testing.assert_allclose(ll["cphase"], stats.vonmises.logpdf(cp.values, 1 / cp.sigma**2, loc=pred["cphase"]), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ll["lcamp"], stats.norm.logpdf(lc.values, pred["lcamp"], lc.sigma), rtol=1e-10)
    np.testing.assert_allclose(ll["amp"], stats.norm.logpdf(amp.values, pred["amp"], amp.sigma), rtol=1e-10)
    expected_vis = stats.norm.logpdf(vis.values.real, pred["vis"].real, vis.sigma) + stats.norm.logpdf(
        vis.values.imag, pred["vis"].imag, vis.sigma)
    np.testing.assert_allclose(ll["vis"], expected_vis, rtol=1e-10)
    assert {k: v.shape[0] for k, v in ll.items()} == products.n_data


def test_rice_amplitude_likelihood_matches_scipy(obs, products):
    model = build_model(MRING)
    amp_only = build_products(obs, ("amp",))
    _, pointwise = make_log_likelihood(amp_only, model, amp_likelihood="rice")
    ll = np.asarray(pointwise({k: jnp.asarray(x) for k, x in MRING_P.items()})["amp"])
    pred, _ = _model_values(amp_only, model, MRING_P)
    raw, sigma = np.abs(obs.vis)[amp_only["amp"].rows], amp_only["amp"].sigma
    expected = stats.rice.logpdf(raw / sigma, pred["amp"] / sigma) - np.log(sigma)
    finite = np.isfinite(expected)  # scipy underflows to -inf far in the tail, where ours stays finite
    assert finite.mean() > 0.75 and np.all(np.isfinite(ll))
    np.testing.assert_allclose(ll[finite], expected[finite], rtol=1e-8)


def test_von_mises_is_continuous_across_plus_minus_180_degrees():
    """A closure phase observed at +179.9° and a model at -179.9° are 0.2° apart, not 359.8°."""
    from vlbicore.products import ClosurePhaseProduct

    leg = np.deg2rad(5.0) ** 2 / 3  # three legs: closure σ = 5°
    arrays = {"values": np.array([np.deg2rad(179.9)]), "leg_mask": np.ones((1, 3), bool)}
    variance = np.full((1, 3), leg)
    near = float(ClosurePhaseProduct.log_density("independent", arrays, jnp.deg2rad(jnp.array([-179.9])), variance)[0][0])
    same = float(ClosurePhaseProduct.log_density("independent", arrays, jnp.deg2rad(jnp.array([179.9])), variance)[0][0])
    assert same - near == pytest.approx(0.5 * (0.2 / 5.0) ** 2, rel=1e-3)


def test_covariance_whitening_reduces_to_diagonal_when_uncorrelated(obs):
    model = build_model(MRING)
    diag = build_products(obs, ("cphase", "lcamp"))
    full = build_products(obs, ("cphase", "lcamp"), covariance=True)
    p = {k: jnp.asarray(x) for k, x in MRING_P.items()}
    ll_diag = make_log_likelihood(diag, model)[0](p)
    ll_full = make_log_likelihood(full, model)[0](p)
    assert np.isfinite(float(ll_full))
    # correlated closures carry less independent information: the two differ, but not wildly
    assert float(ll_full) != pytest.approx(float(ll_diag), rel=1e-6)
    # the per-time-stamp blocks are the full thermal covariance: their sum is the joint normal density,
    # for the precomputed whitening (one relative variance for every leg) and for the general form
    from vlbicore.likelihood import NoiseModel, likelihood_data, pointwise_log_likelihood

    V = model.visibility(p, jnp.asarray(obs.u), jnp.asarray(obs.v))
    for kind in ("cphase", "lcamp"):
        product = full[kind]
        residual = np.asarray(product.residual_of(product.values - np.asarray(product.predict(V))))
        joint = stats.multivariate_normal(np.zeros(product.n), product.cov).logpdf(residual)
        for noise, variant in ((None, "blocks_common"), (NoiseModel.of({"variability": True, "nonclosing": False},
                                                                        ("cphase", "lcamp")), "blocks")):
            layout, data = likelihood_data(full, noise=noise)
            assert layout["kinds"][kind] == variant
            values = {"noise.var_a": 0.0, "noise.var_u0": 1.0, "noise.var_b": 2.0, "noise.var_c": 2.0} if noise else {}
            total = float(np.sum(pointwise_log_likelihood(layout, data, V, noise=values)[kind]))
            assert total == pytest.approx(joint, rel=1e-9)


def test_padded_data_give_the_same_likelihood_and_predictions(obs):
    """Padding (so files of similar size share compiled programs) changes no number: padded entries add
    exactly 0 to the log-likelihood, and cut back to the real lengths everything matches, for every
    density variant (Gaussian, von Mises, Rice, whitened)."""
    from vlbicore.likelihood import likelihood_data, padded_size, pointwise_log_likelihood, predicted_products, unpad

    model = build_model(MRING)
    p = {k: jnp.asarray(x) for k, x in MRING_P.items()}
    for products, amp_likelihood in [
        (build_products(obs, ("vis", "amp", "cphase", "lcamp")), "gauss"),
        (build_products(obs, ("amp", "cphase", "lcamp"), covariance=True), "rice"),
    ]:
        results = []
        for pad in (False, True):
            layout, data = likelihood_data(products, amp_likelihood=amp_likelihood, pad=pad)
            V = model.visibility(p, data["u"], data["v"])
            ll = pointwise_log_likelihood(layout, data, V)
            results.append((float(sum(jnp.sum(x) for x in ll.values())), unpad(layout, ll),
                            unpad(layout, predicted_products(layout, data, V))))
            if pad:
                assert len(data["u"]) == padded_size(len(obs)) > len(obs)
                assert all(len(ll[k]) == padded_size(products[k].n) for k in products)
        (total, ll, pred), (total_padded, ll_padded, pred_padded) = results
        assert total_padded == pytest.approx(total, rel=1e-12)
        for kind in products:
            np.testing.assert_allclose(ll_padded[kind], ll[kind], rtol=1e-12)
            np.testing.assert_allclose(pred_padded[kind], pred[kind], rtol=1e-12)


def test_padded_size_steps():
    from vlbicore.likelihood import padded_size

    assert [padded_size(n) for n in (0, 8, 9, 17, 33, 84, 152, 189, 194, 1000)] == [8, 8, 10, 20, 40, 96, 160, 192, 224, 1024]
    for n in range(1, 5000):
        assert n <= padded_size(n) <= max(8, 1.25 * n)


def test_gradients_are_finite(products):
    model = build_model(MRING)
    loglike, _ = make_log_likelihood(products, model)
    grads = jax.grad(loglike)({k: jnp.asarray(x) for k, x in MRING_P.items()})
    assert all(np.isfinite(float(g)) for g in grads.values())


def test_systematic_error_adds_in_quadrature(obs):
    inflated = with_systematic(obs, 0.1)
    np.testing.assert_allclose(inflated.sigma**2, obs.sigma**2 + (0.1 * np.abs(obs.vis)) ** 2)
    assert with_systematic(obs, 0.0) is obs
    with pytest.raises(VlbiError, match="systematic"):
        with_systematic(obs, -0.1)


_EHTIM_CHISQ = r'''
import contextlib, io, json, sys, warnings
warnings.simplefilter("ignore")
with contextlib.redirect_stdout(io.StringIO()):
    import numpy as np
    import ehtim as eh
    import ehtim.modeling.modeling_utils as mu
UAS = np.pi / 180 / 3600 / 1e6
job = json.load(open(sys.argv[1]))
p = job["params"]
with contextlib.redirect_stdout(io.StringIO()):
    model = eh.model.Model().add_thick_mring(F0=p["F0"], d=p["d"] * UAS, alpha=p["alpha"] * UAS,
        beta_list=[complex(p["beta1_re"], p["beta1_im"])], x0=p["x0"] * UAS, y0=p["y0"] * UAS)
uv = lambda k: [np.asarray(a) for a in job[k]]
out = {
    "cphase": mu.chisq_cphase(model, uv("cphase_uv"), np.asarray(job["cphase"]), np.asarray(job["cphase_sigma"])),
    "logcamp": mu.chisq_logcamp(model, uv("lcamp_uv"), np.asarray(job["lcamp"]), np.asarray(job["lcamp_sigma"])),
    "amp": mu.chisq_amp(model, np.asarray(job["amp_uv"]), np.asarray(job["amp"]), np.asarray(job["amp_sigma"])),
}
json.dump(out, open(sys.argv[2], "w"))
'''


def _baseline_uv(obs, rows, signs):
    """(u, v) per closure leg, flipped where the loop runs the baseline backwards (V(-u,-v) = conj V)."""
    return [np.stack([signs[:, j] * obs.u[rows[:, j]], signs[:, j] * obs.v[rows[:, j]]], axis=1).tolist()
            for j in range(rows.shape[1])]


def test_reduced_chi2_equals_ehtims_chisq_functions(obs):
    """ehtim's modeling_utils chi-squared (its model code, numpy < 2 side environment) on our data sets."""
    try:
        python = ehtim_reference_env.ensure_venv()
    except ehtim_reference_env.EhtimEnvUnavailable as exc:
        pytest.skip(f"ehtim reference environment unavailable: {exc}")
    products = build_products(obs, ("amp", "cphase", "lcamp"))
    cp, lc, amp = products["cphase"], products["lcamp"], products["amp"]
    triangles = np.sum(cp.signs != 0, axis=1) == 3
    assert triangles.mean() > 0.9
    cp_rows, cp_signs = cp.rows[triangles][:, :3], cp.signs[triangles][:, :3]
    lc_uv = [np.stack([obs.u[lc.rows[:, j]], obs.v[lc.rows[:, j]]], axis=1).tolist() for j in range(4)]
    assert np.array_equal(lc.signs[0], [1, 1, -1, -1])
    job = {
        "params": MRING_P,
        "cphase_uv": _baseline_uv(obs, cp_rows, cp_signs),
        "cphase": np.rad2deg(cp.values[triangles]).tolist(),
        "cphase_sigma": np.rad2deg(cp.sigma[triangles]).tolist(),
        "lcamp_uv": lc_uv, "lcamp": lc.values.tolist(), "lcamp_sigma": lc.sigma.tolist(),
        "amp_uv": np.stack([obs.u[amp.rows], obs.v[amp.rows]], axis=1).tolist(),
        "amp": amp.values.tolist(), "amp_sigma": amp.sigma.tolist(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "run.py").write_text(_EHTIM_CHISQ)
        (tmp / "job.json").write_text(json.dumps(job))
        subprocess.run([str(python), str(tmp / "run.py"), str(tmp / "job.json"), str(tmp / "out.json")], check=True,
                       capture_output=True, timeout=300)
        ehtim_chi2 = json.loads((tmp / "out.json").read_text())

    model = build_model(MRING)
    ours = reduced_chi_squared(products, model, MRING_P)
    assert ours["lcamp"][0] == pytest.approx(ehtim_chi2["logcamp"], rel=1e-6)
    assert ours["amp"][0] == pytest.approx(ehtim_chi2["amp"], rel=1e-6)
    # closure phases: ehtim's function on the triangles; ours on the same triangles
    from vlbicore.likelihood import chi_squared

    tri = build_products(obs, ("cphase",))
    chi2_tri = chi_squared(_only_rows(tri, triangles), model, MRING_P)["cphase"]
    assert chi2_tri[0] / chi2_tri[1] == pytest.approx(ehtim_chi2["cphase"], rel=1e-6)


def _only_rows(products, keep):
    import dataclasses

    cp = products["cphase"]
    sub = dataclasses.replace(cp, rows=cp.rows[keep], signs=cp.signs[keep], values=cp.values[keep], sigma=cp.sigma[keep],
                              time=cp.time[keep], labels=cp.labels[keep], uvdist=cp.uvdist[keep])
    return dataclasses.replace(products, products={"cphase": sub})


def test_gradients_are_finite_for_every_padded_density_variant(obs):
    """Padded entries are masked, and so must their gradients be: a padded closure has no legs (variance 0),
    and a NaN in the masked branch once turned every gradient into NaN (the optimiser then stalled in
    wrong modes). Every variant, with and without error terms."""
    from vlbicore.likelihood import NoiseModel, likelihood_data, pointwise_log_likelihood

    model = build_model(MRING)
    for kinds, covariance, setting in [(("cphase", "lcamp"), False, "none"), (("cphase", "lcamp"), False, "default"),
                                       (("cphase", "lcamp"), True, "none"), (("cphase", "lcamp"), True, {"variability": True}),
                                       (("amp", "cphase"), True, "default"), (("vis",), False, "default")]:
        products = build_products(obs, kinds, covariance=covariance)
        noise = NoiseModel.of(setting, kinds)
        layout, data = likelihood_data(products, pad=True, noise=noise)
        terms = {"noise.nonclosing": 0.03, "noise.fractional": 0.05, "noise.var_a": 0.01, "noise.var_u0": 1.0,
                 "noise.var_b": 2.0, "noise.var_c": 2.0}

        def total(p):
            V = model.visibility(p, data["u"], data["v"])
            values = {k: v for k, v in terms.items() if k in noise.names}
            return sum(jnp.sum(x) for x in pointwise_log_likelihood(layout, data, V, noise=values).values())

        grad = jax.grad(total)({k: jnp.asarray(x) for k, x in MRING_P.items()})
        assert all(np.isfinite(float(g)) for g in grad.values()), (kinds, covariance, setting, grad)
