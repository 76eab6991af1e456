"""Scan averaging: coherent averages of each baseline over a scan, with one time stamp per scan.

Scans are runs of records separated by gaps longer than ``SCAN_GAP_HOURS`` (ehtim's ``add_scans``).
"""
from __future__ import annotations

import numpy as np

# add_scans() defaults in ehtim 1.3.2: a gap longer than this (hours, ~59 s) starts a new scan.
SCAN_GAP_HOURS = 0.0165


def scan_ids(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scan index of each record (a new scan after a gap > SCAN_GAP_HOURS, as ehtim's add_scans)
    and the first time of each scan."""
    unique = np.unique(times)
    starts = np.concatenate([[True], np.diff(unique) > SCAN_GAP_HOURS])
    scan_of_unique = np.cumsum(starts) - 1
    scan = scan_of_unique[np.searchsorted(unique, times)]
    return scan, unique[starts]
