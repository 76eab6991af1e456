"""The large simulation-based calibration of issue 13: does the DEFAULT fit's 68 % / 95 % interval of the
ring diameter cover the truth at its nominal rate when the data carry 5 % non-closing errors?

Simulations: m-ring m = 1 truths (d uniform in [38, 46] µas, beta1_re / beta1_im uniform in [-0.2, 0.2];
F0 is pinned at 1 Jy by the closure-only fit) observed on the coverage of the shipped 2017-04-11 lo file
(101-lo) with thermal noise, a 5 % complex baseline-based error constant per scan (non-closing) and 10 %
station-gain errors with random phases (closing). Fit: `vlbicore fit`'s defaults (closure phases + log
closure amplitudes, closure covariance, default noise model = fitted non-closing term, lcamp SNR cut 3,
4 chains) — the sampler lengths are the defaults unless --warmup / --samples say otherwise (printed).
Batches of --batch simulations are one `fit_many` call each.

Prints per parameter the coverage of the 50 / 68 / 95 % intervals with Jeffreys 95 % binomial intervals,
whether each is consistent with the nominal rate, and writes the tables under --out.

Usage: nice -n 5 python bench/bench_calibration.py [--n 60] [--batch 20] [--warmup W] [--samples S]
       [--starts K] [--noise default|none] [--seed 0] [--out bench-calibration]
Batch tables already under --out are reused (an interrupted run continues where it stopped).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parents[1]
LIKE = REPO / "data/eht-m87-2017/SR1_M87_2017_101_lo_hops_netcal_StokesI.uvfits"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="simulated data sets (default 60)")
    parser.add_argument("--batch", type=int, default=20, help="simulations per fit_many batch (default 20)")
    parser.add_argument("--warmup", type=int, default=None, help="warmup per chain (default: the fit default)")
    parser.add_argument("--samples", type=int, default=None, help="draws per chain (default: the fit default)")
    parser.add_argument("--starts", type=int, default=None, help="optimiser starts (default: the fit default)")
    parser.add_argument("--nonclosing", type=float, default=0.05, help="injected non-closing fraction (0.05)")
    parser.add_argument("--gains", type=float, default=0.1, help="sd of injected log gain amplitudes (0.1)")
    parser.add_argument("--noise", default="default", help="noise model of the fit (default: default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of truths, data and fits (0)")
    parser.add_argument("--out", default="bench-calibration", help="directory for the tables (bench-calibration)")
    args = parser.parse_args()

    from vlbicore.calibration import CalibrationPlan, coverage_consistent, coverage_table, run_batch, write_table
    from vlbicore.config import FitConfig
    import pandas as pd

    sampler = {k: v for k, v in (("warmup", args.warmup), ("samples", args.samples),
                                              ("starts", args.starts)) if v is not None}
    config = FitConfig.from_layers(({"model": {"type": "mring", "order": 1}, "sampler": sampler,
                                     "noise": args.noise}, "bench"))
    plan = CalibrationPlan(like=str(LIKE), config=config, model_name="mring1", n_simulations=args.n,
                           batch_size=args.batch, nonclosing=args.nonclosing, gains=args.gains, seed=args.seed,
                           truths={"d": [38, 46], "beta1_re": [-0.2, 0.2], "beta1_im": [-0.2, 0.2]})
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s = config.sampler
    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    print(f"fit: products {','.join(config.products)}, noise {config.noise}, chains {s.chains}, warmup {s.warmup}, "
          f"samples {s.samples}, starts {s.starts}; injected nonclosing {args.nonclosing}, gains {args.gains}")
    frames = []
    t0 = time.perf_counter()
    for batch in range(plan.n_batches):
        path = out / f"batch-{batch:03d}.csv"
        if path.exists():
            frame = pd.read_csv(path)
        else:
            frame = run_batch(plan, batch)
            write_table(frame, path)
        frames.append(frame)
        print(f"batch {batch}: {frame.simulation.nunique()} simulations, {frame.batch_seconds.iloc[0]:.0f} s "
              f"(elapsed {time.perf_counter() - t0:.0f} s)", flush=True)
    frame = pd.concat(frames, ignore_index=True)
    write_table(frame, out / "calibration.csv")
    coverage = coverage_table(frame)
    write_table(coverage, out / "coverage.csv")
    sims = frame.drop_duplicates("simulation")
    print(f"\n{frame.simulation.nunique()} simulations; converged {sims.converged.mean():.0%}, adequate "
          f"{sims.adequate.mean():.0%}, median chi2/N against the total errors {sims.chi2_total_per_n.median():.2f}")
    from vlbicore.survey.calibration_plots import ecdf_difference_plots, outside_band

    ecdf_difference_plots(frame, out / "plots")
    print(f"{'parameter':18s} {'level':>5s} {'covered':>9s} {'rate':>6s}  95 % Jeffreys CI  nominal in CI  "
          "99 % binomial test  PIT ECDF in 95 % band")
    for row in coverage.itertuples():
        ok = coverage_consistent(row.covered, row.n, row.level)
        band = not outside_band(frame.loc[frame.parameter == row.parameter, "pit"].to_numpy())
        print(f"{row.parameter:18s} {row.level:5.2f} {row.covered:4d}/{row.n:<4d} {row.rate:6.2f}  "
              f"[{row.ci_low:.2f}, {row.ci_high:.2f}]      {'yes' if row.consistent else 'NO':3s}           "
              f"{'pass' if ok else 'FAIL'}               {'yes' if band else 'NO'}")
    print(f"total wall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
