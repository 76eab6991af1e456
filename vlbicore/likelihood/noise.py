"""Error terms beyond the thermal noise: fitted parameters of the posterior, added to the σ of every
visibility *before* products are formed, so closure errors and their correlations follow by propagation.

Terms (each a posterior variable with a documented weakly informative prior; priors and fixed values are
overridden like any parameter, e.g. ``priors: {noise.nonclosing: {halfnormal: 0.05}}`` or
``fixed: {noise.nonclosing: 0.02}``):

* ``noise.nonclosing`` (f_nc, dimensionless, closure products): a baseline-based complex error of
  fractional size f_nc on every visibility, the kind of error that does *not* cancel in closures (as
  station gains do). Modelled at the visibility level: each baseline's relative variance σ²/|V|² gains
  f_nc², so a closure phase over three baselines gains 3 f_nc² and closures sharing a baseline are
  correlated, exactly as such errors propagate. Prior half-normal(0.1): EHT quality assurance bounds
  non-closing errors at ~2 % (M87 2017 Paper III); the prior allows ten times that, so a model that does
  not fit shows up as a large f_nc instead of at a prior edge. On by default for closure products.
* ``noise.fractional`` (f, dimensionless, amplitudes and visibilities): σ² gains (f |V_obs|)², for the
  amplitude errors that closures are immune to (gain calibration, typically 5–20 %, LMT more). Prior
  half-normal(0.1). On by default when amplitudes or visibilities are fitted.
* variability (off by default; ``noise: {variability: true}``): the broken power law of Broderick et al.
  2022 used for Sgr A* (EHT Sgr A* 2017 Paper IV), σ_var²(|u|) = a² · (1 + (u4/u0)^(b+c)) / (u4/u0)^c ·
  x^c / (1 + x^(b+c)), x = |u|/u0, u4 = 4 Gλ, so a = σ_var at 4 Gλ (Jy): ``noise.var_a`` log-uniform
  [1e-4, 0.1] Jy, ``noise.var_u0`` log-uniform [0.01, 10] Gλ, ``noise.var_b`` uniform [1, 5], ``noise.var_c``
  uniform [1.5, 2.5] (the defaults of the public Themis drivers by Broderick). Added to σ² of every
  visibility (and, divided by |V_obs|², to the closure legs).

The likelihood's normalising terms (log σ, log det C, the von Mises normaliser) depend on these terms
and are included, so leave-one-out compares noise models like with like. ``noise: none`` switches every
term off (thermal σ only, as before these terms existed; the fixed ``systematic`` fraction still works).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from vlbicore.errors import VlbiError
from vlbicore.models.params import Param, parse_prior

CLOSURE_KINDS = ("cphase", "lcamp")
AMPLITUDE_KINDS = ("vis", "amp")
TERMS = ("nonclosing", "fractional", "variability")
U4 = 4e9  # λ: the variability model's reference baseline length

NONCLOSING = Param("noise.nonclosing", "1", "non-closing (baseline-based) fractional error of closure legs",
                   0.0, 1.0, prior=("halfnormal", 0.1))
FRACTIONAL = Param("noise.fractional", "1", "fractional error of amplitudes and visibilities", 0.0, 1.0,
                   prior=("halfnormal", 0.1))
VARIABILITY = (
    Param("noise.var_a", "Jy", "variability noise σ_var at |u| = 4 Gλ", 1e-4, 0.1, prior=("loguniform", 1e-4, 0.1)),
    Param("noise.var_u0", "Gλ", "break of the variability noise power law", 0.01, 10.0,
          prior=("loguniform", 0.01, 10.0)),
    Param("noise.var_b", "1", "variability noise slope beyond the break (σ² ∝ |u|^-b)", 1.0, 5.0),
    Param("noise.var_c", "1", "variability noise slope below the break (σ² ∝ |u|^c)", 1.5, 2.5),
)


def with_systematic(obs, fraction: float):
    """Observation with σ² → σ² + (fraction·|V|)²: a fixed fractional systematic error on every visibility,
    added *before* the products are formed, so it propagates into the closure errors correctly."""
    if fraction < 0 or not np.isfinite(fraction):
        raise VlbiError(f"systematic: {fraction!r} is not a fraction >= 0; use e.g. 0.02 for 2 %")
    if fraction == 0:
        return obs
    sigma = np.sqrt(obs.sigma**2 + (fraction * np.abs(obs.vis)) ** 2)
    return dataclasses.replace(obs, sigma=sigma)


@dataclasses.dataclass(frozen=True)
class NoiseModel:
    """The error terms of one fit and their free parameters (``params``; fixed ones in ``fixed``)."""

    terms: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    fixed: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, setting, products, priors: Mapping | None = None, fixed: Mapping | None = None) -> "NoiseModel":
        """The noise model a fit configuration asks for (``setting``: ``"default"``, ``"none"`` or a
        mapping ``{nonclosing: bool, fractional: bool, variability: bool}``; missing keys keep the
        default) for the given products; ``priors``/``fixed`` hold the ``noise.*`` entries."""
        kinds = set(products)
        defaults = {"nonclosing": bool(kinds & set(CLOSURE_KINDS)), "fractional": bool(kinds & set(AMPLITUDE_KINDS)),
                    "variability": False}
        if setting in ("none", None, False):
            chosen = dict.fromkeys(TERMS, False)
        elif setting == "default":
            chosen = defaults
        elif isinstance(setting, Mapping):
            unknown = sorted(set(setting) - set(TERMS))
            if unknown:
                raise VlbiError(f"noise: unknown term(s) {', '.join(unknown)}; terms: {', '.join(TERMS)}")
            chosen = {**defaults, **{k: bool(v) for k, v in setting.items()}}
        else:
            raise VlbiError(f"noise: {setting!r} is not 'default', 'none' or a mapping of terms to true/false")
        params = []
        if chosen["nonclosing"] and kinds & set(CLOSURE_KINDS):
            params.append(NONCLOSING)
        if chosen["fractional"] and kinds & set(AMPLITUDE_KINDS):
            params.append(FRACTIONAL)
        if chosen["variability"]:
            params.extend(VARIABILITY)
        names = {p.name for p in params}
        priors, fixed = dict(priors or {}), {k: float(v) for k, v in (fixed or {}).items()}
        for label, given in (("priors", priors), ("fixed", fixed)):
            unknown = sorted(set(given) - names)
            if unknown:
                raise VlbiError(f"{label}: {', '.join(unknown)} is not a noise term of this fit (its terms: "
                                f"{', '.join(sorted(names)) or 'none'}); set noise: {{...: true}} to add one")
        params = [p.with_prior(parse_prior(priors[p.name], f"priors.{p.name}")) if p.name in priors else p
                  for p in params]
        free = tuple(p for p in params if p.name not in fixed)
        terms = tuple(t for t in TERMS if chosen[t])
        return cls(terms=terms, params=free, fixed={k: fixed[k] for k in sorted(fixed)})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def values(self, p: Mapping) -> dict:
        """The noise terms' values from a parameter mapping (free ones from ``p``, fixed ones filled in)."""
        return {**self.fixed, **{n: p[n] for n in self.names}}

    def variable_attrs(self) -> dict[str, dict]:
        return {p.name: {"units": p.unit} for p in self.params}


# --------------------------------------------------------------------------------------------------
# The extra variances (pure JAX; ``noise`` maps term names to values, a missing term adds nothing)


def variability_variance(noise: Mapping, uvdist):
    """σ_var²(|u|) of the broken power law (Jy²), or 0 without the variability term."""
    if "noise.var_a" not in noise:
        return 0.0
    a, u0 = noise["noise.var_a"], noise["noise.var_u0"] * 1e9
    b, c = noise["noise.var_b"], noise["noise.var_c"]
    x = jnp.maximum(uvdist, 1.0) / u0
    at_u4 = (U4 / u0) ** c / (1.0 + (U4 / u0) ** (b + c))
    return a**2 * x**c / (1.0 + x ** (b + c)) / at_u4


def visibility_variance(noise: Mapping, sigma, amplitude, uvdist):
    """Total σ² of visibilities (each of Re and Im) or amplitudes: thermal + fractional + variability."""
    var = sigma**2 + variability_variance(noise, uvdist)
    if "noise.fractional" in noise:
        var = var + (noise["noise.fractional"] * amplitude) ** 2
    return var


def closure_leg_relative_variance(noise: Mapping, relative_variance, amplitude, uvdist):
    """Relative variance σ²/|V|² of a closure leg: thermal + non-closing f_nc² + variability / |V|²."""
    var = relative_variance + variability_variance(noise, uvdist) / amplitude**2
    if "noise.nonclosing" in noise:
        var = var + noise["noise.nonclosing"] ** 2
    return var


def leg_noise_kind(noise: "NoiseModel | None") -> str:
    """"common" when the error terms add one relative variance to every closure leg (none, or only the
    non-closing term, fitted or fixed), else "general" (the variability term depends on each leg)."""
    if noise is None or "variability" not in noise.terms:
        return "common"
    return "general"


def common_leg_variance(noise: Mapping):
    """The relative variance every closure leg gains when it is the same for all (f_nc², or 0)."""
    return noise["noise.nonclosing"] ** 2 if "noise.nonclosing" in noise else 0.0
