"""vlbicore.bessel against scipy.special: values, derivatives, float32, edge cases and relative speed."""
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp

from vlbicore.models.bessel import bessel_jn, j0, j1, jinc

jax.config.update("jax_enable_x64", True)

# EHT range is z = π d |uv| <= ~40; go beyond it to cover the asymptotic branch, and far below 1.
Z = np.concatenate([np.linspace(0.0, 70.0, 14001), np.logspace(-12, 0, 121)])
N_MAX = 10


def reference(z, n_max):
    return np.stack([sp.jv(n, z) for n in range(n_max + 1)])


def test_values_match_scipy_in_float64():
    table = np.asarray(bessel_jn(jnp.asarray(Z), N_MAX))
    ref = reference(Z, N_MAX)
    assert table.shape == (N_MAX + 1, Z.size)
    err = np.abs(table - ref)
    assert err.max() < 1e-14  # absolute: covers the zeros of J_n (requirement 1e-9)
    away_from_zeros = np.abs(ref) > 1e-6
    assert (err[away_from_zeros] / np.abs(ref[away_from_zeros])).max() < 1e-8  # requirement 1e-6


def test_small_arguments_are_relatively_accurate():
    z = np.logspace(-8, 0, 50)
    table = np.asarray(bessel_jn(jnp.asarray(z), 4))
    ref = reference(z, 4)
    nonzero = np.abs(ref) > 1e-300
    assert np.max(np.abs(table - ref)[nonzero] / np.abs(ref[nonzero])) < 1e-12
    assert np.asarray(bessel_jn(0.0, 3)).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_derivatives_match_scipy_and_are_finite_at_zero():
    z = jnp.asarray(Z[::7])
    assert float(z[0]) == 0.0
    derivatives = np.asarray(jax.vmap(jax.jacfwd(lambda x: bessel_jn(x, 3)))(z)).T  # (order, z)
    np.testing.assert_allclose(derivatives, np.stack([sp.jvp(n, np.asarray(z)) for n in range(4)]), atol=1e-14)
    assert derivatives[:, 0].tolist() == [0.0, 0.5, 0.0, 0.0]  # exact at z = 0, no NaN
    second = float(jax.grad(jax.grad(j0))(0.0))  # J_0''(0) = -1/2, through the custom rule twice
    assert second == pytest.approx(-0.5, abs=1e-15)


def test_float32_and_negative_arguments_and_jit_vmap():
    z32 = jnp.asarray(Z[Z <= 48], dtype=jnp.float32)
    table = bessel_jn(z32, 5)
    assert table.dtype == jnp.float32
    assert np.abs(np.asarray(table, float) - reference(np.asarray(z32, float), 5)).max() < 2e-6
    z = np.linspace(-30, 30, 301)
    np.testing.assert_allclose(np.asarray(bessel_jn(jnp.asarray(z), 3)), reference(z, 3), atol=1e-14)
    batched = jax.jit(jax.vmap(lambda x: bessel_jn(x, 2)))(jnp.asarray(Z[:100]))  # per element: shape (3,)
    np.testing.assert_allclose(np.asarray(batched).T, reference(Z[:100], 2), atol=1e-14)
    np.testing.assert_allclose(np.asarray(j1(jnp.asarray(z))), sp.j1(z), atol=1e-14)


def test_jinc_is_smooth_through_zero():
    z = jnp.asarray([0.0, 1e-6, 9.99e-3, 1e-2, 1.01e-2, 0.5, 3.8317, 20.0])
    expected = np.where(np.asarray(z) == 0, 1.0, 2 * sp.j1(np.asarray(z)) / np.where(np.asarray(z) == 0, 1, np.asarray(z)))
    np.testing.assert_allclose(np.asarray(jinc(z)), expected, rtol=1e-13, atol=1e-15)
    grads = np.asarray(jax.vmap(jax.grad(jinc))(z))
    assert np.all(np.isfinite(grads)) and grads[0] == 0.0
    assert grads[2] == pytest.approx(grads[3], rel=1e-3)  # no jump across the series/formula switch


def test_faster_than_the_trapezoid_integral():
    """The prior art integrates cos(nτ - z sin τ) on 100 nodes; side by side, jitted, on 1000 points."""
    z = jnp.asarray(np.random.default_rng(1).uniform(1e-3, 40.0, 1000))
    tau = jnp.linspace(0.0, jnp.pi, 100)

    def trapezoid(x):
        integrand = jnp.cos(jnp.arange(4)[:, None, None] * tau - x[None, :, None] * jnp.sin(tau))
        return (jnp.sum(integrand, -1) - 0.5 * (integrand[..., 0] + integrand[..., -1])) / 99.0

    def best_time(fn):
        fn = jax.jit(fn)
        jax.block_until_ready(fn(z))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(10):
                out = fn(z)
            jax.block_until_ready(out)
            times.append(time.perf_counter() - t0)
        return min(times)

    np.testing.assert_allclose(np.asarray(trapezoid(z)), np.asarray(bessel_jn(z, 3)), atol=1e-12)
    assert best_time(trapezoid) > 5 * best_time(lambda x: bessel_jn(x, 3))  # measured ~50x
