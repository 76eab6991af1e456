"""Scan averaging: coherent averages over time ranges that all baselines of one time stamp share.

Closures are formed among the rows of one time stamp, so every row of a time stamp must be averaged
over the same integrations: otherwise the (u, v) of a closure loop do not close (up to 53 Mλ on the
EHT 2017 files when each baseline was averaged over its own part of a scan, i.e. closure phases that
change with the source's offset from the phase centre). The scheme:

* **Scans** are runs of records separated by gaps longer than ``SCAN_GAP_HOURS`` (ehtim's
  ``add_scans``); ``Observation.scan`` says which scan a record belongs to. **Integrations** are the
  distinct time stamps of a scan (the records of one integration share one time, as in uvfits files).
* Each scan is split into **segments**: contiguous runs of integrations, each at least
  ``MIN_SEGMENT_SECONDS`` long (a scan shorter than that is one segment). In a segment only the
  baselines present at *every* integration of it are kept; the split is the one that keeps the most
  1/σ² weight (a dynamic programme over the scan's integrations; at equal weight, fewer segments).
  Records the chosen segments cannot use (a station present for less than the minimum, or missing in
  the middle of a segment) are dropped and counted as ``segment_incomplete``.
* Each kept baseline is **averaged coherently over exactly its segment's integrations**: unweighted
  means of the visibility and of u, v, σ = sqrt(Σσ²)/n (as ehtim's ``avg_coherent``), ``tint`` summed.
  Every row of a segment gets the same time stamp (the mean time of its integrations, bitwise
  identical); ``scan`` stays the parent scan, so a scan can hold several time stamps.

The minimum length keeps averaged rows at usable SNR (closure errors use the high-SNR propagation;
10-s records have SNR 3-5) while letting the part of a scan with an extra station stand on its own.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vlbicore.data.observation import Observation
from vlbicore.errors import VlbiError

# add_scans() defaults in ehtim 1.3.2: a gap longer than this (hours, ~59 s) starts a new scan.
SCAN_GAP_HOURS = 0.0165

# Shortest segment a scan is split into (seconds). Segments are measured from the start of their first
# integration to the end of their last (one integration step, the scan's median spacing, added to the
# span of their time stamps) and count as long enough within half a step (EHT 10-s integrations are
# 9.998 s apart, so six of them make 59.99 s).
MIN_SEGMENT_SECONDS = 60.0


def scan_ids(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scan index of each record (a new scan after a gap > SCAN_GAP_HOURS, as ehtim's add_scans)
    and the first time of each scan."""
    unique = np.unique(times)
    starts = np.concatenate([[True], np.diff(unique) > SCAN_GAP_HOURS])
    scan_of_unique = np.cumsum(starts) - 1
    scan = scan_of_unique[np.searchsorted(unique, times)]
    return scan, unique[starts]


@dataclasses.dataclass(frozen=True)
class Segmentation:
    """Which averaged row each record goes into; rows are in (time, ant1, ant2) order."""

    row: np.ndarray  # [n_records] index of the averaged row, -1 for a dropped record
    time: np.ndarray  # [n_rows] time stamp (h): the mean time of the row's segment
    scan: np.ndarray  # [n_rows] parent scan
    n_segments: int

    @property
    def dropped(self) -> int:
        """Records no segment can use (``flag_counts['segment_incomplete']``)."""
        return int(np.sum(self.row < 0))


def segment_scans(obs: Observation, min_segment_seconds: float = MIN_SEGMENT_SECONDS) -> Segmentation:
    """Split every scan of an unaveraged ``obs`` into segments and assign its records to averaged rows."""
    if not (np.isfinite(min_segment_seconds) and min_segment_seconds >= 0):
        raise VlbiError(f"min_segment_seconds: {min_segment_seconds!r} is not a length; give seconds >= 0")
    n_stations = len(obs.stations)
    baseline = np.asarray(obs.ant1) * n_stations + np.asarray(obs.ant2)
    records, row_ids, row_time, row_scan, row_baseline = [], [], [], [], []
    n_rows = n_segments = 0
    for scan in np.unique(obs.scan):  # one scan at a time (a few dozen integrations each)
        in_scan = np.flatnonzero(obs.scan == scan)
        times, t_index = np.unique(obs.time[in_scan], return_inverse=True)
        baselines, b_index = np.unique(baseline[in_scan], return_inverse=True)
        record = np.full((len(baselines), len(times)), -1)
        record[b_index, t_index] = in_scan
        if np.count_nonzero(record >= 0) < len(in_scan):
            raise VlbiError(f"{obs.path}: scan {scan} has two records of one baseline at one time; "
                            "give one record per baseline and integration")
        weight = np.where(record >= 0, 1.0 / obs.sigma[record] ** 2, 0.0)
        for start, stop in split_scan(record >= 0, weight, times * 3600.0, min_segment_seconds):
            kept = np.all(record[:, start:stop] >= 0, axis=1)
            if not kept.any():
                continue
            block = record[kept, start:stop]  # [kept baselines, integrations]
            records.append(block.ravel())
            row_ids.append(np.repeat(n_rows + np.arange(len(block)), block.shape[1]))
            row_time.append(np.full(len(block), times[start:stop].mean()))  # one float for the segment
            row_scan.append(np.full(len(block), scan))
            row_baseline.append(baselines[kept])
            n_rows += len(block)
            n_segments += 1
    time = np.concatenate(row_time) if row_time else np.zeros(0)
    if len(np.unique(time)) != n_segments:
        raise VlbiError(f"{obs.path}: two scans share a time stamp after averaging; "
                        "give scans that do not overlap in time")
    row = np.full(len(obs), -1)
    if n_rows:
        bl = np.concatenate(row_baseline)
        order = np.lexsort((bl, time))  # (time, ant1, ant2): baseline codes sort like (ant1, ant2)
        rank = np.empty(n_rows, int)
        rank[order] = np.arange(n_rows)
        row[np.concatenate(records)] = rank[np.concatenate(row_ids)]
        time, scan_of_row = time[order], np.concatenate(row_scan)[order]
    else:
        scan_of_row = np.zeros(0, int)
    return Segmentation(row=row, time=time, scan=scan_of_row, n_segments=n_segments)


def split_scan(present: np.ndarray, weight: np.ndarray, seconds: np.ndarray,
               min_seconds: float) -> list[tuple[int, int]]:
    """Integration ranges [start, stop) that split one scan so that the most weight is kept.

    ``present``/``weight`` are [baselines, integrations] (weight 0 where absent), ``seconds`` the
    integration times. A segment keeps the weight of the baselines present at all its integrations;
    segments are at least ``min_seconds`` long, except a whole scan shorter than that.
    """
    n_bl, n_t = present.shape
    step = float(np.median(np.diff(seconds))) if n_t > 1 else 0.0
    missing = np.concatenate([np.zeros((n_bl, 1), int), np.cumsum(~present, axis=1)], axis=1)
    cum_weight = np.concatenate([np.zeros((n_bl, 1)), np.cumsum(weight, axis=1)], axis=1)
    # value[i, j]: weight kept by the segment [i, j) (-inf where it is too short); a tiny cost per
    # segment makes the split with fewer segments win a tie
    value = np.full((n_t + 1, n_t + 1), -np.inf)
    cost = 1e-9 * float(weight.sum())
    for start in range(n_t):
        stop = np.arange(start + 1, n_t + 1)
        length = seconds[stop - 1] - seconds[start] + step
        complete = missing[:, start + 1:] == missing[:, start:start + 1]  # no absence in [start, stop)
        kept = np.sum(np.where(complete, cum_weight[:, start + 1:] - cum_weight[:, start:start + 1], 0.0), axis=0)
        allowed = length >= min_seconds - step / 2
        allowed[-1] |= start == 0  # the whole scan is always allowed
        value[start, start + 1:] = np.where(allowed, kept - cost, -np.inf)
    best, back = np.full(n_t + 1, -np.inf), np.zeros(n_t + 1, int)
    best[0] = 0.0
    for stop in range(1, n_t + 1):
        total = best[:stop] + value[:stop, stop]
        back[stop] = int(np.argmax(total))
        best[stop] = total[back[stop]]
    segments, stop = [], n_t
    while stop > 0:
        segments.append((int(back[stop]), stop))
        stop = back[stop]
    return segments[::-1]


def average_scans(obs: Observation, min_segment_seconds: float = MIN_SEGMENT_SECONDS) -> Observation:
    """The segment-averaged ``Observation`` of an unaveraged one (see the module docstring).

    Dropped records are counted in ``flag_counts['segment_incomplete']``; stations left without rows
    are removed from ``stations``.
    """
    seg = segment_scans(obs, min_segment_seconds)
    used = seg.row >= 0
    row, n_rows = seg.row[used], len(seg.time)
    count = np.bincount(row, minlength=n_rows)

    def total(values):
        return np.bincount(row, weights=np.asarray(values, float)[used], minlength=n_rows)

    first = np.flatnonzero(used)[np.unique(row, return_index=True)[1]]  # the first record of each row
    vis = obs.vis
    averaged = dataclasses.replace(
        obs, u=total(obs.u) / count, v=total(obs.v) / count,
        vis=(total(vis.real) + 1j * total(vis.imag)) / count,
        sigma=np.sqrt(total(obs.sigma ** 2)) / count, time=seg.time, ant1=obs.ant1[first],
        ant2=obs.ant2[first], scan=seg.scan.astype(np.int64),
        tint=total(obs.tint) if obs.tint is not None else None,
        flag_counts={**obs.flag_counts, "segment_incomplete": seg.dropped})
    return _without_unused_stations(averaged)


def _without_unused_stations(obs: Observation) -> Observation:
    used = np.unique(np.concatenate([obs.ant1, obs.ant2]))
    if len(used) == len(obs.stations):
        return obs
    index = np.full(len(obs.stations), -1)
    index[used] = np.arange(len(used))
    return dataclasses.replace(
        obs, stations=tuple(obs.stations[i] for i in used), ant1=index[obs.ant1], ant2=index[obs.ant2],
        station_xyz=None if obs.station_xyz is None else np.asarray(obs.station_xyz)[used])
