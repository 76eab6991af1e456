"""Modifiers with an explicit contract, and sums of components.

* ``Shifted``: V(u, v) · exp(+2πi (u x0 + v y0)); adds ``x0``, ``y0`` (µas, East and North).
* ``Stretched``: V_inner(S(u, v)), S stretching by ``stretch`` along ``stretch_PA``; flux unchanged.
* ``Rotated``: V_inner(R(−rotation)(u, v)); a feature at PA φ moves to φ + ``rotation``.
* ``Convolved``: V_inner · (visibility of a unit-flux circular Gaussian of FWHM ``blur``).
* ``Sum``: named components added; a component's parameter ``q`` is called ``<name>.q``. By default
  (``flux="fractions"``) the components' own fluxes are replaced by one ``total_flux`` (Jy) and, for every
  component but the first, a ``<name>.flux_fraction`` (dimensionless): with two components it is that
  component's share of the total and the first holds the rest; with more it is the share of the flux the
  components before it (but the first) left over (stick-breaking), and the first holds what remains.
  Closure data fix no flux scale, so a closure fit pins ``total_flux`` and the fractions keep their meaning.
  ``flux="components"`` keeps one ``<name>.F0`` (Jy) per component instead.

A modifier adds its own parameters to those of the component it wraps and never changes their meaning;
wrapping one component twice with the same modifier is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import jax.numpy as jnp

from vlbicore.errors import VlbiError
from vlbicore.models.components import Component
from vlbicore.models.params import BLUR, ROTATION, STRETCH, STRETCH_PA, X0, Y0, Param
from vlbicore.models.uv import gaussian_taper, shift_phase, uv_radius

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
        return self.inner.visibility(p, u, v) * shift_phase(u, v, p["x0"], p["y0"])


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
        return self.inner.visibility(p, u, v) * gaussian_taper(p["blur"], uv_radius(u, v))


@dataclass(frozen=True)
class Sum(Component):
    """Sum of named components; a component's parameter ``q`` is called ``<name>.q``."""

    components: tuple[tuple[str, Component], ...]
    flux: str = "fractions"
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
        if self.flux not in SUM_FLUX_FORMS:
            raise VlbiError(f"model: a sum's flux is {self.flux!r}; use one of {', '.join(SUM_FLUX_FORMS)}")
        if self.uses_fractions and any("F0" not in comp.param_names for _, comp in self.components):
            raise VlbiError("model: flux: fractions needs every component to have a flux F0; use flux: components")

    @classmethod
    def of(cls, components: Mapping[str, Component], flux: str = "fractions") -> "Sum":
        return cls(tuple(components.items()), flux)

    @property
    def uses_fractions(self) -> bool:
        """Whether the sum is parameterised by a total flux and flux fractions (see the module head)."""
        return self.flux == "fractions" and len(self.components) > 1

    @property
    def params(self):
        if not self.uses_fractions:
            return tuple(q.renamed(f"{name}.{q.name}") for name, comp in self.components for q in comp.params)
        n = len(self.components)
        out = [TOTAL_FLUX]
        for k, (name, comp) in enumerate(self.components):
            for q in comp.params:
                if q.name != "F0":
                    out.append(q.renamed(f"{name}.{q.name}"))
                elif k > 0:
                    out.append(_fraction_param(name, two=n == 2))
        return tuple(out)

    def component_fluxes(self, p) -> dict:
        """``{name: F0}`` (Jy) of every component; JAX or NumPy values (draws work too)."""
        if not self.uses_fractions:
            return {name: p[f"{name}.F0"] for name, _ in self.components}
        left = 1.0
        fluxes = {}
        for name, _ in self.components[1:]:
            share = p[f"{name}.flux_fraction"]
            fluxes[name] = p["total_flux"] * left * share
            left = left * (1.0 - share)
        first = self.components[0][0]
        return {first: p["total_flux"] * left, **fluxes}

    def visibility(self, p, u, v):
        fluxes = self.component_fluxes(p) if self.uses_fractions else {}
        total = None
        for name, comp in self.components:
            prefix = name + "."
            local = {k[len(prefix):]: val for k, val in p.items() if k.startswith(prefix)}
            if name in fluxes:
                local["F0"] = fluxes[name]
            term = comp.visibility(local, u, v)
            total = term if total is None else total + term
        return total


SUM_FLUX_FORMS = ("fractions", "components")
TOTAL_FLUX = Param("total_flux", "Jy", "total flux density of the sum of components", 0.01, 5.0)


def _fraction_param(name: str, *, two: bool) -> Param:
    meaning = (f"fraction of the total flux in component {name} (the first component holds the rest)" if two else
               f"share of the flux left by the components before {name} (but the first) that {name} holds")
    return Param(f"{name}.flux_fraction", "1", meaning, 0.0, 1.0)
