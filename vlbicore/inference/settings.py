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
    """Everything one fit produced, as NumPy arrays and plain dicts, ready for :mod:`vlbicore.store`."""

    posterior: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    log_likelihood: dict[str, np.ndarray]
    posterior_predictive: dict[str, np.ndarray]
    diagnostics: dict
    convergence: dict
    modes: list  # list[Mode], best first
    reduced_chi2: dict[str, tuple[float, int]]
    timings: dict[str, float]
    devices: list[str]
    chain_method: str


def use_precision(dtype: str):
    """Switch JAX to the fit's precision (the one place vlbicore sets ``jax_enable_x64``) and return the
    JAX dtype. float32 is what most GPUs run fast; float64 is the CPU default."""
    jax.config.update("jax_enable_x64", dtype == "float64")
    return jnp.float64 if dtype == "float64" else jnp.float32
