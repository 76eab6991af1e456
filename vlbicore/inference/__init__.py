"""Posterior inference: the unconstrained space and priors (``transforms``), the shared batch program
(``batch``), mode search and weighing (``modes``), chain-parallel NUTS over slots of a batch of posteriors
(``nuts``), convergence (``diagnostics``), what the draws say (``postprocess``), and the drivers
:func:`fit` / :func:`fit_many`.

May import likelihood, products and models; never store, survey or cli.
"""
from vlbicore.inference.batch import BatchGradient, host_rng
from vlbicore.inference.diagnostics import convergence_verdict, e_bfmi, ess_bulk, ess_tail, parameter_diagnostics, rhat
from vlbicore.inference.fit import fit, fit_many
from vlbicore.inference.modes import Mode, find_modes, search_modes
from vlbicore.inference.nuts import NutsRunner, devices_for, run_nuts, segment_length
from vlbicore.inference.postprocess import modes_to_sample, posterior_median, prior_edge_warnings
from vlbicore.inference.settings import CHAIN_METHODS, FitResult, SamplerSettings, use_precision
from vlbicore.inference.transforms import ParameterSpace, log_posterior_fn

__all__ = [
    "CHAIN_METHODS", "BatchGradient", "FitResult", "Mode", "NutsRunner", "ParameterSpace", "SamplerSettings",
    "convergence_verdict", "devices_for", "e_bfmi", "ess_bulk", "ess_tail", "find_modes", "fit", "fit_many",
    "host_rng", "log_posterior_fn", "modes_to_sample", "parameter_diagnostics", "posterior_median",
    "prior_edge_warnings", "rhat", "run_nuts", "search_modes", "segment_length", "use_precision",
]
