"""Marginal cost of a posterior in a batch: N posteriors fitted in one ``fit_many`` program vs N lone fits.

Posteriors: snapshots (per-scan windows, see vlbicore.data.windows) of the shipped M87* 2017 files, or
simulated whole-track epochs (an m-ring on the coverage of the shipped files, one noise seed each). For
each N in ``--sizes`` one batch of N posteriors is fitted in this process; lone fits are measured on
``--lone`` posteriors (the first compiles its programs: "cold"; the others reuse them: "warm") and the
cost of N lone fits is EXTRAPOLATED as cold + (N - 1) x warm (one process fitting them one after the
other; "speed-up" is against this), and as N x cold (N separate jobs, each compiling). Every fit uses the
same sampler settings (same chains, warmup and draws). Printed: wall time per batch, marginal cost per
added posterior as the slope between consecutive sizes (T(N) - T(N_prev)) / (N - N_prev) (both batches
compile their own shapes, so the slope is the cost of a posterior, not of a compilation), and its ratio to a lone fit's wall time (cold: what a workflow
job pays for its fit, excluding Python start-up and imports; warm: compute only).

Usage: python bench/bench_batch.py [--source snapshots|simulated] [--sizes 1,8,32,128] [--chains 4]
       [--warmup 500] [--samples 500] [--lone 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "eht-m87-2017"


def product_sets(source: str, n: int, config):
    """``n`` product sets: per-scan windows cycling over the shipped files, or simulated epochs."""
    import numpy as np

    from vlbicore.data import load_observation
    from vlbicore.data.simulate import simulate_observation
    from vlbicore.likelihood import with_systematic
    from vlbicore.pipeline import prepare_products, snapshot_products

    files = sorted(DATA.glob("*.uvfits"))
    out = []
    if source == "snapshots":
        for path in files:
            obs = with_systematic(load_observation(path), config.systematic)
            out.extend(snapshot_products(obs, config, "scan")[1])
            if len(out) >= n:
                break
        while len(out) < n:  # more posteriors than windows: repeat them (same data, distinct posteriors)
            out.extend(out[: n - len(out)])
        return out[:n]
    model = config.sky_model
    truth = {"F0": 0.6, "d": 42.0, "x0": 0.0, "y0": 0.0, "beta1_re": -0.2, "beta1_im": 0.1}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "vlbicore-bench-batch"
    tmp.mkdir(exist_ok=True)
    for i in range(n):
        path = tmp / f"sim{i}.uvfits"
        if not path.exists():
            simulate_observation(lambda u, v: np.asarray(model.visibility(truth, u, v)), like=files[i % len(files)],
                                 seed=i, out=path)
        out.append(prepare_products(path, config)[1])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("snapshots", "simulated"), default="snapshots")
    parser.add_argument("--sizes", default="1,8,32,128")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--starts", type=int, default=16)
    parser.add_argument("--lone", type=int, default=3, help="lone fits measured (the first compiles)")
    parser.add_argument("--chain-method", default="parallel", choices=("parallel", "vectorized", "sequential"),
                        help="how the slots run (lone fits and batches alike)")
    parser.add_argument("--host-devices", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.host_devices}"

    import tempfile

    import jax

    jax.config.update("jax_enable_x64", True)
    # a private persistent compilation cache, as `vlbicore fit` uses one: the cold lone fit fills it, the
    # warm ones (new Python functions, so new traces) find their XLA programs there
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="vlbicore-bench-batch-cache-"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    from vlbicore.config import FitConfig
    from vlbicore.inference import fit, fit_many

    sizes = [int(s) for s in args.sizes.split(",")]
    config = FitConfig.from_dict({"model": {"type": "mring", "order": 1}, "priors": {"d": [30, 60]},
                                  "sampler": {"chains": args.chains, "warmup": args.warmup, "samples": args.samples,
                                              "starts": args.starts, "chain_method": args.chain_method}})
    t0 = time.perf_counter()
    sets = product_sets(args.source, max(sizes + [args.lone]), config)
    print(f"{len(sets)} {args.source} posteriors built in {time.perf_counter() - t0:.1f} s; "
          f"data per posterior: median {int(sorted(sum(p.n for p in s.values()) for s in sets)[len(sets) // 2])}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start; jax {jax.__version__}, {args.host_devices} host devices; "
          f"sampler {args.chains} chains x ({args.warmup} + {args.samples}), {args.starts} starts, "
          f"chain_method {args.chain_method}")
    model, noise, sampler = config.sky_model, config.noise_model, config.sampler

    lone = []
    for s in sets[: args.lone]:
        t = time.perf_counter()
        fit(s, model, sampler, noise)
        lone.append(time.perf_counter() - t)
    cold, warm = lone[0], (sum(lone[1:]) / len(lone[1:]) if len(lone) > 1 else lone[0])
    print(f"lone fits: cold (compiles) {cold:.1f} s, warm {warm:.2f} s (mean of {len(lone) - 1})")

    batch = {}
    print(f"{'N':>5} {'batch wall':>11} {'per post.':>10} {'marginal':>9} {'/cold':>7} {'/warm':>7} "
          f"{'N lone (extrap.)':>17} {'N x cold':>9} {'speed-up':>9} {'converged':>10} {'chains':>7} {'rounds':>6}")
    for n in sizes:
        t = time.perf_counter()
        results = fit_many(sets[:n], model, sampler, noise)
        batch[n] = time.perf_counter() - t
        previous = [m for m in batch if m < n]
        marginal = (batch[n] - batch[previous[-1]]) / (n - previous[-1]) if previous else float("nan")
        lone_n = cold + (n - 1) * warm
        converged = sum(bool(r.convergence["converged"]) for r in results)
        # a posterior with several modes worth sampling gets chains per mode: extra slots, run in extra
        # rounds of N x chains slots (the last one filled with copies)
        slots = sum(int(next(iter(r.posterior.values())).shape[0]) for r in results)
        rounds = -(-slots // (n * args.chains))
        print(f"{n:5d} {batch[n]:10.1f}s {batch[n] / n:9.2f}s {marginal:8.2f}s {marginal / cold:7.1%} "
              f"{marginal / warm:7.1%} {lone_n:16.1f}s {n * cold:8.1f}s {lone_n / batch[n]:8.2f}x {converged:>5d}/{n} {slots:7d} {rounds:6d}")
        sys.stdout.flush()
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
