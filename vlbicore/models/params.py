"""Model parameters: name, unit, meaning and default prior, stated once for every component.

Defaults are chosen for EHT-scale sources (M87*, Sgr A*); a fit configuration overrides them with
``priors``. An angle carries its ``period``: its statistics are circular.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

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


def beta_params(order: int) -> tuple[Param, ...]:
    out = []
    for k in range(1, order + 1):
        out.append(_p(f"beta{k}_re", "1", f"real part of the m={k} brightness Fourier coefficient β{k}", -0.5, 0.5))
        out.append(_p(f"beta{k}_im", "1", f"imaginary part of β{k}", -0.5, 0.5))
    return tuple(out)

