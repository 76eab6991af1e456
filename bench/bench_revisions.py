"""The talk's fit at two revisions of vlbicore, side by side in one run (before vs after a change).

Each revision is checked out into a temporary git worktree and runs its own ``bench/bench_fit.py --one``
(a fresh process per measurement, compilation included, as in bench_fit.py) with ``PYTHONPATH`` pointing
at that worktree, so the installed dependencies are shared and only vlbicore differs. Runs alternate
between the revisions (A B A B ...), so a drift in the machine's speed hits both alike. Prints each run,
the medians and the ratio after / before.

Usage: python bench/bench_revisions.py BEFORE AFTER [--variant amp+cphase] [--repeat 3] [--quick]
(AFTER may be ``WORKTREE`` for the uncommitted working tree.)
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]


def checkout(rev: str, parent: pathlib.Path) -> pathlib.Path:
    if rev == "WORKTREE":
        return REPO
    path = parent / rev.replace("/", "_")
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(path), rev], check=True,
                   capture_output=True)
    return path


def measure(tree: pathlib.Path, variant: str, warmup: int, samples: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "VLBICORE_JAX_CACHE": "off"}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, str(tree / "bench" / "bench_fit.py"), "--one", variant, "--warmup",
                          str(warmup), "--samples", str(samples)], cwd=tree, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--variant", default="amp+cphase", help="bench_fit.py variant (amp+cphase, closure-only)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per revision")
    parser.add_argument("--quick", action="store_true", help="200 warmup + 400 samples")
    args = parser.parse_args(argv)
    warmup, samples = (200, 400) if args.quick else (1000, 2000)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {rev: checkout(rev, pathlib.Path(tmp)) for rev in (args.before, args.after)}
        print(f"talk fit ({args.variant}, 4 chains x ({warmup} + {samples})), {os.cpu_count()} cores, "
              f"fresh process per run, runs alternating")
        runs: dict[str, list[dict]] = {rev: [] for rev in trees}
        try:
            for i in range(args.repeat):
                for rev, tree in trees.items():
                    r = measure(tree, args.variant, warmup, samples)
                    runs[rev].append(r)
                    print(f"  run {i + 1} {rev:>12s}: wall {r['wall']:6.2f} s, max R-hat {r['rhat']:.4f}, "
                          f"min bulk ESS {r['ess_min']:.0f}, d = {r['d']:.2f} µas", flush=True)
        finally:
            for rev, tree in trees.items():
                if tree != REPO:
                    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                                   capture_output=True)
        medians = {rev: statistics.median(r["wall"] for r in rs) for rev, rs in runs.items()}
        for rev, m in medians.items():
            print(f"median {rev:>12s}: {m:.2f} s")
        print(f"ratio after / before: {medians[args.after] / medians[args.before]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
