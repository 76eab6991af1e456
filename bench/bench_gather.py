"""Benchmark: gather of many small synthetic fit stores — wall time and peak memory.

Makes synthetic stores (``vlbicore.store.synthetic_fit_inputs``: 3 parameters, 30 closure phases + 20 log
closure amplitudes, 4 chains) in a temp dir, then gathers subsets in fresh subprocesses and prints wall time
and peak resident memory (``resource.getrusage``) of each, plus the tracemalloc peak of Python/NumPy
allocations if ``--tracemalloc``. Memory must stay flat when stores × draws grow (each Dask task reduces one
store and lets it go); it would grow by the posterior + log-likelihood volume if gather held them all.

    python bench/bench_gather.py                 # 250 and 1000 stores × 200 draws, 250 stores × 800 draws
    python bench/bench_gather.py --stores 100 --workers 2 --keep DIR
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("ring", "mring")


def _write_one(args) -> str:
    from vlbicore.store import write_fit_store
from vlbicore.testing import synthetic_fit_inputs

    index, root, n_draws = args
    epoch_index, model = divmod(index, len(MODELS))
    model = MODELS[model]
    day = 1 + epoch_index % 28
    epoch = f"e{epoch_index:04d}"
    inputs = synthetic_fit_inputs(index, epoch=epoch, model=model, date=f"2017-04-{day:02d}", band="lo",
                                  n_draws=n_draws, data_seed=epoch_index, offset_bias=0.0 if model == "ring" else 0.1,
                                  converged=index % 97 != 0)
    path = Path(root) / f"{epoch}_{model}_{n_draws}.zarr"
    if not path.exists():
        write_fit_store(path, **inputs)
    return str(path)


def make_stores(root: Path, n: int, n_draws: int, processes: int) -> list[str]:
    jobs = [(i, str(root), n_draws) for i in range(n)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return pool.map(_write_one, jobs, chunksize=8)


CHILD = """
import json, resource, sys, time, tracemalloc
paths = json.load(open(sys.argv[1])); out = sys.argv[2]; workers = int(sys.argv[3]); trace = sys.argv[4] == "1"
processes = sys.argv[5] == "1"
from vlbicore.survey.gather import gather_stores
if trace:
    tracemalloc.start()
t0 = time.perf_counter()
result = gather_stores(paths, out, n_workers=workers, processes=processes)
wall = time.perf_counter() - t0
peak_traced = tracemalloc.get_traced_memory()[1] if trace else None
print(json.dumps({"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_traced_mb": None if peak_traced is None else peak_traced / 2**20,
                  "fits": len(result.fits), "problems": len(result.problems)}))
"""


def run_gather(paths: list[str], out: Path, workers: int, trace: bool, processes: bool) -> dict:
    listing = out.with_suffix(".json")
    listing.write_text(json.dumps(paths))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(listing), str(out), str(workers), "1" if trace else "0",
                           "1" if processes else "0"],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _store_megabytes(paths: list[str]) -> float:
    return sum(f.stat().st_size for p in paths for f in Path(p).rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="Dask threads (or processes)")
    parser.add_argument("--tracemalloc", action="store_true", help="also report the tracemalloc peak (slower)")
    parser.add_argument("--processes", action="store_true", help="Dask worker processes instead of threads")
    parser.add_argument("--keep", type=Path, help="make/keep the stores here instead of a temp dir")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="vlbicore-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        quarter = max(1, args.stores // 4)
        t0 = time.perf_counter()
        many = make_stores(root, args.stores, 200, processes=2)
        long_draws = make_stores(root, quarter, 800, processes=2)
        print(f"made {len(many) + len(long_draws)} stores in {time.perf_counter() - t0:.0f} s under {root}")
        cases = [
            (f"{quarter} stores x 200 draws", many[:quarter]),
            (f"{args.stores} stores x 200 draws", many),
            (f"{quarter} stores x 800 draws", long_draws),
        ]
        print(f"{'case':28s} {'store MB':>9s} {'wall s':>7s} {'ms/store':>9s} {'peak RSS MB':>12s} {'traced MB':>10s} fits problems")
        for i, (label, paths) in enumerate(cases):
            r = run_gather(paths, root / f"gather{i}", args.workers, args.tracemalloc, args.processes)
            traced = "-" if r["peak_traced_mb"] is None else f"{r['peak_traced_mb']:.0f}"
            print(f"{label:28s} {_store_megabytes(paths):9.0f} {r['wall_s']:7.1f} {1000 * r['wall_s'] / len(paths):9.1f} "
                  f"{r['peak_rss_mb']:12.0f} {traced:>10s} {r['fits']:4d} {r['problems']:8d}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
