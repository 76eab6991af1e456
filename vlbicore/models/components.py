"""Sky-model primitives: small frozen components centred on the origin, each unit-sized in its contract.

Conventions (same as ehtim 1.3.2, checked against its ``sample_1model_uv``):
V(u, v) = ∫ I(x, y) exp(+2πi (u x + v y)) dx dy with u, v in wavelengths, x positive East, y positive North;
sizes in µas, fluxes in Jy, angles in radians, position angles East of North.

Each component has ``params`` (tuple of :class:`~vlbicore.models.params.Param`: name, unit, meaning,
default prior) and ``visibility(p, u, v)`` (pure JAX; jit/vmap/grad safe in float32 and float64, without
NaN values or gradients anywhere in the prior box, u = v = 0, β = 0 and zero sizes included). Position,
stretch, rotation and blur are modifiers (:mod:`vlbicore.models.modifiers`), not parameters of these.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import jax.numpy as jnp

from vlbicore.models.bessel import bessel_jn, jinc
from vlbicore.models.params import (ALPHA, D_CRESCENT, D_DISK, D_RING, F0, FF, FO, FR, FWHM, FWHM_MAJ, FWHM_MIN,
                                    PA, PHI, Param, beta_params)
from vlbicore.models.uv import GAUSS_FACTOR, as_complex, as_uv, gaussian_taper, shift_phase, uas, uv_direction, uv_radius

class Component:
    """Base of all components: ``params`` (tuple of Param) and ``visibility(p, u, v)`` (complex, like u)."""

    params: tuple[Param, ...] = ()
    kind: str = "component"

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.params)

    def visibility(self, p: Mapping[str, Any], u, v):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, p, u, v):
        u, v = as_uv(u, v)
        return self.visibility(p, u, v)


@dataclass(frozen=True)
class Point(Component):
    """A point source of flux F0."""

    kind = "point"
    params = (F0,)

    def visibility(self, p, u, v):
        return as_complex(p["F0"] * jnp.ones_like(u))


@dataclass(frozen=True)
class CircularGaussian(Component):
    """Circular Gaussian of total flux F0 and full width at half maximum FWHM."""

    kind = "circ_gauss"
    params = (F0, FWHM)

    def visibility(self, p, u, v):
        return as_complex(p["F0"] * gaussian_taper(p["FWHM"], uv_radius(u, v)))


@dataclass(frozen=True)
class Gaussian(Component):
    """Elliptical Gaussian: FWHM_maj along position angle PA (East of North), FWHM_min across it."""

    kind = "gauss"
    params = (F0, FWHM_MAJ, FWHM_MIN, PA)

    def visibility(self, p, u, v):
        s, c = jnp.sin(p["PA"]), jnp.cos(p["PA"])
        u_maj = (u * s + v * c) * uas(p["FWHM_maj"])
        u_min = (u * c - v * s) * uas(p["FWHM_min"])
        return as_complex(p["F0"] * jnp.exp(-GAUSS_FACTOR * (u_maj * u_maj + u_min * u_min)))


@dataclass(frozen=True)
class Disk(Component):
    """Uniform disk of flux F0 and diameter d: V = F0 · 2 J_1(z)/z, z = π d |uv|."""

    kind = "disk"
    params = (F0, D_DISK)

    def visibility(self, p, u, v):
        return as_complex(p["F0"] * jinc(math.pi * uas(p["d"]) * uv_radius(u, v)))


@dataclass(frozen=True)
class BlurredDisk(Component):
    """Uniform disk convolved with a circular Gaussian of FWHM alpha."""

    kind = "blurred_disk"
    params = (F0, D_DISK, ALPHA)

    def visibility(self, p, u, v):
        rho = uv_radius(u, v)
        return as_complex(p["F0"] * jinc(math.pi * uas(p["d"]) * rho) * gaussian_taper(p["alpha"], rho))


@dataclass(frozen=True)
class Ring(Component):
    """Infinitely thin uniform ring of flux F0 and diameter d: V = F0 J_0(π d |uv|)."""

    kind = "ring"
    params = (F0, D_RING)

    def visibility(self, p, u, v):
        return as_complex(p["F0"] * bessel_jn(math.pi * uas(p["d"]) * uv_radius(u, v), 0)[0])


@dataclass(frozen=True)
class ThickRing(Component):
    """Thin ring convolved with a circular Gaussian of FWHM alpha (ring thickness)."""

    kind = "thick_ring"
    params = (F0, D_RING, ALPHA)

    def visibility(self, p, u, v):
        rho = uv_radius(u, v)
        ring = bessel_jn(math.pi * uas(p["d"]) * rho, 0)[0]
        return as_complex(p["F0"] * ring * gaussian_taper(p["alpha"], rho))


def _mring_visibility(p, u, v, order):
    """Thin m-ring: brightness ∝ 1 + Σ_m 2 Re(β_m e^{imφ}), φ the position angle East of North.

    V = F0 [J_0(z) + Σ_m J_m(z) (β_m w^m + (-1)^m conj(β_m w^m))], w = exp(iθ) (ehtim's baseline angle),
    i.e. 2 Re(β_m w^m) for even m and 2i Im(β_m w^m) for odd m.
    """
    rho = uv_radius(u, v)
    jn = bessel_jn(math.pi * uas(p["d"]) * rho, order)
    w = uv_direction(u, v, rho)
    total = as_complex(jn[0])
    w_m = jnp.ones_like(w)
    for m in range(1, order + 1):
        w_m = w_m * w
        bw = (p[f"beta{m}_re"] + 1j * p[f"beta{m}_im"]) * w_m
        term = 2.0 * jnp.real(bw) if m % 2 == 0 else 2j * jnp.imag(bw)
        total = total + jn[m] * term
    return p["F0"] * total


@dataclass(frozen=True)
class MRing(Component):
    """Thin m-ring of the given order with complex coefficients β_k = beta{k}_re + i beta{k}_im (k = 1..order).

    Brightness ∝ 1 + Σ_k 2 Re(β_k e^{ikφ}), φ = position angle East of North: the brightest point of an
    order-1 ring is at PA = -arg β1. Non-negative brightness needs Σ_k 2|β_k| <= 1 (not enforced).
    """

    order: int = 1
    kind = "mring"

    @property
    def params(self):
        return (F0, D_RING) + beta_params(self.order)

    def visibility(self, p, u, v):
        return _mring_visibility(p, u, v, self.order)


@dataclass(frozen=True)
class ThickMRing(Component):
    """m-ring convolved with a circular Gaussian of FWHM alpha."""

    order: int = 1
    kind = "thick_mring"

    @property
    def params(self):
        return (F0, D_RING, ALPHA) + beta_params(self.order)

    def visibility(self, p, u, v):
        return _mring_visibility(p, u, v, self.order) * gaussian_taper(p["alpha"], uv_radius(u, v))


@dataclass(frozen=True)
class Crescent(Component):
    """Crescent (ehtim): a disk of diameter d minus a fainter disk of diameter fr·d shifted inside it.

    The inner disk keeps a fraction ff of the surface brightness, is offset by (d/2)(1 - fr) fo towards
    position angle phi; the total flux is F0.
    """

    kind = "crescent"
    params = (F0, D_CRESCENT, FR, FO, FF, PHI)

    def visibility(self, p, u, v):
        fr, ff = p["fr"], p["ff"]
        removed = (1.0 - ff) * fr * fr  # flux fraction of the outer disk cut out by the inner one
        outer_flux = p["F0"] / (1.0 - removed)
        offset = 0.5 * p["d"] * (1.0 - fr) * p["fo"]
        rho = uv_radius(u, v)
        outer = jinc(math.pi * uas(p["d"]) * rho)
        inner = jinc(math.pi * uas(p["d"] * fr) * rho)
        shift = shift_phase(u, v, offset * jnp.sin(p["phi"]), offset * jnp.cos(p["phi"]))
        return outer_flux * (outer - removed * inner * shift)
