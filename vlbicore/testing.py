"""Test and benchmark fixtures: small, self-consistent synthetic fit stores with known answers."""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def synthetic_fit_inputs(
    seed: int,
    *,
    epoch: str = "2017-04-05-lo",
    model: str = "ring",
    date: str = "2017-04-05",
    band: str = "lo",
    n_chains: int = 4,
    n_draws: int = 200,
    n_cphase: int = 30,
    n_lcamp: int = 20,
    n_amp: int = 0,
    n_scans: int = 0,
    amp_likelihood: str | None = None,
    diameter: float = 40.0,
    offset_bias: float = 0.0,
    converged: bool = True,
    data_seed: int = 0,
) -> dict[str, Any]:
    """Keyword arguments for :func:`write_fit_store` describing a small, self-consistent synthetic fit.

    The observations (seeded by ``data_seed``, so fits of one epoch share them) are closure phases and log
    closure amplitudes scattered by σ = 0.1 around 0. A parameter ``offset`` predicts every datum; its draws
    are its exact posterior under a flat prior shifted by ``offset_bias`` (0 = the correct model, larger =
    a worse one), and the stored pointwise log likelihood and predictions follow from those draws, so PSIS-
    LOO has a known ordering. ``d``/``alpha`` are decorative ring parameters (d ~ N(diameter, 1)).

    ``n_amp`` > 0 adds amplitudes (same scatter); ``amp_likelihood``, when given, is recorded in the root
    attributes; ``n_scans`` > 0 records ``<kind>_scan``, the data of each 12/n_scans hours being one scan
    (without it the store is like one written before scans were recorded: LOO falls back to time stamps).
    """
    data_rng = np.random.default_rng(data_seed)
    rng = np.random.default_rng(seed)
    sigma = 0.1
    shape = (n_chains, n_draws)
    observed, log_lik, predictive = {}, {}, {}
    all_values = []
    kinds = (("cphase", n_cphase), ("lcamp", n_lcamp)) + ((("amp", n_amp),) if n_amp else ())
    for kind, n in kinds:
        values = data_rng.normal(0.0, sigma, n)
        observed[kind] = {
            "values": values,
            "sigma": np.full(n, sigma),
            "time": np.sort(data_rng.uniform(0, 12, n)),
            "label": [f"S{i % 5}-S{(i + 1) % 5}-S{(i + 2) % 5}" for i in range(n)],
            "uvdist": data_rng.uniform(1e9, 8e9, n),
        }
        if n_scans:
            observed[kind]["scan"] = np.minimum((observed[kind]["time"] / 12 * n_scans).astype(np.int64), n_scans - 1)
        all_values.append(values)
    y = np.concatenate(all_values)
    offset = rng.normal(y.mean() + offset_bias, sigma / math.sqrt(y.size), shape)
    for kind in observed:
        values = observed[kind]["values"]
        residual = values[None, None, :] - offset[..., None]
        log_lik[kind] = -0.5 * (residual / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))
        predictive[kind] = np.broadcast_to(offset[..., None], residual.shape).copy()
    posterior = {
        "d": rng.normal(diameter, 1.0, shape),
        "alpha": np.abs(rng.normal(10.0, 0.5, shape)),
        "offset": offset,
    }
    lp = sum(ll.sum(axis=-1) for ll in log_lik.values())
    sample_stats = {"lp": lp, "diverging": rng.random(shape) < (0.0 if converged else 0.05)}
    params = list(posterior)
    reasons = [] if converged else ["R-hat 1.200 > 1.01 (worst: d)"]
    diagnostics = {
        "rhat": {p: (1.0 if converged else 1.2) for p in params},
        "ess_bulk": {p: 0.8 * n_chains * n_draws for p in params},
        "ess_tail": {p: 0.6 * n_chains * n_draws for p in params},
        "reduced_chi2": {k: float(np.mean(((v["values"] - offset.mean()) / sigma) ** 2)) for k, v in observed.items()},
        "n_data": {k: len(v["values"]) for k, v in observed.items()},
        "modes": [{"lp": float(lp.max()), "values": {p: float(np.median(posterior[p])) for p in params}, "chains": n_chains}],
    }
    attrs = {
        "data_path": f"/data/{epoch}.uvfits",
        "data_sha256": "0" * 64,
        "source": "M87",
        "date": date,
        "band": band,
        "frequency_hz": 227.1e9 if band == "lo" else 229.1e9,
        "epoch": epoch,
        "model_name": model,
        "model_spec": {"type": "ring"},
        "priors": {"d": [20, 80]},
        "sampler": {"chains": n_chains, "samples": n_draws},
        "seed": seed,
        "converged": converged,
        "convergence": {"max_rhat": 1.0 if converged else 1.2, "reasons": reasons},
        "products": [kind for kind, _ in kinds],
    }
    if amp_likelihood is not None:
        attrs["amp_likelihood"] = amp_likelihood
    n_uv = 50
    uv = (data_rng.uniform(-8e9, 8e9, n_uv), data_rng.uniform(-8e9, 8e9, n_uv))
    return {
        "posterior": posterior,
        "sample_stats": sample_stats,
        "log_likelihood": log_lik,
        "observed_data": observed,
        "posterior_predictive": predictive,
        "diagnostics": diagnostics,
        "attrs": attrs,
        "uv": uv,
    }
