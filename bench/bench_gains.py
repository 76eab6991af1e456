"""Station gains: the talk's fit (M87* 2017-04-11 lo, thick m-ring m = 1, 4 chains × (1000 + 2000)) closure-only
vs amplitudes + closure phases with analytically marginalised gains vs with sampled gains, one run each.

Every variant uses the default noise model and runs in a fresh process (compilation and the mode search
included, data loading not). Prints wall times, d, convergence, amplitude χ²/N and the ratios to the
closure-only fit (target: marginalised gains at most 3× closure-only).

``--m87``: instead, fit all 8 shipped M87* 2017 files with amp + closure phases and marginalised gains (``--order``)
(``--warmup``/``--samples``, default 500 + 1000) and print d and the amplitudes' (gain-corrected) and
closure phases' reduced χ² per file.

``--coverage amp,cphase|vis``: simulated M87*-like m-rings on the 2017-04-11 lo coverage with injected
gains (30 % LMT, 10 % elsewhere, per scan, random phases), ``--seeds`` data sets fitted in batches of
``--batch`` with gains per scan (marginalised for amp + closure phases, sampled for visibilities); prints
how often the true d lies inside its 68 % and 95 % intervals (with the binomial 95 % range of a calibrated
fit) and, for sampled gains, the injected gains' coverage and z-score rms (gain phases relative to each
scan's reference station).

Usage: python bench/bench_gains.py [--quick] [--m87] [--coverage PRODUCTS --seeds N]
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


def one(settings: dict, path, chains: int, warmup: int, samples: int, order: int = 1) -> dict:
    import numpy as np

    from vlbicore.config import FitConfig
    from vlbicore.inference import fit
    from vlbicore.pipeline import prepare_products

    config = FitConfig.from_dict({"model": {"type": "thick_mring", "order": order}, **settings,
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


TRUTH = {"F0": 0.6, "d": 42.0, "alpha": 10.0, "beta1_re": -0.2, "beta1_im": 0.1, "x0": 0.0, "y0": 0.0}
INJECTED = {"LM": 0.3, "default": 0.1}


def coverage(products: list[str], n_seeds: int, batch: int, warmup: int, samples: int, out_dir) -> None:
    """Calibration of fits with gains on simulated data with injected gains (see the module text)."""
    import jax.numpy as jnp
    import numpy as np
    import scipy.stats

    from vlbicore.calibration import injected_gain_scores
    from vlbicore.config import FitConfig
    from vlbicore.data.simulate import injected_gains, injected_gains_at, simulate_observation
    from vlbicore.inference import fit_many
    from vlbicore.models import build_model
    from vlbicore.pipeline import prepare_products

    spec = {"type": "thick_mring", "order": 1}
    config = FitConfig.from_dict({"model": spec, "products": products, "gains": {"segment": "scan"},
                                  "sampler": {"chains": 2, "warmup": warmup, "samples": samples, "starts": 16}})
    model = build_model(spec)
    truth_fn = lambda u, v: model.visibility({k: jnp.asarray(x) for k, x in TRUTH.items()}, u, v)  # noqa: E731
    print(f"{'+'.join(products)}, gains {config.gain_model.method} per scan, {n_seeds} data sets in batches of "
          f"{batch}, 2 chains × ({warmup} + {samples})", flush=True)
    inside = {0.68: [], 0.95: []}
    gain_z, gain_in = {"log_amplitude": [], "phase": []}, {"log_amplitude": [], "phase": []}
    gain_station = {"log_amplitude": [], "phase": []}
    common_z = []
    t0 = time.perf_counter()
    for start in range(0, n_seeds, batch):
        seeds = list(range(start, min(start + batch, n_seeds)))
        sets = []
        for seed in seeds:
            path = pathlib.Path(out_dir) / f"coverage{seed}.uvfits"
            simulate_observation(truth_fn, like=DATA, seed=seed, gains=INJECTED, out=path)
            sets.append(prepare_products(path, config)[1])
        results = fit_many(sets, config.sky_model, config.sampler, config.noise_model, gains=config.gain_model,
                           seeds=seeds)
        for seed, r in zip(seeds, results):
            d = np.ravel(r.posterior["d"])
            position = ", ".join(f"{k} {np.median(r.posterior[k]):.2f} µas" for k in ("x0", "y0") if k in r.posterior)
            print(f"  seed {seed}: d {np.median(d):.2f} ± {np.std(d):.2f} µas, {position or 'position pinned'}, "
                  f"max R-hat {r.convergence['max_rhat']:.3f}, adequate {r.adequacy.get('adequate')}"
                  + (f" (gains {r.gains['rhat']:.3f})" if r.gains else "")
                  + "".join(f"\n    not adequate: {reason}" for reason in r.adequacy.get("reasons", [])), flush=True)
            for level in inside:
                lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
                inside[level].append(lo <= TRUTH["d"] <= hi)
            if not r.gains:
                continue
            injected = injected_gains(DATA, seed=seed, gains=INJECTED)
            true_grid = injected_gains_at(injected, r.gains["stations"], r.gains["segment_time"])
            scores, level_z = injected_gain_scores(r.gains, true_grid)
            common_z.append(level_z)
            for name, station, hit, z in scores:
                gain_in[name].append(hit)
                gain_z[name].append(z)
                gain_station[name].append(station)
        print(f"  {len(inside[0.95])} fitted, {time.perf_counter() - t0:.0f} s", flush=True)
    n = len(inside[0.95])
    for level, hits in inside.items():
        lo, hi = scipy.stats.binom.ppf([0.025, 0.975], n, level)
        print(f"d inside its {level:.0%} interval: {sum(hits)}/{n} (calibrated: {lo:.0f}-{hi:.0f})")
    for name, hits in gain_in.items():
        if hits:
            what = "log_amplitude relative to the set's mean" if name == "log_amplitude" else name
            print(f"injected {what}: {np.mean(hits):.1%} of {len(hits)} inside their 95 % intervals, z rms "
                  f"{np.sqrt(np.mean(np.square(gain_z[name]))):.2f}")
            z, where = np.asarray(gain_z[name]), np.asarray(gain_station[name])
            print("  per station (z mean, z rms, inside): " + "; ".join(
                f"{s} {z[where == s].mean():+.2f} {np.sqrt(np.mean(z[where == s] ** 2)):.2f} "
                f"{np.mean(np.asarray(hits)[where == s]):.0%}" for s in dict.fromkeys(where)))
    if common_z:
        print(f"each set's mean gain log-amplitude (known through the prior only): z rms "
              f"{np.sqrt(np.mean(np.square(common_z))):.2f} over {len(common_z)} sets "
              f"(z: {', '.join(f'{z:+.1f}' for z in common_z)})")


def _fresh(label: str, path, warmup: int, samples: int, order: int = 1) -> dict:
    cmd = [sys.executable, __file__, "--one", label, "--file", str(path), "--warmup", str(warmup),
           "--samples", str(samples), "--order", str(order)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 warmup + 400 samples")
    parser.add_argument("--m87", action="store_true", help="all 8 shipped M87* files, amp+cphase, marginal gains")
    parser.add_argument("--warmup", type=int, help="warmup steps per chain")
    parser.add_argument("--samples", type=int, help="draws per chain")
    parser.add_argument("--coverage", help="calibration with injected gains: amp,cphase or vis")
    parser.add_argument("--seeds", type=int, default=10, help="simulated data sets for --coverage (10)")
    parser.add_argument("--batch", type=int, default=5, help="data sets per batched fit for --coverage (5)")
    parser.add_argument("--order", type=int, default=1, help="m-ring order of --m87 (1; 2 is the adequate one on "
                        "the 2017-04-10/11 files, see tests/test_fit.py)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(VARIANTS[args.one], args.file, 4, args.warmup, args.samples, args.order), default=float))
        return 0
    import jax

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, jax {jax.__version__}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS')}")
    if args.coverage:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            coverage(args.coverage.split(","), args.seeds, args.batch, args.warmup or 300, args.samples or 300, tmp)
        return 0
    if args.m87:
        warmup, samples = args.warmup or 500, args.samples or 1000
        print(f"amp+cphase with marginal gains, thick_mring m={args.order}, 4 chains × ({warmup} + {samples})")
        for path in sorted(DATA_DIR.glob("*.uvfits")):
            r = _fresh("amp+cphase, marginal gains", path, warmup, samples, args.order)
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
