"""Geometric sky models as pure JAX visibility functions, and the ``SkyModel`` objects the fitter uses.

Conventions (same as ehtim 1.3.2, checked against its ``sample_1model_uv``):
V(u, v) = ∫ I(x, y) exp(+2πi (u x + v y)) dx dy with u, v in wavelengths, x positive East, y positive North;
sizes and offsets in µas, fluxes in Jy, angles in radians, position angles East of North.

Three layers:

* components — small frozen objects (``Point``, ``CircularGaussian``, ``Gaussian``, ``Disk``, ``BlurredDisk``,
  ``Ring``, ``ThickRing``, ``MRing(order)``, ``ThickMRing(order)``, ``Crescent``), centred on the origin, each
  with ``params`` (tuple of ``Param``: name, unit, meaning, default prior box) and
  ``visibility(p, u, v)``; modifiers ``Shifted``, ``Stretched``, ``Rotated``, ``Convolved`` wrap a component and
  add their own params; ``Sum`` adds named components (params prefixed ``<name>.``). All are jit/vmap/grad
  safe in float32 and float64, without NaN values or gradients anywhere in the prior box (u = v = 0, β = 0,
  zero sizes): divisions and angles at the origin use the double-``where`` pattern.
* ``visibility(name, u, v, **params)`` — functional entry point with ehtim's type and parameter names.
* ``build_model(spec) -> SkyModel`` — a component tree plus fixed values and prior boxes, for fitting.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vlbicore.bessel import bessel_jn, jinc
from vlbicore.errors import VlbiError
from vlbicore.units import RAD_PER_UAS

_GAUSS_FACTOR = math.pi**2 / (4.0 * math.log(2.0))  # Fourier transform of a Gaussian of unit FWHM


@dataclass(frozen=True)
class Param:
    """One model parameter: name, unit, meaning and default (box) prior range [low, high]."""

    name: str
    unit: str
    description: str
    low: float
    high: float
    period: float | None = None  # angles: statistics of the draws are circular with this period

    def renamed(self, name: str) -> "Param":
        return replace(self, name=name)


def _p(name, unit, description, low, high, period=None):
    return Param(name, unit, description, float(low), float(high), period)


# The default prior boxes, chosen for EHT-scale sources (M87*, Sgr A*); override with spec "priors".
F0 = _p("F0", "Jy", "total flux density", 0.01, 5.0)
X0 = _p("x0", "µas", "offset of the centre towards East", -100.0, 100.0)
Y0 = _p("y0", "µas", "offset of the centre towards North", -100.0, 100.0)
D_RING = _p("d", "µas", "ring diameter", 0.0, 150.0)
D_DISK = _p("d", "µas", "disk diameter", 0.0, 150.0)
D_CRESCENT = _p("d", "µas", "outer disk diameter", 0.0, 150.0)
ALPHA = _p("alpha", "µas", "FWHM of the circular Gaussian blurring kernel (ring/disk edge thickness)", 0.0, 100.0)
FWHM = _p("FWHM", "µas", "full width at half maximum", 0.0, 150.0)
FWHM_MAJ = _p("FWHM_maj", "µas", "FWHM along the major axis", 0.0, 150.0)
FWHM_MIN = _p("FWHM_min", "µas", "FWHM along the minor axis", 0.0, 150.0)
PA = _p("PA", "rad", "position angle of the major axis, East of North", 0.0, math.pi, period=math.pi)
FR = _p("fr", "1", "inner disk radius as a fraction of the outer radius", 0.0, 0.95)
FO = _p("fo", "1", "inner disk offset as a fraction of the maximal offset r (1 - fr)", 0.0, 1.0)
FF = _p("ff", "1", "inner disk brightness as a fraction of the outer disk brightness", 0.0, 1.0)
PHI = _p("phi", "rad", "position angle of the inner disk offset, East of North", 0.0, 2.0 * math.pi, period=2 * math.pi)
STRETCH = _p("stretch", "1", "stretch factor along stretch_PA (1 = none)", 1.0, 3.0)
STRETCH_PA = _p("stretch_PA", "rad", "position angle of the stretch axis, East of North", 0.0, math.pi, period=math.pi)
ROTATION = _p("rotation", "rad", "rotation of the image, East of North (counter-clockwise on the sky)", 0.0, 2 * math.pi,
               period=2 * math.pi)
BLUR = _p("blur", "µas", "FWHM of the circular Gaussian convolving kernel", 0.0, 100.0)


def _beta_params(order: int) -> tuple[Param, ...]:
    out = []
    for k in range(1, order + 1):
        out.append(_p(f"beta{k}_re", "1", f"real part of the m={k} brightness Fourier coefficient β{k}", -0.5, 0.5))
        out.append(_p(f"beta{k}_im", "1", f"imaginary part of β{k}", -0.5, 0.5))
    return tuple(out)


# ----------------------------------------------------------------------------------------------------------
# Small numerical helpers (NaN-free values and gradients at the origin of the uv plane).


def _uas(value):
    return value * RAD_PER_UAS


def _as_uv(u, v):
    u, v = jnp.asarray(u), jnp.asarray(v)
    if not jnp.issubdtype(u.dtype, jnp.floating):
        u = u.astype(jnp.result_type(float))
    if not jnp.issubdtype(v.dtype, jnp.floating):
        v = v.astype(jnp.result_type(float))
    return u, v


def _uv_radius(u, v):
    """|uv| with a finite gradient at the origin (d sqrt(x)/dx is infinite at x = 0)."""
    rho2 = u * u + v * v
    nonzero = rho2 > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, rho2, 1.0)), 0.0)


def _uv_direction(u, v, rho):
    """exp(iθ) with θ = arg(v + iu) + π/2, ehtim's m-ring baseline angle; 1 at the origin (where J_m(0) = 0)."""
    nonzero = rho > 0
    rho_safe = jnp.where(nonzero, rho, 1.0)
    return jnp.where(nonzero, (-u + 1j * v) / rho_safe, 1.0 + 0j)


def _shift_phase(u, v, x0_uas, y0_uas):
    """exp(+2πi (u x0 + v y0)): the visibility factor of an image shifted by (x0, y0)."""
    arg = 2.0 * math.pi * (u * _uas(x0_uas) + v * _uas(y0_uas))
    return jnp.cos(arg) + 1j * jnp.sin(arg)


def _gaussian_taper(fwhm_uas, rho):
    """Visibility of a unit-flux circular Gaussian of the given FWHM (the blurring kernel)."""
    scaled = _uas(fwhm_uas) * rho
    return jnp.exp(-_GAUSS_FACTOR * scaled * scaled)


def _complex(x):
    return x + 0j


# ----------------------------------------------------------------------------------------------------------
# Components (centred on the origin).


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
        u, v = _as_uv(u, v)
        return self.visibility(p, u, v)


@dataclass(frozen=True)
class Point(Component):
    """A point source of flux F0."""

    kind = "point"
    params = (F0,)

    def visibility(self, p, u, v):
        return _complex(p["F0"] * jnp.ones_like(u))


@dataclass(frozen=True)
class CircularGaussian(Component):
    """Circular Gaussian of total flux F0 and full width at half maximum FWHM."""

    kind = "circ_gauss"
    params = (F0, FWHM)

    def visibility(self, p, u, v):
        return _complex(p["F0"] * _gaussian_taper(p["FWHM"], _uv_radius(u, v)))


@dataclass(frozen=True)
class Gaussian(Component):
    """Elliptical Gaussian: FWHM_maj along position angle PA (East of North), FWHM_min across it."""

    kind = "gauss"
    params = (F0, FWHM_MAJ, FWHM_MIN, PA)

    def visibility(self, p, u, v):
        s, c = jnp.sin(p["PA"]), jnp.cos(p["PA"])
        u_maj = (u * s + v * c) * _uas(p["FWHM_maj"])
        u_min = (u * c - v * s) * _uas(p["FWHM_min"])
        return _complex(p["F0"] * jnp.exp(-_GAUSS_FACTOR * (u_maj * u_maj + u_min * u_min)))


@dataclass(frozen=True)
class Disk(Component):
    """Uniform disk of flux F0 and diameter d: V = F0 · 2 J_1(z)/z, z = π d |uv|."""

    kind = "disk"
    params = (F0, D_DISK)

    def visibility(self, p, u, v):
        return _complex(p["F0"] * jinc(math.pi * _uas(p["d"]) * _uv_radius(u, v)))


@dataclass(frozen=True)
class BlurredDisk(Component):
    """Uniform disk convolved with a circular Gaussian of FWHM alpha."""

    kind = "blurred_disk"
    params = (F0, D_DISK, ALPHA)

    def visibility(self, p, u, v):
        rho = _uv_radius(u, v)
        return _complex(p["F0"] * jinc(math.pi * _uas(p["d"]) * rho) * _gaussian_taper(p["alpha"], rho))


@dataclass(frozen=True)
class Ring(Component):
    """Infinitely thin uniform ring of flux F0 and diameter d: V = F0 J_0(π d |uv|)."""

    kind = "ring"
    params = (F0, D_RING)

    def visibility(self, p, u, v):
        return _complex(p["F0"] * bessel_jn(math.pi * _uas(p["d"]) * _uv_radius(u, v), 0)[0])


@dataclass(frozen=True)
class ThickRing(Component):
    """Thin ring convolved with a circular Gaussian of FWHM alpha (ring thickness)."""

    kind = "thick_ring"
    params = (F0, D_RING, ALPHA)

    def visibility(self, p, u, v):
        rho = _uv_radius(u, v)
        ring = bessel_jn(math.pi * _uas(p["d"]) * rho, 0)[0]
        return _complex(p["F0"] * ring * _gaussian_taper(p["alpha"], rho))


def _mring_visibility(p, u, v, order):
    """Thin m-ring: brightness ∝ 1 + Σ_m 2 Re(β_m e^{imφ}), φ the position angle East of North.

    V = F0 [J_0(z) + Σ_m J_m(z) (β_m w^m + (-1)^m conj(β_m w^m))], w = exp(iθ) (ehtim's baseline angle),
    i.e. 2 Re(β_m w^m) for even m and 2i Im(β_m w^m) for odd m.
    """
    rho = _uv_radius(u, v)
    jn = bessel_jn(math.pi * _uas(p["d"]) * rho, order)
    w = _uv_direction(u, v, rho)
    total = _complex(jn[0])
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
        return (F0, D_RING) + _beta_params(self.order)

    def visibility(self, p, u, v):
        return _mring_visibility(p, u, v, self.order)


@dataclass(frozen=True)
class ThickMRing(Component):
    """m-ring convolved with a circular Gaussian of FWHM alpha."""

    order: int = 1
    kind = "thick_mring"

    @property
    def params(self):
        return (F0, D_RING, ALPHA) + _beta_params(self.order)

    def visibility(self, p, u, v):
        return _mring_visibility(p, u, v, self.order) * _gaussian_taper(p["alpha"], _uv_radius(u, v))


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
        rho = _uv_radius(u, v)
        outer = jinc(math.pi * _uas(p["d"]) * rho)
        inner = jinc(math.pi * _uas(p["d"] * fr) * rho)
        shift = _shift_phase(u, v, offset * jnp.sin(p["phi"]), offset * jnp.cos(p["phi"]))
        return outer_flux * (outer - removed * inner * shift)


# ----------------------------------------------------------------------------------------------------------
# Modifiers and sums.


def _check_no_clash(inner: Component, added: tuple[Param, ...], what: str):
    clash = set(inner.param_names) & {q.name for q in added}
    if clash:
        raise VlbiError(f"model: {what} adds parameter(s) {sorted(clash)} that the wrapped component already has; "
                        "wrap a component only once with each modifier")


@dataclass(frozen=True)
class Shifted(Component):
    """Moves the wrapped component by (x0, y0) µas (East, North)."""

    inner: Component
    kind = "shifted"

    def __post_init__(self):
        _check_no_clash(self.inner, (X0, Y0), "Shifted")

    @property
    def params(self):
        return self.inner.params + (X0, Y0)

    def visibility(self, p, u, v):
        return self.inner.visibility(p, u, v) * _shift_phase(u, v, p["x0"], p["y0"])


@dataclass(frozen=True)
class Stretched(Component):
    """Stretches the wrapped component by ``stretch`` along position angle ``stretch_PA`` (ehtim convention).

    V(u, v) = V_inner(S(u, v)), S the symmetric matrix stretching by ``stretch`` along the PA direction in the
    uv plane; flux is unchanged.
    """

    inner: Component
    kind = "stretched"

    def __post_init__(self):
        _check_no_clash(self.inner, (STRETCH, STRETCH_PA), "Stretched")

    @property
    def params(self):
        return self.inner.params + (STRETCH, STRETCH_PA)

    def visibility(self, p, u, v):
        s, c = jnp.sin(p["stretch_PA"]), jnp.cos(p["stretch_PA"])
        k = p["stretch"]
        cross = c * s * (k - 1.0)
        u_stretched = u * (c * c + s * s * k) + v * cross
        v_stretched = v * (c * c * k + s * s) + u * cross
        return self.inner.visibility(p, u_stretched, v_stretched)


@dataclass(frozen=True)
class Rotated(Component):
    """Rotates the wrapped component by ``rotation`` (a feature at PA φ moves to PA φ + rotation)."""

    inner: Component
    kind = "rotated"

    def __post_init__(self):
        _check_no_clash(self.inner, (ROTATION,), "Rotated")

    @property
    def params(self):
        return self.inner.params + (ROTATION,)

    def visibility(self, p, u, v):
        s, c = jnp.sin(p["rotation"]), jnp.cos(p["rotation"])
        return self.inner.visibility(p, u * c - v * s, v * c + u * s)


@dataclass(frozen=True)
class Convolved(Component):
    """Convolves the wrapped component with a circular Gaussian of FWHM ``blur``."""

    inner: Component
    kind = "convolved"

    def __post_init__(self):
        _check_no_clash(self.inner, (BLUR,), "Convolved")

    @property
    def params(self):
        return self.inner.params + (BLUR,)

    def visibility(self, p, u, v):
        return self.inner.visibility(p, u, v) * _gaussian_taper(p["blur"], _uv_radius(u, v))


@dataclass(frozen=True)
class Sum(Component):
    """Sum of named components; a component's parameter ``q`` is called ``<name>.q``."""

    components: tuple[tuple[str, Component], ...]
    kind = "sum"

    def __post_init__(self):
        names = [name for name, _ in self.components]
        if not names:
            raise VlbiError("model: a sum needs at least one component; add entries under 'components'")
        for name in names:
            if not name.isidentifier():
                raise VlbiError(f"model: component name {name!r} must be a plain identifier (letters, digits, _)")
        if len(set(names)) != len(names):
            raise VlbiError(f"model: component names {names} repeat; give each component its own name")

    @classmethod
    def of(cls, components: Mapping[str, Component]) -> "Sum":
        return cls(tuple(components.items()))

    @property
    def params(self):
        return tuple(q.renamed(f"{name}.{q.name}") for name, comp in self.components for q in comp.params)

    def visibility(self, p, u, v):
        total = None
        for name, comp in self.components:
            prefix = name + "."
            local = {k[len(prefix):]: val for k, val in p.items() if k.startswith(prefix)}
            term = comp.visibility(local, u, v)
            total = term if total is None else total + term
        return total


# ----------------------------------------------------------------------------------------------------------
# ehtim type names.

_MRING_TYPES = {"mring", "thick_mring", "stretched_mring", "stretched_thick_mring"}


def _base_component(base: str, order: int) -> Component:
    simple = {"point": Point, "circ_gauss": CircularGaussian, "gauss": Gaussian, "disk": Disk,
              "blurred_disk": BlurredDisk, "crescent": Crescent, "ring": Ring, "thick_ring": ThickRing}
    if base in simple:
        return simple[base]()
    return MRing(order) if base == "mring" else ThickMRing(order)


def component_for_type(name: str, order: int = 1) -> Component:
    """The component tree of an ehtim model type, including its (x0, y0) offset; stretched types stretch first."""
    if name not in MODEL_TYPES:
        raise VlbiError(f"model type {name!r} is unknown; valid types: {', '.join(MODEL_TYPES)}")
    if name.startswith("stretched_"):
        return Shifted(Stretched(_base_component(name[len("stretched_"):], order)))
    return Shifted(_base_component(name, order))


MODEL_TYPES = ("point", "circ_gauss", "gauss", "disk", "blurred_disk", "crescent", "ring", "stretched_ring",
               "thick_ring", "stretched_thick_ring", "mring", "thick_mring", "stretched_mring",
               "stretched_thick_mring")


def _beta_parts(beta_list):
    """beta_list as complex numbers, or [re, im] pairs -> (re array, im array)."""
    arr = jnp.asarray(beta_list)
    if arr.size == 0:
        return jnp.zeros(0), jnp.zeros(0)
    if jnp.iscomplexobj(arr) and arr.ndim == 1:
        return jnp.real(arr), jnp.imag(arr)
    if arr.ndim == 2 and arr.shape[1] == 2:
        return arr[:, 0], arr[:, 1]
    if arr.ndim == 1:
        return arr, jnp.zeros_like(arr)
    raise VlbiError(f"beta_list: expected a list of complex numbers or [re, im] pairs, got shape {arr.shape}")


def visibility(name: str, u, v, **params):
    """Visibility (Jy, complex) of one ehtim-type model at (u, v) in wavelengths.

    ``name`` is an ehtim type (see ``MODEL_TYPES``); ``params`` use ehtim's names with sizes in µas, F0 in
    Jy, angles in radians and, for m-rings, ``beta_list`` (complex numbers or [re, im] pairs; its length is
    the order). ``x0`` and ``y0`` default to 0; every other parameter is required.
    """
    if name not in MODEL_TYPES:
        raise VlbiError(f"model type {name!r} is unknown; valid types: {', '.join(MODEL_TYPES)}")
    p = dict(params)
    p.setdefault("x0", 0.0)
    p.setdefault("y0", 0.0)
    order = 0
    if name in _MRING_TYPES:
        if "beta_list" not in p:
            raise VlbiError(f"model {name!r}: parameter 'beta_list' is missing; give a list of complex β_m")
        re, im = _beta_parts(p.pop("beta_list"))
        order = int(re.shape[0])
        for k in range(order):
            p[f"beta{k + 1}_re"], p[f"beta{k + 1}_im"] = re[k], im[k]
    component = component_for_type(name, order)
    expected = set(component.param_names)
    public = sorted((expected - {f"beta{k}_{part}" for k in range(1, order + 1) for part in ("re", "im")})
                    | ({"beta_list"} if name in _MRING_TYPES else set()))
    unknown = sorted(set(p) - expected)
    if unknown:
        raise VlbiError(f"model {name!r}: unknown parameter(s) {unknown}; valid parameters: {', '.join(public)}")
    missing = sorted(expected - set(p))
    if missing:
        raise VlbiError(f"model {name!r}: parameter(s) {missing} missing; valid parameters: {', '.join(public)}")
    return component(p, u, v)


# ----------------------------------------------------------------------------------------------------------
# SkyModel: a component tree with fixed values and prior boxes, built from a JSON-able spec.


@dataclass(frozen=True, eq=False)  # identity equality/hash: usable as a static argument of jax.jit
class SkyModel:
    """A model ready for fitting. ``params`` are the free parameters (ordered, with their prior boxes)."""

    name: str
    spec: dict
    component: Component
    params: tuple[Param, ...]
    fixed: dict = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """Free parameter names, in order."""
        return tuple(q.name for q in self.params)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) arrays of the free parameters' prior boxes, in ``names`` order."""
        return (np.array([q.low for q in self.params]), np.array([q.high for q in self.params]))

    def full_params(self, p: Mapping[str, Any]) -> dict:
        """Free values from ``p`` (other keys ignored) plus the fixed values."""
        missing = [n for n in self.names if n not in p]
        if missing:
            raise VlbiError(f"model {self.name!r}: parameter value(s) {missing} missing; free parameters: "
                            f"{', '.join(self.names)}")
        full = dict(self.fixed)
        full.update({n: p[n] for n in self.names})
        return full

    def visibility(self, p: Mapping[str, Any], u, v):
        """Complex visibilities (Jy) at (u, v) in wavelengths; ``p`` maps free parameter names to scalars.

        Keys of ``p`` that are not free parameters are ignored; fixed values are filled in."""
        return self._jitted_visibility(self.full_params(p), *_as_uv(u, v))

    @cached_property
    def _jitted_visibility(self):
        return jax.jit(self.component.visibility)

    def closure_invariant_params(self) -> tuple[str, ...]:
        """Free parameters closure phases and log closure amplitudes cannot constrain.

        Closure quantities do not change under a common flux scale or a shift of the whole image, so one flux
        (F0 of the first component, which sets the scale of all others) and one absolute position (x0, y0 of
        the first component with both free) are returned, unless the fixed values already pin them.
        """
        free = set(self.names)
        all_names = [q.name for q in self.component.params]
        fluxes = [n for n in all_names if n.split(".")[-1] == "F0"]
        prefixes = [n[: -len("x0")] for n in all_names if n.split(".")[-1] == "x0"]
        out = []
        if fluxes and all(f in free for f in fluxes):
            out.append(fluxes[0])
        position_pinned = any(pre + "x0" not in free and pre + "y0" not in free for pre in prefixes)
        if not position_pinned:
            for pre in prefixes:
                if pre + "x0" in free and pre + "y0" in free:
                    out += [pre + "x0", pre + "y0"]
                    break
        return tuple(out)

    def derived(self, p: Mapping[str, Any]) -> dict:
        """Derived quantities: for each m-ring, ``beta{k}_abs``, ``beta{k}_arg`` (rad, in (-π, π]) and
        ``brightness_PA`` = -arg β1 (rad, East of North, in (-π, π]); prefixed like the parameters.
        Values may be arrays (e.g. posterior draws)."""
        full = self.full_params(p)
        out = {}
        for prefix, order in _mring_orders(self.component):
            for k in range(1, order + 1):
                re, im = jnp.asarray(full[f"{prefix}beta{k}_re"]), jnp.asarray(full[f"{prefix}beta{k}_im"])
                out[f"{prefix}beta{k}_abs"] = jnp.hypot(re, im)
                out[f"{prefix}beta{k}_arg"] = jnp.arctan2(im, re)
                if k == 1:
                    out[f"{prefix}brightness_PA"] = jnp.arctan2(-im, re)
        return out

    def variable_attrs(self) -> dict[str, dict]:
        """Units of every posterior variable (free and derived), and the period of the angles, for the store."""
        out = {q.name: {"units": q.unit, **({"period": q.period} if q.period else {})} for q in self.params}
        for prefix, order in _mring_orders(self.component):
            for k in range(1, order + 1):
                out[f"{prefix}beta{k}_abs"] = {"units": "1"}
                out[f"{prefix}beta{k}_arg"] = {"units": "rad", "period": 2 * math.pi}
            out[f"{prefix}brightness_PA"] = {"units": "rad", "period": 2 * math.pi}
        return out

    def image(self, p: Mapping[str, Any], fov_uas: float = 160.0, npix: int = 128, blur_uas: float | None = None):
        """Model image for plots: (x_uas, y_uas, image) with image[iy, ix] in Jy per pixel.

        Computed as the inverse DFT of the visibilities on the matching uv grid, tapered by a circular Gaussian
        of FWHM ``blur_uas`` (default 2 pixels) so thin rings and points are visible without ringing. x_uas
        decreases with ix (East on the left), y_uas increases with iy (North up with origin='lower'); e.g.
        ``imshow(img, origin='lower', extent=[x[0], x[-1], y[0], y[-1]])``. The pixels sum to the total flux.
        """
        npix = int(npix)
        if npix < 8 or fov_uas <= 0:
            raise VlbiError(f"image: need npix >= 8 and fov_uas > 0, got npix={npix}, fov_uas={fov_uas}")
        pixel = fov_uas / npix
        blur = 2.0 * pixel if blur_uas is None else float(blur_uas)
        k = np.arange(npix) - npix // 2                      # uv and sky index, centre at npix // 2
        freq = k / (npix * _uas(pixel))                      # λ
        uu, vv = np.meshgrid(freq, freq)                     # [iv, iu]
        # one compiled call with everything as arguments: the program depends only on the model's structure,
        # so the persistent compilation cache serves every later plot of the same model (eager evaluation
        # compiled dozens of primitives, ~1 s per plot)
        tapered = jax.jit(lambda p, uu, vv, blur: self.visibility(p, uu, vv) * _gaussian_taper(blur, jnp.hypot(uu, vv)))
        vis = np.asarray(tapered({k: np.asarray(x) for k, x in p.items()}, uu, vv, np.asarray(blur)))
        # I(x_j) = Σ_k V(u_k) exp(-2πi u_k x_j) / N² with u_k x_j = k j / N: numpy's forward FFT.
        img = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(vis))).real / npix**2
        offsets = k * pixel
        return offsets[::-1].copy(), offsets.copy(), img[:, ::-1].copy()


def _mring_orders(component: Component, prefix: str = ""):
    """(prefix, order) of every m-ring inside a component tree."""
    if isinstance(component, (MRing, ThickMRing)):
        return [(prefix, component.order)]
    if isinstance(component, Sum):
        return [hit for name, comp in component.components for hit in _mring_orders(comp, f"{prefix}{name}.")]
    inner = getattr(component, "inner", None)
    return _mring_orders(inner, prefix) if inner is not None else []


_SPEC_KEYS = {"type", "order", "fixed", "priors", "name"}
_SUM_KEYS = {"components", "fixed", "priors", "name"}


def _normalise_single(spec, where: str) -> dict:
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping):
        raise VlbiError(f"{where}: expected a model type name or a mapping with 'type', got {type(spec).__name__}")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise VlbiError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(_SPEC_KEYS))}")
    if "type" not in spec:
        raise VlbiError(f"{where}: 'type' is missing; valid types: {', '.join(MODEL_TYPES)}")
    kind = spec["type"]
    if kind not in MODEL_TYPES:
        raise VlbiError(f"{where}: model type {kind!r} is unknown; valid types: {', '.join(MODEL_TYPES)}")
    out = {"type": kind}
    if kind in _MRING_TYPES:
        order = spec.get("order", 1)
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= int(order) <= 10:
            raise VlbiError(f"{where}: 'order' must be an integer from 0 to 10, got {order!r}")
        out["order"] = int(order)
    elif "order" in spec:
        raise VlbiError(f"{where}: 'order' applies only to m-ring types ({', '.join(sorted(_MRING_TYPES))})")
    out["fixed"] = _float_map(spec.get("fixed", {}), f"{where}.fixed")
    out["priors"] = _prior_map(spec.get("priors", {}), f"{where}.priors")
    if "name" in spec:
        out["name"] = str(spec["name"])
    return out


def _float_map(values, where):
    if not isinstance(values, Mapping):
        raise VlbiError(f"{where}: expected a mapping of parameter name to number")
    out = {}
    for k, val in values.items():
        try:
            out[str(k)] = float(val)
        except (TypeError, ValueError):
            raise VlbiError(f"{where}.{k}: expected a number, got {val!r}") from None
    return out


def _prior_map(values, where):
    if not isinstance(values, Mapping):
        raise VlbiError(f"{where}: expected a mapping of parameter name to [low, high]")
    out = {}
    for k, box in values.items():
        try:
            low, high = (float(b) for b in box)
        except (TypeError, ValueError):
            raise VlbiError(f"{where}.{k}: expected [low, high], got {box!r}") from None
        if not low < high:
            raise VlbiError(f"{where}.{k}: need low < high, got [{low}, {high}]")
        out[str(k)] = [low, high]
    return out


def _apply_options(params, fixed, priors, where):
    """Split params into free (with overridden boxes) and fixed; unknown names are errors.

    A fixed value wins over a prior box for the same parameter (e.g. a closure-only fit pinning x0)."""
    names = [q.name for q in params]
    for label, given in (("fixed", fixed), ("priors", priors)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise VlbiError(f"{where}.{label}: unknown parameter(s) {unknown}; parameters: {', '.join(names)}")
    free = tuple(replace(q, low=priors[q.name][0], high=priors[q.name][1]) if q.name in priors else q
                 for q in params if q.name not in fixed)
    return free, {k: fixed[k] for k in names if k in fixed}


def _model_name(single: dict) -> str:
    return single["type"] + (str(single["order"]) if "order" in single else "")


def build_model(spec) -> SkyModel:
    """A SkyModel from a spec: an ehtim type name (``"ring"``), a mapping ``{"type": "thick_mring", "order": 1,
    "fixed": {"F0": 1.0}, "priors": {"d": [20, 80]}}``, or a sum ``{"components": {"ring": {...},
    "jet": {"type": "gauss"}}, "fixed": {...}, "priors": {...}}`` whose parameters are named ``ring.d`` etc.
    Component specs may carry their own ``fixed``/``priors`` with local names. Optional ``name``."""
    if isinstance(spec, Mapping) and "components" in spec:
        unknown = sorted(set(spec) - _SUM_KEYS)
        if unknown:
            raise VlbiError(f"model spec: unknown key(s) {unknown}; allowed with 'components': "
                            f"{', '.join(sorted(_SUM_KEYS))}")
        if not isinstance(spec["components"], Mapping) or not spec["components"]:
            raise VlbiError("model spec.components: expected a non-empty mapping of name to component spec")
        parts = {str(n): _normalise_single(s, f"model spec.components.{n}") for n, s in spec["components"].items()}
        component = Sum.of({n: component_for_type(s["type"], s.get("order", 1)) for n, s in parts.items()})
        fixed = {f"{n}.{k}": val for n, s in parts.items() for k, val in s["fixed"].items()}
        priors = {f"{n}.{k}": box for n, s in parts.items() for k, box in s["priors"].items()}
        fixed.update(_float_map(spec.get("fixed", {}), "model spec.fixed"))
        priors.update(_prior_map(spec.get("priors", {}), "model spec.priors"))
        for n, s in parts.items():  # component-level names were local; check them with their prefix
            _apply_options(component_for_type(s["type"], s.get("order", 1)).params, s["fixed"], s["priors"],
                           f"model spec.components.{n}")
        free, fixed = _apply_options(component.params, fixed, priors, "model spec")
        name = str(spec.get("name", "+".join(f"{n}:{_model_name(s)}" for n, s in parts.items())))
        normal = {"components": parts, "fixed": {}, "priors": {}}
        normal["fixed"] = _float_map(spec.get("fixed", {}), "model spec.fixed")
        normal["priors"] = _prior_map(spec.get("priors", {}), "model spec.priors")
        normal["name"] = name
        return SkyModel(name=name, spec=json.loads(json.dumps(normal)), component=component, params=free, fixed=fixed)
    single = _normalise_single(spec, "model spec")
    component = component_for_type(single["type"], single.get("order", 1))
    free, fixed = _apply_options(component.params, single["fixed"], single["priors"], "model spec")
    single.setdefault("name", _model_name(single))
    return SkyModel(name=single["name"], spec=json.loads(json.dumps(single)), component=component,
                    params=free, fixed=fixed)


# ----------------------------------------------------------------------------------------------------------
# Documentation table (``vlbicore models``).


def describe_models() -> str:
    """A printable table of every model type and modifier: parameters, units, meanings, default prior boxes."""
    lines = ["Sky models (ehtim type names). Sizes in µas, fluxes in Jy, angles in rad, PA East of North.",
             "V(u,v) = ∫ I(x,y) exp(+2πi(ux+vy)), x East, y North. m-ring orders via spec 'order' (β_k params).", ""]

    def table(title, params):
        lines.append(title)
        for q in params:
            box = f"[{q.low:g}, {q.high:g}]"
            lines.append(f"    {q.name:12s} {q.unit:4s} {box:18s} {q.description}")
        lines.append("")

    for kind in MODEL_TYPES:
        comp = component_for_type(kind, 1)
        doc = (_unwrap(comp).__doc__ or "").strip().splitlines()[0]
        if kind.startswith("stretched_"):
            doc = f"{kind[len('stretched_'):]} stretched along stretch_PA (then shifted). " + doc
        title = f"{kind}" + (" (order 1 shown)" if kind in _MRING_TYPES else "") + f": {doc}"
        table(title, comp.params)
    for mod, added in ((Shifted, (X0, Y0)), (Stretched, (STRETCH, STRETCH_PA)), (Rotated, (ROTATION,)),
                       (Convolved, (BLUR,))):
        table(f"modifier {mod.__name__}: {mod.__doc__.strip().splitlines()[0]}", added)
    return "\n".join(lines).rstrip() + "\n"


def _unwrap(component: Component) -> Component:
    while hasattr(component, "inner"):
        component = component.inner
    return component
