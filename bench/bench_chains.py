"""Chain scaling: 1, 2, 4 chains × parallel / vectorized / sequential, side by side in one run.

M87* 2017-04-11 lo, thick m-ring m = 1, closure phases + log closure amplitudes, with 4 forced CPU host
devices (``--xla_force_host_platform_device_count=4``; on this 2-core machine two devices share a core).
Times the NUTS phase only (warmup incl. its compilation, and sampling) from the best mode, so the
methods are compared on equal work. Prints wall times and ratios to the 1-chain run of each method.

Usage: python bench/bench_chains.py [--warmup 500 --samples 1000]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO / "data/eht-m87-2017/SR1_M87_2017_101_lo_hops_netcal_StokesI.uvfits"


def main(argv=None):
    from vlbicore.config import FitConfig
    from vlbicore.data import load_observation
    from vlbicore.inference import (BatchGradient, Box, NutsRunner, SamplerSettings, devices_for, find_modes,
                                    log_posterior_fn, run_nuts)
    from vlbicore.likelihood import make_log_likelihood
    from vlbicore.products import build_products

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args(argv)

    products = build_products(load_observation(DATA), ("cphase", "lcamp"))
    model = FitConfig.from_dict({"model": {"type": "thick_mring", "order": 1}}).sky_model
    box = Box.of(model)
    log_post = log_posterior_fn(box, make_log_likelihood(products, model)[0])
    best = find_modes(BatchGradient.of_function(log_post, 32, jnp.float64), box, jax.random.PRNGKey(0), starts=32,
                      steps=300)[0].z
    print(f"machine: {os.cpu_count()} cores; jax devices: {len(jax.devices())} x {jax.devices()[0].platform}")
    print(f"{args.warmup} warmup + {args.samples} samples per chain; NUTS phase wall time (compile included)")
    print(f"{'method':12s} {'chains':>6s} {'devices':>7s} {'wall s':>8s} {'draws/s':>9s} {'vs 1 chain':>10s}")
    for method in ("parallel", "vectorized", "sequential"):
        base = None
        for chains in (1, 2, 4):
            sampler = SamplerSettings(chains=chains, warmup=args.warmup, samples=args.samples, chain_method=method)
            z0 = jnp.tile(jnp.asarray(best), (chains, 1))
            t0 = time.perf_counter()
            runner = NutsRunner.of_function(log_post, sampler, devices_for(chains, method))
            batch = BatchGradient.of_function(log_post, chains, jnp.float64)
            draws, _, devices, _ = run_nuts(runner, batch, z0, sampler, jax.random.PRNGKey(1))
            wall = time.perf_counter() - t0
            base = base or wall
            print(f"{method:12s} {chains:6d} {len(devices):7d} {wall:8.2f} {chains * args.samples / wall:9.0f} "
                  f"{wall / base:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
