"""ehtim's model type names (``ring``, ``thick_mring``, ``stretched_mring``, ...) as component trees, and
``visibility(name, u, v, **params)``, the functional entry point with ehtim's parameter names."""
from __future__ import annotations

import jax.numpy as jnp

from vlbicore.errors import VlbiError
from vlbicore.models.components import (BlurredDisk, CircularGaussian, Component, Crescent, Disk, Gaussian, MRing,
                                        Point, Ring, ThickMRing, ThickRing)
from vlbicore.models.modifiers import Convolved, Rotated, Shifted, Stretched

MRING_TYPES = {"mring", "thick_mring", "stretched_mring", "stretched_thick_mring"}
MAX_MRING_ORDER = 10  # highest m-ring order a spec may ask for


def _base_component(base: str, order: int) -> Component:
    simple = {"point": Point, "circ_gauss": CircularGaussian, "gauss": Gaussian, "disk": Disk,
              "blurred_disk": BlurredDisk, "crescent": Crescent, "ring": Ring, "thick_ring": ThickRing}
    if base in simple:
        return simple[base]()
    return MRing(order) if base == "mring" else ThickMRing(order)


# Modifiers a model spec may add (``modifiers: [rotated, convolved]``), applied in the order given, after
# the stretch of a stretched type and before the shift every type has.
MODIFIERS = {"rotated": Rotated, "convolved": Convolved}


def component_for_type(name: str, order: int = 1, modifiers: tuple[str, ...] = ()) -> Component:
    """The component tree of an ehtim model type, including its (x0, y0) offset; stretched types stretch first,
    then the extra ``modifiers`` wrap it (names of ``MODIFIERS``)."""
    if name not in MODEL_TYPES:
        raise VlbiError(f"model type {name!r} is unknown; valid types: {', '.join(MODEL_TYPES)}")
    if name.startswith("stretched_"):
        component = Stretched(_base_component(name[len("stretched_"):], order))
    else:
        component = _base_component(name, order)
    for modifier in modifiers:
        if modifier not in MODIFIERS:
            raise VlbiError(f"model modifiers: {modifier!r} is unknown; valid modifiers: {', '.join(MODIFIERS)}")
        component = MODIFIERS[modifier](component)
    return Shifted(component)


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
    if name in MRING_TYPES:
        if "beta_list" not in p:
            raise VlbiError(f"model {name!r}: parameter 'beta_list' is missing; give a list of complex β_m")
        re, im = _beta_parts(p.pop("beta_list"))
        order = int(re.shape[0])
        for k in range(order):
            p[f"beta{k + 1}_re"], p[f"beta{k + 1}_im"] = re[k], im[k]
    component = component_for_type(name, order)
    expected = set(component.param_names)
    public = sorted((expected - {f"beta{k}_{part}" for k in range(1, order + 1) for part in ("re", "im")})
                    | ({"beta_list"} if name in MRING_TYPES else set()))
    unknown = sorted(set(p) - expected)
    if unknown:
        raise VlbiError(f"model {name!r}: unknown parameter(s) {unknown}; valid parameters: {', '.join(public)}")
    missing = sorted(expected - set(p))
    if missing:
        raise VlbiError(f"model {name!r}: parameter(s) {missing} missing; valid parameters: {', '.join(public)}")
    return component(p, u, v)
