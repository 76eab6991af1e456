"""vlbicore.models: agreement with ehtim 1.3.2, NaN-free values and gradients, modifiers, specs and errors."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ehtim_reference_env import EhtimEnvUnavailable, ehtim_sample_uv
from vlbicore import models
from vlbicore.errors import VlbiError
from vlbicore.models import (Convolved, Gaussian, MRing, Ring, Rotated, Shifted, Stretched, Sum, ThickRing,
                             build_model, describe_models, visibility)

jax.config.update("jax_enable_x64", True)

REFERENCE = json.loads((__import__("pathlib").Path(__file__).parent / "data" / "ehtim_reference.json").read_text())
U_REF, V_REF = np.asarray(REFERENCE["u"]), np.asarray(REFERENCE["v"])


def assert_matches_ehtim(ours, theirs, label):
    scale = np.max(np.abs(theirs))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9 * scale, err_msg=label)


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: c["type"])
def test_stored_ehtim_values(case):
    ours = np.asarray(visibility(case["type"], U_REF, V_REF, **case["params"]))
    theirs = np.asarray(case["re"]) + 1j * np.asarray(case["im"])
    assert len(theirs) >= 50
    assert_matches_ehtim(ours, theirs, case["type"])


def random_cases(rng):
    """Fresh parameters for every ehtim type (m-ring types at orders 1..3), sizes in µas, angles in rad."""
    r = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    shift = lambda: dict(x0=r(-15, 15), y0=r(-15, 15))  # noqa: E731
    stretch = lambda: dict(stretch=r(1.0, 1.8), stretch_PA=r(0, math.pi))  # noqa: E731
    betas = lambda n: [[r(-0.3, 0.3), r(-0.3, 0.3)] for _ in range(n)]  # noqa: E731
    cases = [
        ("point", dict(F0=r(0.2, 2))),
        ("circ_gauss", dict(F0=r(0.2, 2), FWHM=r(5, 80))),
        ("gauss", dict(F0=r(0.2, 2), FWHM_maj=r(20, 80), FWHM_min=r(5, 40), PA=r(0, math.pi))),
        ("disk", dict(F0=r(0.2, 2), d=r(10, 100))),
        ("blurred_disk", dict(F0=r(0.2, 2), d=r(10, 100), alpha=r(1, 30))),
        ("crescent", dict(F0=r(0.2, 2), d=r(20, 100), fr=r(0.1, 0.9), fo=r(0, 1), ff=r(0, 1), phi=r(0, 2 * math.pi))),
        ("ring", dict(F0=r(0.2, 2), d=r(10, 120))),
        ("stretched_ring", dict(F0=r(0.2, 2), d=r(10, 120), **stretch())),
        ("thick_ring", dict(F0=r(0.2, 2), d=r(10, 120), alpha=r(1, 30))),
        ("stretched_thick_ring", dict(F0=r(0.2, 2), d=r(10, 120), alpha=r(1, 30), **stretch())),
    ]
    for order in (1, 2, 3):
        cases += [
            ("mring", dict(F0=r(0.2, 2), d=r(20, 120), beta_list=betas(order))),
            ("thick_mring", dict(F0=r(0.2, 2), d=r(20, 120), alpha=r(1, 30), beta_list=betas(order))),
            ("stretched_mring", dict(F0=r(0.2, 2), d=r(20, 120), beta_list=betas(order), **stretch())),
            ("stretched_thick_mring", dict(F0=r(0.2, 2), d=r(20, 120), alpha=r(1, 30), beta_list=betas(order),
                                           **stretch())),
        ]
    return [{"type": name, "params": {**params, **shift()}} for name, params in cases]


def test_fresh_random_parameters_against_live_ehtim():
    rng = np.random.default_rng(20240611)
    cases = random_cases(rng)
    assert {c["type"] for c in cases} == set(models.MODEL_TYPES)
    rho = np.concatenate([[0.0], rng.uniform(0, 1.2e10, 79)])  # includes the origin and the longest baselines
    angle = rng.uniform(0, 2 * math.pi, rho.size)
    u, v = rho * np.cos(angle), rho * np.sin(angle)
    try:
        theirs = ehtim_sample_uv(cases, u, v)
    except EhtimEnvUnavailable as exc:
        print(f"ehtim reference environment unavailable: {exc}")
        pytest.skip(f"ehtim reference environment unavailable: {exc}")
    for case, ref in zip(cases, theirs):
        label = f"{case['type']} {case['params']}"
        assert_matches_ehtim(np.asarray(visibility(case["type"], u, v, **case["params"])), ref, label)


# ---------------------------------------------------------------------------------------------------------
# Numerical safety: every type, at the edges of the prior box and at the uv origin.

SPECS = [{"type": t, "order": 2} if "mring" in t else t for t in models.MODEL_TYPES]
UV_WITH_ORIGIN = (jnp.asarray([0.0, 0.0, 1e6, 3e9, -7e9]), jnp.asarray([0.0, 1e-3, 0.0, 4e9, 2e9]))


def box_corners(model):
    """Parameters at the low corner, the high corner and the centre of the default box, stacked."""
    return {q.name: jnp.asarray([q.low, q.high, 0.5 * (q.low + q.high)]) for q in model.params}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s if isinstance(s, str) else s["type"])
def test_no_nan_values_or_gradients_in_the_prior_box(spec):
    model = build_model(spec)
    u, v = UV_WITH_ORIGIN

    def loss(p, u, v):
        vis = model.visibility(p, u, v)
        return jnp.sum(jnp.real(vis) + 0.3 * jnp.imag(vis) + jnp.abs(vis) ** 2)

    def checks(p):
        return model.visibility(p, u, v), jax.grad(loss, argnums=(0, 1, 2))(p, u, v)

    corners = box_corners(model)
    vis, (g_p, g_u, g_v) = jax.jit(jax.vmap(checks))(corners)
    assert np.all(np.isfinite(np.asarray(vis))), spec
    np.testing.assert_allclose(np.asarray(vis[:, 0]), np.asarray(corners.get("F0", 1.0)), rtol=1e-12)  # V(0) = flux
    for name, g in g_p.items():
        assert np.all(np.isfinite(np.asarray(g))), (spec, name, g)
    assert np.all(np.isfinite(np.asarray(g_u))) and np.all(np.isfinite(np.asarray(g_v))), spec


def test_gradients_are_correct_and_float32_works():
    model = build_model({"type": "stretched_thick_mring", "order": 2})
    p = {"F0": 0.7, "d": 42.0, "alpha": 9.0, "beta1_re": 0.12, "beta1_im": -0.21, "beta2_re": 0.05,
         "beta2_im": 0.03, "stretch": 1.2, "stretch_PA": 0.4, "x0": 3.0, "y0": -2.0}
    u, v = jnp.asarray([0.0, 2.1e9, -5e9, 6.3e9]), jnp.asarray([0.0, 3.5e9, 1.1e9, -4.4e9])

    @jax.jit
    def loss(p):
        vis = model.visibility(p, u, v)
        return jnp.sum(jnp.real(vis) ** 2 - jnp.imag(vis))

    grad = jax.jit(jax.grad(loss))(p)
    for name in ("d", "alpha", "beta1_im", "stretch_PA", "x0"):
        step = 1e-5 * max(1.0, abs(p[name]))
        finite_diff = (loss({**p, name: p[name] + step}) - loss({**p, name: p[name] - step})) / (2 * step)
        assert float(grad[name]) == pytest.approx(float(finite_diff), rel=1e-6, abs=1e-9), name

    p32 = {k: jnp.float32(val) for k, val in p.items()}
    vis32 = model.visibility(p32, u.astype(jnp.float32), v.astype(jnp.float32))
    assert vis32.dtype == jnp.complex64
    np.testing.assert_allclose(np.asarray(vis32), np.asarray(model.visibility(p, u, v)), atol=2e-5)
    assert all(np.isfinite(float(g)) for g in jax.grad(lambda q: jnp.sum(jnp.abs(
        model.visibility(q, u.astype(jnp.float32), v.astype(jnp.float32)))))(p32).values())


def test_vmap_over_parameters_matches_a_loop():
    model = build_model({"type": "thick_mring", "order": 1})
    draws = {q.name: jnp.asarray(np.random.default_rng(3).uniform(q.low, q.high, 5)) for q in model.params}
    u, v = jnp.asarray(U_REF[:20]), jnp.asarray(V_REF[:20])
    batched = jax.jit(jax.vmap(lambda p: model.visibility(p, u, v)))(draws)
    assert batched.shape == (5, 20)
    for i in range(5):
        single = model.visibility({k: val[i] for k, val in draws.items()}, u, v)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------
# Modifiers and composition.


def test_modifiers_agree_with_closed_forms():
    u, v = jnp.asarray(U_REF), jnp.asarray(V_REF)
    gauss0 = {"F0": 1.0, "FWHM_maj": 40.0, "FWHM_min": 15.0, "PA": 0.0}
    rotated = Rotated(Gaussian())({**gauss0, "rotation": 0.7}, u, v)
    np.testing.assert_allclose(rotated, Gaussian()({**gauss0, "PA": 0.7}, u, v), atol=1e-14)

    ring = {"F0": 0.8, "d": 40.0}
    np.testing.assert_allclose(Stretched(Ring())({**ring, "stretch": 1.0, "stretch_PA": 0.3}, u, v),
                               Ring()(ring, u, v), atol=1e-14)
    np.testing.assert_allclose(Convolved(Ring())({**ring, "blur": 12.0}, u, v),
                               ThickRing()({**ring, "alpha": 12.0}, u, v), atol=1e-14)
    # an order-1 m-ring rotated by θ is the m-ring with β1 e^{-iθ} (brightness PA = -arg β1 moves by +θ)
    beta = 0.2 - 0.1j
    rot = Rotated(MRing(1))({**ring, "beta1_re": beta.real, "beta1_im": beta.imag, "rotation": 0.9}, u, v)
    turned = beta * np.exp(-0.9j)
    np.testing.assert_allclose(rot, MRing(1)({**ring, "beta1_re": turned.real, "beta1_im": turned.imag}, u, v),
                               atol=1e-14)
    shifted = Shifted(Ring())({**ring, "x0": 10.0, "y0": -4.0}, u, v)
    np.testing.assert_allclose(np.abs(shifted), np.abs(Ring()(ring, u, v)), atol=1e-14)
    with pytest.raises(VlbiError, match="already has"):
        Shifted(Shifted(Ring()))


def test_sum_of_named_components():
    model = build_model({"components": {"ring": {"type": "mring", "order": 1}, "jet": {"type": "gauss"}},
                         "flux": "components"})
    assert model.names[:2] == ("ring.F0", "ring.d") and "jet.FWHM_maj" in model.names
    p = {q.name: 0.5 * (q.low + q.high) for q in model.params}
    u, v = jnp.asarray(U_REF), jnp.asarray(V_REF)
    ring = visibility("mring", u, v, F0=p["ring.F0"], d=p["ring.d"], x0=p["ring.x0"], y0=p["ring.y0"],
                      beta_list=[p["ring.beta1_re"] + 1j * p["ring.beta1_im"]])
    jet = visibility("gauss", u, v, **{k[4:]: val for k, val in p.items() if k.startswith("jet.")})
    np.testing.assert_allclose(model.visibility(p, u, v), ring + jet, atol=1e-14)
    assert model.closure_invariant_params() == ("ring.F0", "ring.x0", "ring.y0")
    assert set(model.derived(p)) == {"ring.beta1_abs", "ring.beta1_arg", "ring.brightness_PA"}
    again = build_model(json.loads(json.dumps(model.spec)))  # the normalised spec rebuilds the same model
    assert again.params == model.params and again.name == model.name
    direct = Sum.of({"ring": Shifted(MRing(1)), "jet": Shifted(Gaussian())}, "components")
    assert direct.params == model.component.params
    pinned = build_model({"components": {"ring": {"type": "ring", "fixed": {"x0": 0.0, "y0": 0.0}},
                                         "jet": {"type": "gauss", "fixed": {"F0": 0.1}}}, "flux": "components"})
    assert pinned.closure_invariant_params() == ()  # position and flux scale already pinned


def test_a_sum_is_a_total_flux_and_fractions_labelled_as_such():
    """By default a sum's fluxes are one total flux (Jy) and dimensionless fractions, so a closure fit, which
    pins the flux scale, still fits a fraction with a [0, 1] prior rather than a ratio labelled Jy."""
    spec = {"components": {"ring": {"type": "mring", "order": 1}, "jet": {"type": "gauss"}}}
    model = build_model(spec)
    by_name = {q.name: q for q in model.params}
    assert "ring.F0" not in by_name and "jet.F0" not in by_name
    assert (by_name["total_flux"].unit, by_name["jet.flux_fraction"].unit) == ("Jy", "1")
    assert (by_name["jet.flux_fraction"].low, by_name["jet.flux_fraction"].high) == (0.0, 1.0)
    p = {q.name: 0.5 * (q.low + q.high) for q in model.params}
    p.update({"total_flux": 0.8, "jet.flux_fraction": 0.25})
    u, v = jnp.asarray(U_REF), jnp.asarray(V_REF)
    old = build_model({**spec, "flux": "components"})
    as_components = {**{k: x for k, x in p.items() if k in old.names}, "ring.F0": 0.6, "jet.F0": 0.2}
    np.testing.assert_allclose(model.visibility(p, u, v), old.visibility(as_components, u, v), atol=1e-14)
    derived = model.derived(p)
    assert float(derived["ring.F0"]) == pytest.approx(0.6) and float(derived["jet.F0"]) == pytest.approx(0.2)
    assert model.variable_attrs()["jet.F0"]["units"] == "Jy"
    # closure products pin the total flux; the fraction stays a free, dimensionless parameter
    from vlbicore.config import FitConfig
    closures = FitConfig.from_dict({"model": spec, "products": ["cphase", "lcamp"]}).sky_model
    assert closures.fixed["total_flux"] == 1.0 and "jet.flux_fraction" in closures.names
    # three components: stick-breaking shares; the fluxes sum to the total
    three = build_model({"components": {"a": "point", "b": "point", "c": "point"}})
    fluxes = three.component.component_fluxes({"total_flux": 2.0, "b.flux_fraction": 0.5, "c.flux_fraction": 0.5})
    assert fluxes == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.5})
    with pytest.raises(VlbiError, match="jet.F0 is not a parameter .* flux: components"):
        build_model({"components": {"ring": "ring", "jet": {"type": "gauss", "fixed": {"F0": 0.1}}}})


# ---------------------------------------------------------------------------------------------------------
# build_model options, derived quantities, images, errors and docs.


def test_build_model_options_and_derived():
    model = build_model({"type": "thick_mring", "order": 2, "fixed": {"F0": 1.0, "beta2_im": 0.0},
                         "priors": {"d": [20, 80]}})
    assert model.name == "thick_mring2"
    assert model.names == ("d", "alpha", "beta1_re", "beta1_im", "beta2_re", "x0", "y0")
    assert model.fixed == {"F0": 1.0, "beta2_im": 0.0}
    assert (model.params[0].low, model.params[0].high) == (20.0, 80.0)
    assert model.params[2].low == -0.5 and model.params[2].high == 0.5
    assert json.loads(json.dumps(model.spec))["fixed"] == {"F0": 1.0, "beta2_im": 0.0}
    assert build_model(model.spec).params == model.params
    assert build_model({**model.spec, "fixed": {**model.fixed, "d": 40.0}}).fixed["d"] == 40.0  # fixed beats prior
    assert model.closure_invariant_params() == ("x0", "y0")  # F0 is fixed already
    assert build_model("ring").closure_invariant_params() == ("F0", "x0", "y0")
    assert build_model({"type": "ring", "fixed": {"x0": 0.0, "y0": 0.0}}).closure_invariant_params() == ("F0",)

    p = dict(d=40.0, alpha=5.0, beta1_re=0.0, beta1_im=-0.2, beta2_re=0.1, x0=0.0, y0=0.0)
    derived = model.derived(p)
    assert float(derived["beta1_abs"]) == pytest.approx(0.2)
    assert float(derived["beta1_arg"]) == pytest.approx(-math.pi / 2)
    assert float(derived["brightness_PA"]) == pytest.approx(math.pi / 2)  # -arg β1: East
    assert float(derived["beta2_arg"]) == 0.0
    draws = model.derived({**p, "beta1_re": np.full((2, 3), 0.1)})
    assert derived["beta1_abs"].shape == () and draws["beta1_abs"].shape == (2, 3)


def test_images_are_oriented_east_left_and_conserve_flux():
    point = build_model("point")
    x, y, img = point.image({"F0": 1.5, "x0": 30.0, "y0": -20.0}, fov_uas=160.0, npix=64)
    assert img.shape == (64, 64) and img.sum() == pytest.approx(1.5, rel=1e-9)
    iy, ix = np.unravel_index(np.argmax(img), img.shape)
    assert (x[ix], y[iy]) == (pytest.approx(30.0), pytest.approx(-20.0))
    assert ix < 32 and x[0] > x[-1]  # East (positive x) on the left

    mring = build_model({"type": "mring", "order": 1})
    beta = 0.3 * np.exp(-1j * 1.0)  # brightest at PA = -arg β = 1.0 rad East of North
    x, y, img = mring.image({"F0": 1.0, "d": 60.0, "beta1_re": beta.real, "beta1_im": beta.imag,
                             "x0": 0.0, "y0": 0.0}, fov_uas=120.0, npix=128)
    xx, yy = np.meshgrid(x, y)
    assert math.atan2((img * xx).sum(), (img * yy).sum()) == pytest.approx(1.0, abs=1e-3)  # centroid PA
    radius = np.hypot(xx, yy)
    assert img[np.abs(radius - 30.0) < 3.0].sum() > 0.9  # the flux sits on the ring


def test_user_errors_are_one_line_vlbierrors():
    u = v = np.zeros(3)
    cases = [
        (lambda: visibility("donut", u, v, F0=1.0), "valid types"),
        (lambda: visibility("ring", u, v, F0=1.0, d=40.0, diameter=3.0), "unknown parameter"),
        (lambda: visibility("ring", u, v, F0=1.0), "missing"),
        (lambda: visibility("mring", u, v, F0=1.0, d=40.0), "beta_list"),
        (lambda: build_model("donut"), "valid types"),
        (lambda: build_model({"type": "ring", "order": 2}), "order"),
        (lambda: build_model({"type": "mring", "order": -1}), "order"),
        (lambda: build_model({"type": "ring", "fixed": {"D": 3.0}}), "unknown parameter"),
        (lambda: build_model({"type": "ring", "priors": {"d": [80, 20]}}), "low < high"),
        (lambda: build_model({"type": "ring", "colour": "red"}), "unknown key"),
        (lambda: build_model({"components": {"a.b": "ring"}}), "identifier"),
        (lambda: build_model({"components": {"ring": "ring"}, "fixed": {"d": 1.0}}), "unknown parameter"),
        (lambda: build_model("ring").visibility({"F0": 1.0}, u, v), "missing"),
    ]
    for call, fragment in cases:
        with pytest.raises(VlbiError, match=fragment) as info:
            call()
        assert "\n" not in str(info.value)


def test_functional_entry_point_accepts_complex_or_pair_betas_and_default_offsets():
    u, v = jnp.asarray(U_REF), jnp.asarray(V_REF)
    a = visibility("mring", u, v, F0=1.0, d=40.0, beta_list=[0.1 - 0.2j, 0.05j])
    b = visibility("mring", u, v, F0=1.0, d=40.0, beta_list=[[0.1, -0.2], [0.0, 0.05]], x0=0.0, y0=0.0)
    np.testing.assert_allclose(a, b, atol=0)
    ring = visibility("mring", u, v, F0=1.0, d=40.0, beta_list=[])  # order 0 is a plain ring
    np.testing.assert_allclose(ring, visibility("ring", u, v, F0=1.0, d=40.0), atol=1e-15)
    jitted = jax.jit(lambda d: visibility("thick_ring", u, v, F0=1.0, d=d, alpha=5.0))(40.0)
    np.testing.assert_allclose(jitted, visibility("thick_ring", u, v, F0=1.0, d=40.0, alpha=5.0), atol=1e-15)


def test_describe_models_lists_every_type_and_parameter():
    text = describe_models()
    for name in models.MODEL_TYPES:
        assert f"\n{name}" in text
    for param in ("F0", "d", "alpha", "FWHM_maj", "fr", "beta1_re", "stretch_PA", "x0", "rotation", "blur"):
        assert f"    {param} " in text
    assert "µas" in text and "East of North" in text
