"""The talk's fit, ours vs a plain single-chain NumPyro baseline written the talk's way, in one run.

M87* 2017-04-11 lo band (the file the JAX/NumPyro talk fitted), thick m-ring m = 1:
- vlbicore: 4 chains (chain-parallel over 2 forced host devices = the 2 cores), amplitudes + closure
  phases and a closure-only variant (closure phases + log closure amplitudes), 1000 warmup + 2000 samples.
  Wall time includes compilation and the multi-start mode search.
- baseline: the talk's code shape: one NumPyro model with sample sites F0, d, w, |b1|, arg b1, a
  100-node trapezoid Bessel integral evaluated per order in a Python list, von Mises closure phases,
  Gaussian debiased amplitudes, ``MCMC(NUTS(model), 1000, 2000)`` with one chain, float32.
  It runs ``--baseline-samples`` iterations (default: the full 1000 + 2000) on the same data.

Prints wall times, R-hat, ESS/s and the ratios. Usage: python bench/bench_fit.py [--quick] [--repeat N]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO / "data/eht-m87-2017/SR1_M87_2017_101_lo_hops_netcal_StokesI.uvfits"
RAD_PER_UAS = np.pi / 180 / 3600 / 1e6


def ours(products_kinds, chains, warmup, samples, dtype="float64", noise="default"):
    from vlbicore.config import FitConfig
    from vlbicore.inference import fit
    from vlbicore.pipeline import prepare_products

    # the default fit, as `vlbicore fit` runs it: default noise model, closure covariance, SNR cut
    config = FitConfig.from_dict({"model": {"type": "thick_mring", "order": 1}, "products": list(products_kinds),
                                  "noise": noise,
                                  "sampler": {"chains": chains, "warmup": warmup, "samples": samples, "seed": 0,
                                              "dtype": dtype}})
    _, products, _ = prepare_products(DATA, config)
    t0 = time.perf_counter()
    result = fit(products, config.sky_model, config.sampler, config.noise_model)
    wall = time.perf_counter() - t0
    ess = min(result.diagnostics["ess_bulk"].values())
    return {
        "wall": wall,
        "rhat": result.convergence["max_rhat"],
        "ess_min": ess,
        "ess_per_s": ess / wall,
        "d": float(np.median(result.posterior["d"])),
        "d_sd": float(np.std(result.posterior["d"])),
        "noise": {k: float(np.median(v)) for k, v in result.posterior.items() if k.startswith("noise.")},
        "n_data": {k: p.n for k, p in products.items()},
        "timings": result.timings,
        "converged": result.convergence["converged"],
    }


def talk_baseline(warmup, samples):
    """The talk's single-chain NumPyro fit (paraphrased from its description in prior-art.md)."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    from vlbicore.data import load_observation
    from vlbicore.inference import use_precision
    from vlbicore.products import build_products

    use_precision("float32")
    obs = load_observation(DATA)
    products = build_products(obs, ("amp", "cphase"))
    amp, cp = products["amp"], products["cphase"]
    u = jnp.asarray(obs.u, jnp.float32)
    v = jnp.asarray(obs.v, jnp.float32)
    tau = jnp.linspace(0, jnp.pi, 100)

    def bessel_j(n, z):  # the talk's trapezoid integral, 100 fixed nodes
        integrand = jnp.cos(n * tau[None, :] - z[:, None] * jnp.sin(tau[None, :]))
        return jnp.trapezoid(integrand, tau, axis=1) / jnp.pi

    def model():
        F0 = numpyro.sample("F0", dist.Uniform(0.1, 3))
        d = numpyro.sample("d", dist.Uniform(5, 80)) * RAD_PER_UAS
        w = numpyro.sample("w", dist.Uniform(1, 30)) * RAD_PER_UAS
        b_abs = numpyro.sample("abs(b1)", dist.Uniform(0, 0.5))
        b_arg = numpyro.sample("angle(b1)", dist.Uniform(-jnp.pi, jnp.pi))
        rho = jnp.sqrt(u**2 + v**2)
        phi = jnp.arctan2(u, v) + jnp.pi
        z = jnp.pi * d * rho
        beta = b_abs * jnp.exp(1j * b_arg)
        betas = {-1: jnp.conj(beta), 0: 1.0, 1: beta}
        vis = F0 * sum(betas[k] * bessel_j(k, z) * jnp.exp(1j * k * (phi - jnp.pi / 2)) for k in range(-1, 2))
        vis = vis * jnp.exp(-((jnp.pi * w * rho) ** 2) / (4 * jnp.log(2.0)))
        numpyro.sample("amp", dist.Normal(jnp.abs(vis)[amp.rows], amp.sigma), obs=amp.values)
        model_cp = cp.predict(vis)
        numpyro.sample("cp", dist.VonMises(model_cp, 1 / cp.sigma**2), obs=cp.values)

    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, num_chains=1, progress_bar=False)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(0))
    mcmc.get_samples()["d"].block_until_ready()
    wall = time.perf_counter() - t0
    from numpyro.diagnostics import effective_sample_size

    d = np.asarray(mcmc.get_samples(group_by_chain=True)["d"])
    ess = float(effective_sample_size(d))
    return {"wall": wall, "ess_d": ess, "d": float(np.median(d)), "iterations": warmup + samples}


VARIANTS = {"amp+cphase": ("amp", "cphase"), "cphase+lcamp": ("cphase", "lcamp")}


def _in_fresh_process(what: str, warmup: int, samples: int) -> dict:
    """Run one measurement in a new Python process: every wall time is cold (imports done, nothing
    compiled), as a user's first fit is."""
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--one", what, "--warmup", str(warmup), "--samples", str(samples)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 warmup + 400 samples everywhere")
    parser.add_argument("--baseline-samples", type=int, help="baseline sampling iterations (default: as ours)")
    parser.add_argument("--repeat", type=int, default=1, help="fresh-process runs per variant (median wall)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # child process: one measurement, printed as JSON
        import json

        if args.one == "baseline":
            result = talk_baseline(args.warmup, args.samples)
        else:
            # "<variant>" or "<variant>:<noise setting>" (e.g. amp+cphase:none, the fit without noise terms)
            variant, _, noise = args.one.partition(":")
            result = ours(VARIANTS[variant], 4, args.warmup, args.samples, noise=noise or "default")
        print(json.dumps(result, default=float))
        return 0
    warmup, samples = (200, 400) if args.quick else (1000, 2000)
    print(f"machine: {os.cpu_count()} cores, jax {jax.__version__}, devices {jax.devices()}")
    print(f"data: {DATA.name}; thick_mring m=1; {warmup} warmup + {samples} samples; "
          "each run in a fresh process (compilation included, data loading not)")
    rows = {}
    for label in VARIANTS:
        runs = [_in_fresh_process(label, warmup, samples) for _ in range(args.repeat)]
        r = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
        rows[label] = r
        walls = ", ".join(f"{x['wall']:.1f}" for x in runs)
        t = r["timings"]
        print(f"vlbicore {label:13s} 4 chains: wall {r['wall']:6.1f} s (runs: {walls}; optimise {t['optimise']:.1f}, "
              f"warmup {t['warmup']:.1f}, sampling {t['sampling']:.1f}, postprocess {t['postprocess']:.1f}), "
              f"max R-hat {r['rhat']:.4f}, min bulk ESS {r['ess_min']:.0f} ({r['ess_per_s']:.0f}/s), "
              f"d = {r['d']:.2f} µas, data {r['n_data']}, converged {r['converged']}")
    base_samples = args.baseline_samples or samples
    base_warmup = max(1, base_samples // 2)
    b = _in_fresh_process("baseline", base_warmup, base_samples)
    print(f"talk baseline amp+cphase 1 chain, {base_warmup}+{base_samples}: wall {b['wall']:.1f} s, "
          f"ESS(d) {b['ess_d']:.0f} ({b['ess_d'] / b['wall']:.1f}/s), d = {b['d']:.2f} µas")
    scale = (warmup + samples) / b["iterations"]
    ours_amp = rows["amp+cphase"]
    print(f"ratio wall (baseline scaled to {warmup}+{samples} iterations, 1 chain) / ours (4 chains): "
          f"{b['wall'] * scale / ours_amp['wall']:.1f}x")
    print(f"ratio ESS/s ours / baseline: {ours_amp['ess_per_s'] / (b['ess_d'] / b['wall']):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
