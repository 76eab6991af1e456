"""Time windows of an observation (snapshots): split one night into scans, fixed-length windows or
explicit intervals, each a smaller :class:`~vlbicore.data.observation.Observation` fitted on its own.

Specs (``snapshots:`` in a fit configuration, ``--snapshots`` on the command line):

- ``"scan"``: one window per scan (the parent scan of the averaged segments, ``Observation.scan``);
- a duration such as ``"10min"``, ``"2h"``, ``"90s"``: consecutive windows of that length from the
  first time stamp of the observation (empty ones left out);
- a list of ``[start, end]`` pairs in hours UTC (the observation's ``time``): explicit windows,
  ``start <= t < end`` (the last one also includes ``end``).

A window's ``time_start``/``time_end`` are the first and last time stamps of its rows for ``scan``, the
window edges otherwise (hours UTC). Units: hours throughout.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import numpy as np

from vlbicore.data.observation import Observation
from vlbicore.errors import VlbiError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|min|m|h|hr)\s*$")
_HOURS_PER_UNIT = {"s": 1 / 3600, "sec": 1 / 3600, "min": 1 / 60, "m": 1 / 60, "h": 1.0, "hr": 1.0}
SPEC_HELP = "use 'scan', a duration such as '10min', '2h' or '90s', or a list of [start, end] hours UTC"


@dataclasses.dataclass(frozen=True)
class Window:
    """One time window: its position in the list, its edges in hours UTC, and the row indices of the
    observation that fall in it."""

    index: int
    time_start: float
    time_end: float
    rows: np.ndarray


def parse_spec(spec: Any, where: str = "snapshots") -> Any:
    """The normalised snapshot spec: ``"scan"``, a window length in hours (float), or a tuple of
    ``(start, end)`` pairs in hours; anything else -> VlbiError naming ``where``."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("scan", "scans"):
            return "scan"
        match = _DURATION.match(text)
        if match:
            hours = float(match.group(1)) * _HOURS_PER_UNIT[match.group(2)]
            if hours > 0:
                return hours
        raise VlbiError(f"{where}: {spec!r} is not a snapshot spec; {SPEC_HELP}")
    if isinstance(spec, Sequence) and spec and not isinstance(spec, (bytes, bytearray)):
        pairs = []
        for i, pair in enumerate(spec):
            ok = isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in pair)
            if not ok or not pair[0] < pair[1]:
                raise VlbiError(f"{where}[{i}]: {pair!r} is not a [start, end] pair of hours with start < end; {SPEC_HELP}")
            pairs.append((float(pair[0]), float(pair[1])))
        return tuple(pairs)
    raise VlbiError(f"{where}: {spec!r} is not a snapshot spec; {SPEC_HELP}")


def describe_spec(spec: Any) -> str:
    """The spec in words, for stores and summaries."""
    spec = parse_spec(spec)
    if spec == "scan":
        return "scan"
    if isinstance(spec, float):
        minutes = spec * 60
        return f"{minutes:g}min" if minutes < 120 else f"{spec:g}h"
    return "explicit windows " + ", ".join(f"[{a:g}, {b:g}] h" for a, b in spec)


def split_windows(obs: Observation, spec: Any) -> list[Window]:
    """The non-empty time windows of ``obs`` for ``spec`` (see the module head), in time order."""
    spec = parse_spec(spec)
    time = np.asarray(obs.time, np.float64)
    if len(time) == 0:
        return []
    if spec == "scan":
        groups = [np.flatnonzero(obs.scan == s) for s in np.unique(obs.scan)]
        groups.sort(key=lambda rows: float(time[rows].min()))
        edges = [(float(time[r].min()), float(time[r].max())) for r in groups]
    elif isinstance(spec, float):
        t0 = float(time.min())
        # a tiny tolerance keeps a time stamp exactly on an edge out of rounding trouble
        k = np.floor((time - t0) / spec + 1e-9).astype(np.int64)
        groups = [np.flatnonzero(k == i) for i in np.unique(k)]
        edges = [(t0 + i * spec, t0 + (i + 1) * spec) for i in np.unique(k)]
    else:
        groups, edges = [], []
        for j, (start, end) in enumerate(spec):
            last = j == len(spec) - 1
            inside = (time >= start) & ((time <= end) if last else (time < end))
            if inside.any():
                groups.append(np.flatnonzero(inside))
                edges.append((start, end))
    return [Window(i, a, b, rows) for i, ((a, b), rows) in enumerate(zip(edges, groups))]


def window_observation(obs: Observation, window: Window) -> Observation:
    """The rows of ``obs`` inside ``window``, as an observation of their own (same file, stations and
    metadata)."""
    rows = np.asarray(window.rows)
    per_row = {name: getattr(obs, name)[rows] for name in ("u", "v", "vis", "sigma", "time", "ant1", "ant2", "scan")}
    if obs.tint is not None:
        per_row["tint"] = np.asarray(obs.tint)[rows]
    return dataclasses.replace(obs, **per_row)
