"""Posterior inference: the unconstrained space (``transforms``), the shared batch program (``batch``),
mode search (``modes``), chain-parallel NUTS (``nuts``), convergence (``diagnostics``), what the draws
say (``postprocess``), and the driver :func:`fit`.

May import likelihood, products and models; never store, survey or cli.
"""
from vlbicore.inference.batch import BatchGradient, host_rng
from vlbicore.inference.diagnostics import convergence_verdict, ess_bulk, ess_tail, parameter_diagnostics, rhat
from vlbicore.inference.fit import fit
from vlbicore.inference.modes import Mode, diagonal_variance, find_modes
from vlbicore.inference.nuts import NutsRunner, devices_for, run_nuts, segment_length
from vlbicore.inference.postprocess import posterior_median, prior_edge_warnings
from vlbicore.inference.settings import CHAIN_METHODS, FitResult, SamplerSettings, use_precision
from vlbicore.inference.transforms import Box, log_posterior_fn

__all__ = [
    "CHAIN_METHODS", "BatchGradient", "Box", "FitResult", "Mode", "NutsRunner", "SamplerSettings",
    "convergence_verdict", "devices_for", "diagonal_variance", "ess_bulk", "ess_tail", "find_modes", "fit",
    "host_rng", "log_posterior_fn", "parameter_diagnostics", "posterior_median", "prior_edge_warnings",
    "rhat", "run_nuts", "segment_length", "use_precision",
]
