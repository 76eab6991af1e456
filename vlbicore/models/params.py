"""Model parameters: name, unit, meaning and default prior, stated once for every component.

Defaults are chosen for EHT-scale sources (M87*, Sgr A*); a fit configuration overrides them with
``priors``. An angle carries its ``period``: its statistics are circular, and an angle whose prior box is
one whole period is sampled on the circle (no edges).

Priors, as a configuration writes them (:func:`parse_prior`):

* ``[low, high]`` or ``{uniform: [low, high]}``: uniform on the box (the default of every model parameter);
* ``{halfnormal: scale}``: half-normal on [0, ∞) (the default of the noise terms);
* ``{normal: [mean, sd]}``: normal on the real line (station log-gain amplitudes);
* ``{loguniform: [low, high]}``: uniform in log x on [low, high] (scale parameters).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from vlbicore.errors import VlbiError

PRIOR_KINDS = ("uniform", "halfnormal", "normal", "loguniform")


@dataclass(frozen=True)
class Param:
    """One parameter: name, unit, meaning and prior. ``low``/``high`` bound the uniform box (and the
    log-uniform range); ``prior`` is ``()`` for the uniform box, else ``("halfnormal", scale)``,
    ``("normal", mean, sd)`` or ``("loguniform", low, high)``."""

    name: str
    unit: str
    description: str
    low: float
    high: float
    period: float | None = None  # angles: statistics of the draws are circular with this period
    prior: tuple = ()

    def renamed(self, name: str) -> "Param":
        return replace(self, name=name)

    @property
    def prior_kind(self) -> str:
        return self.prior[0] if self.prior else "uniform"

    def with_prior(self, spec) -> "Param":
        """This parameter with the prior ``spec`` (a normalised :func:`parse_prior` value)."""
        if isinstance(spec, list):
            return replace(self, low=spec[0], high=spec[1], prior=())
        (kind, value), = spec.items()
        if kind == "uniform":
            return replace(self, low=value[0], high=value[1], prior=())
        if kind == "loguniform":
            return replace(self, low=value[0], high=value[1], prior=("loguniform", value[0], value[1]))
        if kind == "halfnormal":
            return replace(self, prior=("halfnormal", value))
        return replace(self, prior=("normal", value[0], value[1]))

    def describe_prior(self) -> str:
        """The prior in words, e.g. ``uniform [0, 150]`` or ``halfnormal(0.1)``."""
        kind = self.prior_kind
        if kind == "uniform":
            circle = " (on the circle)" if self.period and math.isclose(self.high - self.low, self.period) else ""
            return f"uniform [{self.low:g}, {self.high:g}]{circle}"
        return f"{kind}({', '.join(f'{x:g}' for x in self.prior[1:])})"

    def prior_json(self):
        """The prior as a configuration writes it (JSON-able; [low, high] for a uniform box)."""
        kind = self.prior_kind
        if kind == "uniform":
            return [self.low, self.high]
        values = list(self.prior[1:])
        return {kind: values[0] if kind == "halfnormal" else values}


def parse_prior(value, where: str):
    """A prior as written in a configuration, checked and normalised: ``[low, high]`` (uniform box), or a
    one-key mapping ``{uniform|loguniform: [low, high]}``, ``{halfnormal: scale}``, ``{normal: [mean, sd]}``."""
    if not isinstance(value, Mapping):
        return list(_pair(value, where, "[low, high]", ordered=True))
    if len(value) != 1 or next(iter(value)) not in PRIOR_KINDS:
        raise VlbiError(f"{where}: expected [low, high] or one of {{{', '.join(PRIOR_KINDS)}: ...}}, got {value!r}")
    (kind, arg), = value.items()
    if kind == "halfnormal":
        try:
            scale = float(arg)
        except (TypeError, ValueError):
            raise VlbiError(f"{where}.halfnormal: expected a scale > 0, got {arg!r}") from None
        if not scale > 0:
            raise VlbiError(f"{where}.halfnormal: expected a scale > 0, got {arg!r}")
        return {"halfnormal": scale}
    if kind == "normal":
        mean, sd = _pair(arg, f"{where}.normal", "[mean, sd]", ordered=False)
        if not sd > 0:
            raise VlbiError(f"{where}.normal: sd must be > 0, got {sd}")
        return {"normal": [mean, sd]}
    low, high = _pair(arg, f"{where}.{kind}", "[low, high]", ordered=True)
    if kind == "loguniform" and not low > 0:
        raise VlbiError(f"{where}.loguniform: need 0 < low < high, got [{low}, {high}]")
    return {kind: [low, high]}


def _pair(value, where: str, shape: str, *, ordered: bool) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in value)
    except (TypeError, ValueError):
        raise VlbiError(f"{where}: expected {shape}, got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise VlbiError(f"{where}: expected finite numbers {shape}, got {value!r}")
    if ordered and not a < b:
        raise VlbiError(f"{where}: need low < high, got [{a}, {b}]")
    return a, b


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


def beta_params(order: int) -> tuple[Param, ...]:
    out = []
    for k in range(1, order + 1):
        out.append(_p(f"beta{k}_re", "1", f"real part of the m={k} brightness Fourier coefficient β{k}", -0.5, 0.5))
        out.append(_p(f"beta{k}_im", "1", f"imaginary part of β{k}", -0.5, 0.5))
    return tuple(out)

