"""Visibility fits from prior-draw starts vs from closure-first starts (vlbicore/inference/closure_first.py),
side by side in one run: wall time, where the fit ends (d, position, F0) and its log posterior.

Two cases on the 2017-04-11 lo coverage, simulated thick m-ring (d = 42 µas, F0 = 0.6 Jy, at the centre):
calibrated visibilities (no gains; the position is free) and visibilities with injected gains (30 % LMT,
10 % elsewhere, per scan, random phases) fitted with sampled gains per scan (position pinned). Each fit
runs in a fresh process (compilation included, data loading not), 2 chains × (``--warmup`` + ``--samples``).

Usage: python bench/bench_vis_starts.py [--warmup 300 --samples 300 --seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO / "data/eht-m87-2017/SR1_M87_2017_101_lo_hops_netcal_StokesI.uvfits"
TRUTH = {"F0": 0.6, "d": 42.0, "alpha": 10.0, "beta1_re": -0.2, "beta1_im": 0.1, "x0": 0.0, "y0": 0.0}
CASES = {"calibrated vis, no gains": None, "vis, sampled gains per scan": {"segment": "scan"}}


def one(case: str, starts: str, warmup: int, samples: int, seed: int, tmp: str) -> dict:
    import jax.numpy as jnp
    import numpy as np

    import importlib

    from vlbicore.config import FitConfig
    from vlbicore.data.simulate import simulate_observation
    from vlbicore.models import build_model
    from vlbicore.pipeline import prepare_products

    fit_module = importlib.import_module("vlbicore.inference.fit")  # the module (the package exports fit())
    if starts == "prior draws":  # the search as it was before closure_first: prior draws of every coordinate
        fit_module.uses_closure_first = lambda product_sets: False
    spec = {"type": "thick_mring", "order": 1}
    gains = CASES[case]
    model = build_model(spec)
    path = pathlib.Path(tmp) / f"vis{seed}-{gains is not None}.uvfits"
    simulate_observation(lambda u, v: model.visibility({k: jnp.asarray(x) for k, x in TRUTH.items()}, u, v),
                         like=DATA, seed=seed, gains={"LM": 0.3, "default": 0.1} if gains else 0.0, out=path)
    config = FitConfig.from_dict({"model": spec, "products": ["vis"], "gains": gains or False,
                                  "sampler": {"chains": 2, "warmup": warmup, "samples": samples, "starts": 16,
                                              "seed": seed}})
    _, products, _ = prepare_products(path, config)
    t0 = time.perf_counter()
    r = fit_module.fit(products, config.sky_model, config.sampler, config.noise_model, gains=config.gain_model)
    wall = time.perf_counter() - t0
    med = {k: float(np.median(r.posterior[k])) for k in ("d", "F0", "x0", "y0") if k in r.posterior}
    return {"wall": wall, "median": med, "lp": float(np.max(r.sample_stats["lp"])), "rhat": r.convergence["max_rhat"],
            "adequate": r.adequacy.get("adequate"), "optimise": r.timings.get("optimise", float("nan"))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(*args.one, args.warmup, args.samples, args.seed, args.tmp)))
        return 0
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; seed {args.seed}; "
          f"2 chains × ({args.warmup} + {args.samples}); truth d 42, F0 0.6, x0 = y0 = 0")
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            rows = {}
            for starts in ("prior draws", "closure first"):
                cmd = [sys.executable, __file__, "--one", case, starts, "--warmup", str(args.warmup),
                       "--samples", str(args.samples), "--seed", str(args.seed), "--tmp", tmp]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                rows[starts] = r = json.loads(out.strip().splitlines()[-1])
                where = ", ".join(f"{k} {v:.2f}" for k, v in r["median"].items())
                print(f"{case}, {starts}: {r['wall']:.1f} s (mode search {r['optimise']:.1f} s), {where}, "
                      f"best lp {r['lp']:.1f}, R-hat {r['rhat']:.3f}, adequate {r['adequate']}", flush=True)
            ratio = rows["closure first"]["wall"] / rows["prior draws"]["wall"]
            gain = rows["closure first"]["lp"] - rows["prior draws"]["lp"]
            print(f"  closure first / prior draws: wall {ratio:.2f}, best lp {gain:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
