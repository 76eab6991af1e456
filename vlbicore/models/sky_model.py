"""``SkyModel``: a component tree with fixed values and prior boxes, built from a JSON-able spec, and the
``vlbicore models`` table.

A spec is an ehtim type name (``"ring"``), a mapping ``{"type": "thick_mring", "order": 1, "modifiers":
["rotated"], "fixed": {...}, "priors": {...}}``, or a sum of named components ``{"components": {"ring":
{...}, "jet": {"type": "gauss"}}}`` whose parameters are called ``ring.d``, ``jet.F0``, ...
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vlbicore.errors import VlbiError
from vlbicore.models.components import Component, MRing, ThickMRing
from vlbicore.models.ehtim_types import MAX_MRING_ORDER, MODEL_TYPES, MODIFIERS, MRING_TYPES, component_for_type
from vlbicore.models.modifiers import Convolved, Rotated, Shifted, Stretched, Sum
from vlbicore.models.params import BLUR, ROTATION, STRETCH, STRETCH_PA, X0, Y0, Param, parse_prior
from vlbicore.models.uv import as_uv, gaussian_taper, uas

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
        return self._jitted_visibility(self.full_params(p), *as_uv(u, v))

    @cached_property
    def _jitted_visibility(self):
        return jax.jit(self.component.visibility)

    def has_orientation(self) -> bool:
        """Whether the model can tell an image from its point reflection (angles or m-ring asymmetry)."""
        return any(q.period or "beta" in q.name.split(".")[-1] or q.name.split(".")[-1] in ("x0", "y0", "fo")
                   for q in self.params)

    def closure_invariant_params(self) -> tuple[str, ...]:
        """Free parameters closure phases and log closure amplitudes cannot constrain.

        Closure quantities do not change under a common flux scale or a shift of the whole image, so one flux
        (F0 of the first component, which sets the scale of all others) and one absolute position (x0, y0 of
        the first component with both free) are returned, unless the fixed values already pin them.
        """
        free = set(self.names)
        all_names = [q.name for q in self.component.params]
        fluxes = [n for n in all_names if is_flux_scale(n)]
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
        if isinstance(self.component, Sum) and self.component.uses_fractions:
            for name, flux in self.component.component_fluxes(full).items():
                out[f"{name}.F0"] = flux
        return out

    def variable_attrs(self) -> dict[str, dict]:
        """Units of every posterior variable (free and derived), and the period of the angles, for the store."""
        out = {q.name: {"units": q.unit, **({"period": q.period} if q.period else {})} for q in self.params}
        for prefix, order in _mring_orders(self.component):
            for k in range(1, order + 1):
                out[f"{prefix}beta{k}_abs"] = {"units": "1"}
                out[f"{prefix}beta{k}_arg"] = {"units": "rad", "period": 2 * math.pi}
            out[f"{prefix}brightness_PA"] = {"units": "rad", "period": 2 * math.pi}
        if isinstance(self.component, Sum) and self.component.uses_fractions:
            for name, _ in self.component.components:
                out[f"{name}.F0"] = {"units": "Jy", "meaning": f"flux density of component {name} "
                                     "(total_flux × its fraction; relative when total_flux is pinned)"}
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
        freq = k / (npix * uas(pixel))                      # λ
        uu, vv = np.meshgrid(freq, freq)                     # [iv, iu]
        # one compiled call with everything as arguments: the program depends only on the model's structure,
        # so the persistent compilation cache serves every later plot of the same model (eager evaluation
        # compiled dozens of primitives, ~1 s per plot)
        tapered = jax.jit(lambda p, uu, vv, blur: self.visibility(p, uu, vv) * gaussian_taper(blur, jnp.hypot(uu, vv)))
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


_SPEC_KEYS = {"type", "order", "modifiers", "fixed", "priors", "name"}
_SUM_KEYS = {"components", "fixed", "priors", "name", "flux"}


def is_flux_scale(name: str) -> bool:
    """Whether parameter ``name`` is a flux density (Jy) that sets the scale of the image."""
    return name == "total_flux" or name.split(".")[-1] == "F0"


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
    if kind in MRING_TYPES:
        order = spec.get("order", 1)
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= int(order) <= MAX_MRING_ORDER:
            raise VlbiError(f"{where}: 'order' must be an integer from 0 to {MAX_MRING_ORDER}, got {order!r}")
        out["order"] = int(order)
    elif "order" in spec:
        raise VlbiError(f"{where}: 'order' applies only to m-ring types ({', '.join(sorted(MRING_TYPES))})")
    modifiers = spec.get("modifiers", [])
    if isinstance(modifiers, str) or not all(m in MODIFIERS for m in modifiers):
        raise VlbiError(f"{where}: 'modifiers' must be a list of {', '.join(MODIFIERS)}, got {modifiers!r}")
    if modifiers:
        out["modifiers"] = list(modifiers)
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
        raise VlbiError(f"{where}: expected a mapping of parameter name to a prior ([low, high], ...)")
    return {str(k): parse_prior(v, f"{where}.{k}") for k, v in values.items()}


def _apply_options(params, fixed, priors, where):
    """Split params into free (with overridden boxes) and fixed; unknown names are errors.

    A fixed value wins over a prior box for the same parameter (e.g. a closure-only fit pinning x0)."""
    names = [q.name for q in params]
    for label, given in (("fixed", fixed), ("priors", priors)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise VlbiError(f"{where}.{label}: unknown parameter(s) {unknown}; parameters: {', '.join(names)}")
    free = tuple(q.with_prior(priors[q.name]) if q.name in priors else q for q in params if q.name not in fixed)
    return free, {k: fixed[k] for k in names if k in fixed}


def _model_name(single: dict) -> str:
    return single["type"] + (str(single["order"]) if "order" in single else "") + "".join(
        f"+{m}" for m in single.get("modifiers", ()))


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
        flux = str(spec.get("flux", "fractions"))
        component = Sum.of({n: component_for_type(s["type"], s.get("order", 1), tuple(s.get("modifiers", ()))) for n, s in parts.items()},
                           flux)
        if component.uses_fractions:
            named = [f"{n}.F0" for n, s in parts.items() if "F0" in s["fixed"] or "F0" in s["priors"]]
            named += [k for k in (*spec.get("fixed", {}), *spec.get("priors", {})) if str(k).endswith(".F0")]
            if named:
                raise VlbiError(f"model spec: {', '.join(named)} is not a parameter of a sum with flux: fractions "
                                "(its fluxes are total_flux and <name>.flux_fraction); set those, or add flux: components")
        fixed = {f"{n}.{k}": val for n, s in parts.items() for k, val in s["fixed"].items()}
        priors = {f"{n}.{k}": box for n, s in parts.items() for k, box in s["priors"].items()}
        fixed.update(_float_map(spec.get("fixed", {}), "model spec.fixed"))
        priors.update(_prior_map(spec.get("priors", {}), "model spec.priors"))
        for n, s in parts.items():  # component-level names were local; check them with their prefix
            _apply_options(component_for_type(s["type"], s.get("order", 1), tuple(s.get("modifiers", ()))).params, s["fixed"], s["priors"],
                           f"model spec.components.{n}")
        free, fixed = _apply_options(component.params, fixed, priors, "model spec")
        name = str(spec.get("name", "+".join(f"{n}:{_model_name(s)}" for n, s in parts.items())))
        normal = {"components": parts, "fixed": {}, "priors": {}}
        normal["fixed"] = _float_map(spec.get("fixed", {}), "model spec.fixed")
        normal["priors"] = _prior_map(spec.get("priors", {}), "model spec.priors")
        normal["name"] = name
        if flux != "fractions":
            normal["flux"] = flux
        return SkyModel(name=name, spec=json.loads(json.dumps(normal)), component=component, params=free, fixed=fixed)
    single = _normalise_single(spec, "model spec")
    component = component_for_type(single["type"], single.get("order", 1), tuple(single.get("modifiers", ())))
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
        title = f"{kind}" + (" (order 1 shown)" if kind in MRING_TYPES else "") + f": {doc}"
        table(title, comp.params)
    how = {Shifted: "every type", Stretched: "the stretched_* types",
           **{cls: f"spec modifiers: [{name}]" for name, cls in MODIFIERS.items()}}
    for mod, added in ((Shifted, (X0, Y0)), (Stretched, (STRETCH, STRETCH_PA)), (Rotated, (ROTATION,)),
                       (Convolved, (BLUR,))):
        table(f"modifier {mod.__name__} ({how[mod]}): {mod.__doc__.strip().splitlines()[0]}", added)
    return "\n".join(lines).rstrip() + "\n"


def _unwrap(component: Component) -> Component:
    while hasattr(component, "inner"):
        component = component.inner
    return component
