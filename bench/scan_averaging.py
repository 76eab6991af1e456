"""The numbers of docs/data.md "Scan averaging": segment averaging vs per-baseline scan averaging.

For every shipped EHT M87* 2017 file: rows, time stamps, closure phases and log closure amplitudes
(``build_products`` defaults), the uv misclosure |Σ signs·(u, v)| of the closure phases (max and
median, Mλ), the share of records and of 1/σ² weight kept, and the largest closure-phase change of
a noiseless asymmetric model when it is moved 40 µas off the phase centre (rad). "before" is the
averaging vlbicore used up to format 1 (ehtim's ``avg_coherent(scan_avg=True)``: each baseline averaged
over its own records of the scan, unweighted, all rows stamped with the scan's first time), rebuilt
here in NumPy; "after" is ``vlbicore.data.average_scans``.

Usage: python bench/scan_averaging.py [--min-segment-seconds 60]
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib

import numpy as np

from vlbicore.data import MIN_SEGMENT_SECONDS, average_scans, load_uvfits, segment_scans
from vlbicore.products import build_products
from vlbicore.units import RAD_PER_UAS

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "eht-m87-2017"


def per_baseline_average(raw):
    """The old scheme: each baseline over its own records of the scan, stamped at the scan start."""
    key = (raw.scan * len(raw.stations) + raw.ant1) * len(raw.stations) + raw.ant2
    groups, row = np.unique(key, return_inverse=True)
    count = np.bincount(row)

    def mean(x):
        return np.bincount(row, weights=x) / count
    first = np.unique(row, return_index=True)[1]
    scan_start = {s: raw.time[raw.scan == s].min() for s in np.unique(raw.scan)}
    scan = raw.scan[first]
    return dataclasses.replace(
        raw, u=mean(raw.u), v=mean(raw.v), vis=mean(raw.vis.real) + 1j * mean(raw.vis.imag),
        sigma=np.sqrt(np.bincount(row, weights=raw.sigma ** 2)) / count,
        time=np.array([scan_start[s] for s in scan]), ant1=raw.ant1[first], ant2=raw.ant2[first], scan=scan,
        tint=np.bincount(row, weights=raw.tint))


def model(u, v, x0=0.0, y0=0.0):
    ring = 0.6 * np.sinc(np.hypot(u, v) * 42 * RAD_PER_UAS)
    spot = 0.2 * np.exp(2j * np.pi * (u * 15 + v * 5) * RAD_PER_UAS)
    return (ring + spot) * np.exp(2j * np.pi * (u * x0 + v * y0) * RAD_PER_UAS)


def measure(obs, average, weight_kept, records_kept, raw):
    products = build_products(obs, ("cphase", "lcamp"))
    cp = products["cphase"]
    mis = np.hypot(np.sum(cp.signs * obs.u[cp.rows], 1), np.sum(cp.signs * obs.v[cp.rows], 1)) / 1e6
    closure = {}
    for name, offset in (("centred", (0.0, 0.0)), ("offset", (40.0, -20.0))):
        averaged = average(dataclasses.replace(raw, vis=model(raw.u, raw.v, *offset)))
        closure[name] = np.angle(np.prod(averaged.vis[cp.rows] ** cp.signs, axis=1))
    shift = np.max(np.abs(np.angle(np.exp(1j * (closure["offset"] - closure["centred"])))))
    return (f"{len(obs)} rows, {len(np.unique(obs.time))} stamps, cp {cp.n}, lcamp {products['lcamp'].n}, "
            f"misclosure max {mis.max():.3f} median {np.median(mis):.4f} Mλ, records {records_kept:.4f}, "
            f"weight {weight_kept:.4f}, 40-µas offset changes cp by {shift:.1e} rad")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-segment-seconds", type=float, default=MIN_SEGMENT_SECONDS)
    args = parser.parse_args()
    for path in sorted(DATA.glob("*.uvfits")):
        raw = load_uvfits(path, scan_average=False)
        weight = 1.0 / raw.sigma ** 2
        kept = segment_scans(raw, args.min_segment_seconds).row >= 0
        print(path.name[8:18])
        print("  before:", measure(per_baseline_average(raw), per_baseline_average, 1.0, 1.0, raw))
        after = average_scans(raw, args.min_segment_seconds)
        print("  after: ", measure(after, lambda o: average_scans(o, args.min_segment_seconds),
                                   weight[kept].sum() / weight.sum(), kept.mean(), raw))


if __name__ == "__main__":
    main()
