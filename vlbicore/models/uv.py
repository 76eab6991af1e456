"""Small numerical helpers of the visibility functions: NaN-free values and gradients at the origin of the
uv plane (divisions and angles at the origin use the double-``where`` pattern)."""
from __future__ import annotations

import math

import jax.numpy as jnp

from vlbicore.units import RAD_PER_UAS

GAUSS_FACTOR = math.pi**2 / (4.0 * math.log(2.0))  # Fourier transform of a Gaussian of unit FWHM


def uas(value):
    return value * RAD_PER_UAS


def as_uv(u, v):
    u, v = jnp.asarray(u), jnp.asarray(v)
    if not jnp.issubdtype(u.dtype, jnp.floating):
        u = u.astype(jnp.result_type(float))
    if not jnp.issubdtype(v.dtype, jnp.floating):
        v = v.astype(jnp.result_type(float))
    return u, v


def uv_radius(u, v):
    """|uv| with a finite gradient at the origin (d sqrt(x)/dx is infinite at x = 0)."""
    rho2 = u * u + v * v
    nonzero = rho2 > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, rho2, 1.0)), 0.0)


def uv_direction(u, v, rho):
    """exp(iθ) with θ = arg(v + iu) + π/2, ehtim's m-ring baseline angle; 1 at the origin (where J_m(0) = 0)."""
    nonzero = rho > 0
    rho_safe = jnp.where(nonzero, rho, 1.0)
    return jnp.where(nonzero, (-u + 1j * v) / rho_safe, 1.0 + 0j)


def shift_phase(u, v, x0_uas, y0_uas):
    """exp(+2πi (u x0 + v y0)): the visibility factor of an image shifted by (x0, y0)."""
    arg = 2.0 * math.pi * (u * uas(x0_uas) + v * uas(y0_uas))
    return jnp.cos(arg) + 1j * jnp.sin(arg)


def gaussian_taper(fwhm_uas, rho):
    """Visibility of a unit-flux circular Gaussian of the given FWHM (the blurring kernel)."""
    scaled = uas(fwhm_uas) * rho
    return jnp.exp(-GAUSS_FACTOR * scaled * scaled)


def as_complex(x):
    return x + 0j

