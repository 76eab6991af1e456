"""One log-likelihood + gradient: vlbicore vs ehtim's model visibilities + analytic gradient, one run.

Data: M87* 2017-04-11 lo, scan-averaged closure phases + log closure amplitudes (vlbicore's minimal sets).
Model: thick m-ring m = 1.
- vlbicore: ``jit(value_and_grad(log_post))`` on the flat parameter vector the sampler uses — the whole
  closure likelihood and its gradient in all free parameters (model visibilities at the unique baselines
  the closures use). Timed per call from Python (as ehtim is), and amortised inside one compiled loop
  (what NUTS pays per leapfrog step, without Python dispatch).
- ehtim 1.3.2: ``sample_1model_uv`` + ``sample_1model_grad_uv`` at every closure leg's (u, v) — what its
  closure chi-squared and gradient evaluate — run in the numpy < 2 side environment
  (``tests/ehtim_reference_env.py``), timed there with the same repeat count.

Prints µs per call and the ratio. Usage: python bench/bench_likelihood.py
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
DATA = REPO / "data/eht-m87-2017/SR1_M87_2017_101_lo_hops_netcal_StokesI.uvfits"
P = {"F0": 0.6, "d": 42.0, "alpha": 12.0, "beta1_re": -0.2, "beta1_im": 0.1, "x0": 0.0, "y0": 0.0}

EHTIM_TIMER = r'''
import contextlib, io, json, sys, time, warnings
warnings.simplefilter("ignore")
with contextlib.redirect_stdout(io.StringIO()):
    import numpy as np
    import ehtim as eh
UAS = np.pi / 180 / 3600 / 1e6
job = json.load(open(sys.argv[1]))
u, v, p = np.asarray(job["u"]), np.asarray(job["v"]), job["params"]
with contextlib.redirect_stdout(io.StringIO()):
    m = eh.model.Model().add_thick_mring(F0=p["F0"], d=p["d"] * UAS, alpha=p["alpha"] * UAS,
        beta_list=[complex(p["beta1_re"], p["beta1_im"])], x0=0.0, y0=0.0)
def once():
    vis = eh.model.sample_1model_uv(u, v, m.models[0], m.params[0])
    grad = eh.model.sample_1model_grad_uv(u, v, m.models[0], m.params[0])
    return vis, grad
once()
t0 = time.perf_counter()
for _ in range(job["repeats"]):
    once()
print(json.dumps({"us": (time.perf_counter() - t0) / job["repeats"] * 1e6}))
'''


def main():
    import ehtim_reference_env
    from vlbicore.data import load_observation
    from vlbicore.inference import Box, log_posterior_fn
    from vlbicore.likelihood import make_log_likelihood
    from vlbicore.models import build_model
    from vlbicore.products import build_products

    obs = load_observation(DATA)
    products = build_products(obs, ("cphase", "lcamp"))
    model = build_model({"type": "thick_mring", "order": 1})
    box = Box.of(model)
    log_post = log_posterior_fn(box, make_log_likelihood(products, model)[0])
    z = jnp.asarray(box.to_unconstrained([P[name] for name in box.names]))
    value_and_grad = jax.jit(jax.value_and_grad(log_post))
    jax.block_until_ready(value_and_grad(z))
    repeats = 2000
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = value_and_grad(z)
    jax.block_until_ready(out)
    ours_us = (time.perf_counter() - t0) / repeats * 1e6

    def body(i, acc):  # the next point depends on the last gradient, so XLA cannot hoist the work
        value, grad = jax.value_and_grad(log_post)(z + 1e-9 * acc)
        return acc + grad * 1e-12 + value * 1e-15

    looped = jax.jit(lambda: jax.lax.fori_loop(0, repeats, body, jnp.zeros_like(z)))
    jax.block_until_ready(looped())
    t0 = time.perf_counter()
    jax.block_until_ready(looped())
    loop_us = (time.perf_counter() - t0) / repeats * 1e6

    legs = [(prod.rows[prod.signs != 0]) for prod in products.values()]
    rows = np.concatenate(legs)
    job = {"u": obs.u[rows].tolist(), "v": obs.v[rows].tolist(), "params": P, "repeats": 200}
    python = ehtim_reference_env.ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "t.py").write_text(EHTIM_TIMER)
        (tmp / "job.json").write_text(json.dumps(job))
        proc = subprocess.run([str(python), str(tmp / "t.py"), str(tmp / "job.json")], capture_output=True,
                              text=True, check=True)
    ehtim_us = json.loads(proc.stdout.strip().splitlines()[-1])["us"]
    print(f"machine: {os.cpu_count()} cores, jax {jax.__version__} ({jax.devices()[0].platform})")
    print(f"data: {DATA.name}: {products['cphase'].n} closure phases + {products['lcamp'].n} log closure "
          f"amplitudes = {len(rows)} closure legs over {len(np.unique(rows))} unique baselines")
    print(f"vlbicore log posterior + gradient ({len(box.names)} free params), per call from Python: {ours_us:9.1f} µs")
    print(f"vlbicore log posterior + gradient, inside a compiled loop (as in NUTS):      {loop_us:9.1f} µs")
    print(f"ehtim sample_1model_uv + sample_1model_grad_uv at {len(rows)} legs, from Python:  {ehtim_us:9.1f} µs")
    print(f"ratio ehtim / vlbicore: {ehtim_us / ours_us:.1f}x per Python call, {ehtim_us / loop_us:.1f}x inside the sampler")


if __name__ == "__main__":
    main()
