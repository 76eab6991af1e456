"""How numbers are shown to astronomers in plots and the report: angles in degrees, angle series kept
contiguous on the circle, every axis label with its unit, parameters named by what they mean.

Stores and gather tables keep radians (the units of the fit); only what is displayed changes here.
"""
from __future__ import annotations

import math
import re

import numpy as np

DEGREES_PER_RADIAN = 180.0 / math.pi
UNIT_NAMES = {"1": "dimensionless", "": "unit not stored"}

# What the derived posterior variables mean (models/sky_model.py derives them for every m-ring, whatever
# its family); the free parameters' meanings come from the model itself (Param.description).
DERIVED_MEANINGS = (
    (re.compile(r"beta(\d+)_abs"), "amplitude |β{0}| of the m={0} brightness mode"),
    (re.compile(r"beta(\d+)_arg"), "phase arg β{0} of the m={0} brightness mode"),
    (re.compile(r"brightness_PA"), "position angle of the brightest side, East of North"),
)


def is_angle(units: str | None) -> bool:
    return str(units or "") == "rad"


def display_unit(units: str | None) -> str:
    """The unit shown: degrees for angles, the stored unit otherwise."""
    return "deg" if is_angle(units) else str(units or "")


def to_display(values, units: str | None):
    """Values in the displayed unit (radians -> degrees; anything else unchanged)."""
    values = np.asarray(values, dtype=np.float64)
    return values * DEGREES_PER_RADIAN if is_angle(units) else values


def display_period(period, units: str | None) -> float | None:
    """An angle's period in the displayed unit (360 or 180 deg), None for other parameters."""
    if period is None or not np.isfinite(period) or period <= 0:
        return None
    return float(period) * DEGREES_PER_RADIAN if is_angle(units) else float(period)


def axis_label(name: str, units: str | None) -> str:
    """``name (unit)``: 'd (µas)', 'brightness_PA (deg)', 'fr (dimensionless)'."""
    unit = display_unit(units)
    return f"{name} ({UNIT_NAMES.get(unit, unit)})"


def unwrap_series(medians, period: float | None):
    """Shift of each point (a multiple of ``period``) that puts a series of angles within half a period
    of its circular mean: a position angle wandering across ±180° stays one contiguous band instead of
    jumping between the top and the bottom of the plot. Zeros for non-angles and NaN points."""
    medians = np.asarray(medians, dtype=np.float64)
    shifts = np.zeros_like(medians)
    finite = np.isfinite(medians)
    if not period or not finite.any():
        return shifts
    phase = 2 * np.pi * medians[finite] / period
    centre = math.atan2(np.mean(np.sin(phase)), np.mean(np.cos(phase))) * period / (2 * np.pi)
    shifts[finite] = period * np.round((centre - medians[finite]) / period)
    return shifts


def unwrap_draws(draws, period: float | None):
    """Draws of an angle mapped into one period around their circular mean (contiguous trace/histogram)."""
    draws = np.asarray(draws, dtype=np.float64)
    if not period:
        return draws
    finite = draws[np.isfinite(draws)]
    if not finite.size:
        return draws
    phase = 2 * np.pi * finite / period
    centre = math.atan2(np.mean(np.sin(phase)), np.mean(np.cos(phase))) * period / (2 * np.pi)
    return centre + (draws - centre + period / 2) % period - period / 2


def derived_meaning(name: str) -> str | None:
    base = name.split(".")[-1]
    for pattern, text in DERIVED_MEANINGS:
        match = pattern.fullmatch(base)
        if match:
            return text.format(*match.groups())
    return None
