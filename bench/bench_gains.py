"""Station gains: the talk's fit (M87* 2017-04-11 lo, thick m-ring m = 1, 4 chains × (1000 + 2000)) closure-only
vs amplitudes + closure phases with analytically marginalised gains vs with sampled gains, one run each.

Every variant uses the default noise model and runs in a fresh process (compilation and the mode search
included, data loading not). Prints wall times, d, convergence, amplitude χ²/N and the ratios to the
closure-only fit (target: marginalised gains at most 3× closure-only).

``--m87``: instead, fit all 8 shipped M87* 2017 files with amp + closure phases and marginalised gains
(``--warmup``/``--samples``, default 500 + 1000) and print d and the amplitudes' (gain-corrected) and
closure phases' reduced χ² per file.

Usage: python bench/bench_gains.py [--quick] [--m87]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "data/eht-m87-2017"
DATA = DATA_DIR / "SR1_M87_2017_101_lo_hops_netcal_StokesI.uvfits"
VARIANTS = {
    "closure-only (cphase+lcamp)": {"products": ["cphase", "lcamp"]},
    "amp+cphase, no gains": {"products": ["amp", "cphase"]},
    "amp+cphase, marginal gains": {"products": ["amp", "cphase"], "gains": True},
    "amp+cphase, sampled gains": {"products": ["amp", "cphase"], "gains": {"method": "sampled"}},
}


def one(settings: dict, path, chains: int, warmup: int, samples: int) -> dict:
    import numpy as np

    from vlbicore.config import FitConfig
    from vlbicore.inference import fit
    from vlbicore.pipeline import prepare_products

    config = FitConfig.from_dict({"model": {"type": "thick_mring", "order": 1}, **settings,
                                  "sampler": {"chains": chains, "warmup": warmup, "samples": samples, "seed": 0}})
    _, products, _ = prepare_products(path, config)
    t0 = time.perf_counter()
    result = fit(products, config.sky_model, config.sampler, config.noise_model, gains=config.gain_model)
    wall = time.perf_counter() - t0
    d = np.ravel(result.posterior["d"])
    return {"wall": wall, "d": float(np.median(d)), "d_sd": float(np.std(d)), "rhat": result.convergence["max_rhat"],
            "converged": bool(result.convergence["converged"]), "timings": result.timings,
            "n_data": {k: p.n for k, p in products.items()}, "n_parameters": result.n_parameters,
            "chi2": {k: g["chi2_per_n"] for k, g in result.goodness_of_fit.items()},
            "chi2_total": {k: g["chi2_total_per_n"] for k, g in result.goodness_of_fit.items()}}


def _fresh(label: str, path, warmup: int, samples: int) -> dict:
    cmd = [sys.executable, __file__, "--one", label, "--file", str(path), "--warmup", str(warmup),
           "--samples", str(samples)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 warmup + 400 samples")
    parser.add_argument("--m87", action="store_true", help="all 8 shipped M87* files, amp+cphase, marginal gains")
    parser.add_argument("--warmup", type=int, help="warmup steps per chain")
    parser.add_argument("--samples", type=int, help="draws per chain")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(VARIANTS[args.one], args.file, 4, args.warmup, args.samples), default=float))
        return 0
    import jax

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, jax {jax.__version__}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS')}")
    if args.m87:
        warmup, samples = args.warmup or 500, args.samples or 1000
        print(f"amp+cphase with marginal gains, thick_mring m=1, 4 chains × ({warmup} + {samples})")
        for path in sorted(DATA_DIR.glob("*.uvfits")):
            r = _fresh("amp+cphase, marginal gains", path, warmup, samples)
            print(f"{path.name[8:20]}: d = {r['d']:.2f} ± {r['d_sd']:.2f} µas, amp chi2/N {r['chi2']['amp']:.2f} "
                  f"(total {r['chi2_total']['amp']:.2f}), cphase chi2/N {r['chi2']['cphase']:.2f} "
                  f"(total {r['chi2_total']['cphase']:.2f}), max R-hat {r['rhat']:.3f}, wall {r['wall']:.0f} s",
                  flush=True)
        return 0
    warmup, samples = (200, 400) if args.quick else (args.warmup or 1000, args.samples or 2000)
    print(f"data: {DATA.name}; thick_mring m=1; 4 chains × ({warmup} + {samples}); default noise model")
    rows = {}
    for label in VARIANTS:
        r = rows[label] = _fresh(label, DATA, warmup, samples)
        t = r["timings"]
        chi2 = ", ".join(f"{k} {v:.2f}" for k, v in r["chi2"].items())
        print(f"{label:30s} wall {r['wall']:7.1f} s (optimise {t['optimise']:.1f}, warmup {t['warmup']:.1f}, sampling "
              f"{t['sampling']:.1f}); p = {r['n_parameters']}; d = {r['d']:.2f} ± {r['d_sd']:.2f} µas; max R-hat "
              f"{r['rhat']:.3f}; chi2/N {chi2}; data {r['n_data']}", flush=True)
    base = rows["closure-only (cphase+lcamp)"]["wall"]
    for label in list(VARIANTS)[1:]:
        print(f"ratio wall {label} / closure-only: {rows[label]['wall'] / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
