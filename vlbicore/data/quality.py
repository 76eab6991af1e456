"""Checks of what the data can support, before a fit trusts them (each returns a one-line warning or None).

``uncalibrated_phases``: complex visibilities are only usable as such when their phases are calibrated.
Raw EHT data are not (the atmosphere above each station turns every scan's visibility phases into
noise), and a ``vis`` fit of them ends at prior edges with every transition divergent. Calibrated phases
change smoothly along a baseline's track: between successive scans the (u, v) point moves by |Δuv|, and
the phase of any source within a radius R of the phase centre changes by at most about 2π |Δuv| R
(plus the thermal error). The check counts successive-scan pairs whose phase jump exceeds that bound for
a generous R = 100 µas (twice an EHT field of interest); more than 20 % of pairs is not a source.
"""
from __future__ import annotations

import numpy as np

from vlbicore.units import RAD_PER_UAS

SOURCE_RADIUS_UAS = 100.0
JUMP_FRACTION_LIMIT = 0.2


def phase_jump_fraction(obs) -> float:
    """Fraction of successive-scan pairs on the same baseline whose phase jump is more than a compact
    source (radius ``SOURCE_RADIUS_UAS``) plus 3 σ of noise can explain (NaN with too few pairs)."""
    if len(obs) < 3:
        return float("nan")
    baseline = obs.ant1 * 10_000 + obs.ant2
    order = np.lexsort((obs.time, baseline))
    same = baseline[order][1:] == baseline[order][:-1]
    first, second = order[:-1][same], order[1:][same]
    if len(first) < 5:
        return float("nan")
    jump = np.abs(np.angle(obs.vis[second] * np.conj(obs.vis[first])))
    duv = np.hypot(obs.u[second] - obs.u[first], obs.v[second] - obs.v[first])
    noise = np.hypot(obs.sigma[first] / np.abs(obs.vis[first]), obs.sigma[second] / np.abs(obs.vis[second]))
    allowed = 2 * np.pi * duv * SOURCE_RADIUS_UAS * RAD_PER_UAS + 3 * noise
    return float(np.mean(jump > allowed))


def uncalibrated_phases(obs) -> str | None:
    """A one-line warning when the visibility phases look uncalibrated (see the module docstring)."""
    fraction = phase_jump_fraction(obs)
    if not fraction > JUMP_FRACTION_LIMIT:
        return None
    return (f"{obs.path}: visibility phases look uncalibrated ({100 * fraction:.0f} % of successive scans jump "
            "more than a compact source can); fit closure products (--products cphase,lcamp or amp,cphase) "
            "or add station gains instead of vis")
