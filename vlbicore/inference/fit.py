"""Posterior inference for one (observation, model): find the modes, then chain-parallel NUTS.

The pipeline of :func:`fit`:

1. **Modes first** (:mod:`~vlbicore.inference.modes`): a batch of prior draws is optimised at once and the
   end points are grouped into modes, each recorded with its log posterior.
2. **NUTS from the best mode** (:mod:`~vlbicore.inference.nuts`), its mass matrix started from the
   curvature there, chains in parallel over all local devices.
3. **Diagnostics** (:mod:`~vlbicore.inference.diagnostics`: R-hat, bulk/tail ESS, divergences, tree-depth
   hits, chain agreement) give the ``converged`` flag; goodness of fit is the reduced χ² per product at
   the posterior median (:mod:`~vlbicore.inference.postprocess`).

On a CPU, compilation is most of a short fit's wall time, so the fit compiles few programs and overlaps
them with work (see docs/architecture.md): one :class:`~vlbicore.inference.batch.BatchGradient` program
serves the optimiser, the hill-valley test, the curvature, the NUTS initial states and the
post-processing; the NUTS segment program compiles in a background thread during the mode search.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from vlbicore.inference.batch import BatchGradient, host_rng
from vlbicore.inference.diagnostics import convergence_verdict, parameter_diagnostics
from vlbicore.inference.modes import diagonal_variance, find_modes
from vlbicore.inference.nuts import NutsRunner, chains_per_call, devices_for, run_nuts
from vlbicore.inference.postprocess import (assign_chains_to_modes, mode_records, posterior_median,
                                            prior_edge_warnings)
from vlbicore.inference.settings import FitResult, SamplerSettings, use_precision
from vlbicore.inference.transforms import Box
from vlbicore.likelihood import likelihood_data, pointwise_log_likelihood, predicted_products, reduced_chi_squared_of, unpad


def fit(products, model, settings: SamplerSettings) -> FitResult:
    """Fit ``model`` to ``products`` (a :class:`vlbicore.products.DataProducts`)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    dtype = use_precision(settings.dtype)
    box = Box.of(model)
    n_params = len(box.names)
    periods = {q.name: q.period for q in model.params if q.period}
    # the data enter every program as an argument, padded to shared sizes: a model's programs compile once
    # for all files of similar size (persistent compilation cache), not once per file
    layout, data = likelihood_data(products, pad=True)

    def evaluate(z, data):
        """Log posterior at ``z`` and what post-processing keeps of it, from one model evaluation."""
        p = box.to_params(z)
        V = model.visibility(p, data["u"], data["v"])
        pred = predicted_products(layout, data, V)
        ll = pointwise_log_likelihood(layout, data, V, pred)
        lp = sum(jnp.sum(x) for x in ll.values()) + box.log_jacobian(z)
        return lp, {"params": p, "derived": model.derived(p), "ll": ll, "pred": pred}

    def log_post(z, data):
        return evaluate(z, data)[0]

    key_modes, key_jitter, key_nuts = np.random.SeedSequence(settings.seed).spawn(3)

    # The NUTS programs depend only on shapes: compile them in a background thread while the mode search
    # runs (compilation is most of a short fit's wall time on a CPU). One worker: a second would
    # oversubscribe a small CPU.
    runner = NutsRunner(log_post, settings, devices_for(settings.chains, settings.chain_method), data)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlbicore-compile")
    try:
        runner.compile_ahead(pool, chains_per_call(settings), n_params, dtype)
        batch = BatchGradient(evaluate, settings.starts, dtype, has_aux=True, data=data)
        modes = find_modes(batch, box, key_modes, starts=settings.starts, steps=settings.optimiser_steps)
        best = modes[0].z
        variance = diagonal_variance(batch, best)
        timings["optimise"] = time.perf_counter() - t0

        # every chain starts at the best mode, jittered by a fraction of the posterior width there so the
        # chains are not identical
        jitter = 0.1 * np.sqrt(variance) * host_rng(key_jitter).normal(size=(settings.chains, best.size))
        z_start = (best[None, :] + jitter).astype(dtype)
        draws, warm_stats, devices, nuts_timings = run_nuts(runner, batch, z_start, settings, key_nuts,
                                                            inverse_mass=variance)
        timings.update(nuts_timings)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

    t1 = time.perf_counter()
    n_chain, n_draw = draws["lp"].shape
    z_flat = np.asarray(draws["z"].reshape(n_chain * n_draw, -1), np.float64)
    median = posterior_median(box, box.to_values(z_flat), periods)
    # one more row, at the posterior median, gives the goodness-of-fit predictions in the same pass
    median_values = np.array([median[k] for k in box.names])
    z_median = box.to_unconstrained(median_values)
    _, _, out = batch(np.concatenate([z_flat, z_median[None, :]]), aux=True)
    out = {**out, "ll": unpad(layout, out["ll"]), "pred": unpad(layout, out["pred"])}
    gof = reduced_chi_squared_of(products, {k: x[-1] for k, x in out["pred"].items()})
    out = jax.tree.map(lambda x: x[:-1], out)
    reshape = lambda x: np.asarray(x).reshape(n_chain, n_draw, *np.shape(x)[1:])  # noqa: E731
    posterior = {k: reshape(x) for k, x in out["params"].items()}
    posterior.update({k: reshape(x) for k, x in out["derived"].items() if k not in posterior})
    log_likelihood = {k: reshape(x).astype(np.float32) for k, x in out["ll"].items()}
    predictive = {}
    for k, x in out["pred"].items():
        x = reshape(x)
        predictive[k] = x.astype(np.complex64 if np.iscomplexobj(x) else np.float32)

    tree_depth = np.ceil(np.log2(draws["n_steps"] + 1)).astype(np.int64)
    sample_stats = {
        "lp": draws["lp"],
        "diverging": draws["diverging"].astype(bool),
        "tree_depth": tree_depth,
        "reached_max_treedepth": tree_depth >= settings.max_tree_depth,
        "n_steps": draws["n_steps"],
        "acceptance_rate": draws["acceptance_rate"],
        "step_size": draws["step_size"],
        "energy": draws["energy"],
    }
    diag = parameter_diagnostics({k: posterior[k] for k in box.names})
    verdict = convergence_verdict(diag, sample_stats["diverging"], sample_stats["lp"])
    verdict["warnings"] = prior_edge_warnings(box, modes[0].values, median_values, periods)
    verdict["warmup_divergences"] = warm_stats["warmup_divergences"]
    verdict["max_treedepth_fraction"] = float(np.mean(sample_stats["reached_max_treedepth"]))
    chain_means = np.stack([posterior[k].mean(axis=1) for k in box.names], axis=1)
    chains_per_mode = assign_chains_to_modes(chain_means, modes, box)
    timings["postprocess"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    return FitResult(
        posterior=posterior,
        sample_stats=sample_stats,
        log_likelihood=log_likelihood,
        posterior_predictive=predictive,
        diagnostics=diag,
        convergence=verdict,
        modes=mode_records(modes, box, chains_per_mode),
        reduced_chi2=gof,
        timings=timings,
        devices=devices,
        chain_method=settings.chain_method,
    )
