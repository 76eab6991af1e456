"""Modifiers with an explicit contract, and sums of components.

* ``Shifted``: V(u, v) · exp(+2πi (u x0 + v y0)); adds ``x0``, ``y0`` (µas, East and North).
* ``Stretched``: V_inner(S(u, v)), S stretching by ``stretch`` along ``stretch_PA``; flux unchanged.
* ``Rotated``: V_inner(R(−rotation)(u, v)); a feature at PA φ moves to φ + ``rotation``.
* ``Convolved``: V_inner · (visibility of a unit-flux circular Gaussian of FWHM ``blur``).
* ``Sum``: named components added; a component's parameter ``q`` is called ``<name>.q``.

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
