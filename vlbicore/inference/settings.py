"""Sampler settings of one fit and the result record a fit returns (both plain, documented types)."""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vlbicore.errors import VlbiError

CHAIN_METHODS = ("parallel", "vectorized", "sequential")
@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """User settings of one fit (see ``vlbicore fit --help``)."""

    chains: int = 4
    warmup: int = 1000
    samples: int = 2000
    target_accept: float = 0.8
    max_tree_depth: int = 10
    # Trees are capped lower during warmup: the first adaptation window starts from a guessed mass matrix
    # and builds very long trees (on the talk's amp+cphase fit, a cap of 7 cuts warmup ~2x and reaches
    # the same adapted step size and mass matrix). Sampling always uses max_tree_depth.
    warmup_max_tree_depth: int = 7
    seed: int = 0
    dtype: str = "float64"
    starts: int = 64
    optimiser_steps: int = 400
    chain_method: str = "parallel"
    progress: bool = False

    def __post_init__(self):
        checks = [
            ("chains", self.chains >= 1, "an integer >= 1"),
            ("warmup", self.warmup >= 1, "an integer >= 1"),
            ("samples", self.samples >= 1, "an integer >= 1"),
            ("target_accept", 0 < self.target_accept < 1, "a number in (0, 1), e.g. 0.8"),
            ("max_tree_depth", 1 <= self.max_tree_depth <= 15, "an integer in 1..15"),
            ("warmup_max_tree_depth", 1 <= self.warmup_max_tree_depth <= 15, "an integer in 1..15"),
            ("dtype", self.dtype in ("float32", "float64"), "float32 or float64"),
            ("starts", self.starts >= 1, "an integer >= 1"),
            ("optimiser_steps", self.optimiser_steps >= 1, "an integer >= 1"),
            ("chain_method", self.chain_method in CHAIN_METHODS, " or ".join(CHAIN_METHODS)),
        ]
        for name, ok, valid in checks:
            if not ok:
                raise VlbiError(f"sampler.{name}: {getattr(self, name)!r} is invalid; use {valid}")

    @classmethod
    def from_dict(cls, values: Mapping) -> "SamplerSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise VlbiError(f"sampler: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values)


@dataclasses.dataclass
class FitResult:
    """Everything one fit produced, as NumPy arrays and plain dicts, ready for :mod:`vlbicore.store`.

    ``posterior``/``sample_stats``: name -> (chain, draw); ``log_likelihood``/``posterior_predictive``:
    kind -> (chain, draw, n); ``diagnostics``: per-parameter ``rhat``/``ess_bulk``/``ess_tail`` and per
    chain ``chain_weight`` (sums to 1: mode mass over the mode's chains) and ``chain_mode``;
    ``convergence``: the gate's verdict (:func:`vlbicore.inference.diagnostics.convergence_verdict`);
    ``modes``: the mode records, largest mass first; ``reduced_chi2``: kind -> (χ²/N, N) against the
    thermal errors at the best draw; ``goodness_of_fit``: kind -> χ², N, χ²/N, χ²/(N − p) and the χ²
    against the total errors (thermal + fitted terms); ``multimodal``: more than one mode holds > 1 % of
    the mass; ``adequacy``: whether the model describes the data
    (:func:`vlbicore.inference.adequacy.adequacy_verdict`); ``symmetries``: exact symmetries the data
    cannot break; ``n_parameters``: p.
    """

    posterior: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    log_likelihood: dict[str, np.ndarray]
    posterior_predictive: dict[str, np.ndarray]
    diagnostics: dict
    convergence: dict
    modes: list[dict]
    reduced_chi2: dict[str, tuple[float, int]]
    timings: dict[str, float]
    devices: list[str]
    chain_method: str
    goodness_of_fit: dict = dataclasses.field(default_factory=dict)
    multimodal: bool = False
    adequacy: dict = dataclasses.field(default_factory=dict)
    symmetries: list[str] = dataclasses.field(default_factory=list)
    n_parameters: int = 0
    gains: dict = dataclasses.field(default_factory=dict)  # sampled gains: (chain, draw, station, segment) draws


def use_precision(dtype: str):
    """Switch JAX to the fit's precision (the one place vlbicore sets ``jax_enable_x64``) and return the
    JAX dtype. float32 is what most GPUs run fast; float64 is the CPU default."""
    jax.config.update("jax_enable_x64", dtype == "float64")
    return jnp.float64 if dtype == "float64" else jnp.float32
