"""The unconstrained space the optimiser and NUTS work in, and the exact prior density it carries.

Each free parameter has one unconstrained coordinate ``z`` and a prior; the log density of the
parameters' prior plus the log-Jacobian of ``z -> x`` is :meth:`ParameterSpace.log_prior`, so the
sampler's target is exactly prior × likelihood:

* uniform box [low, high]: ``x = low + (high − low)·σ(z)`` (logit);
* an angle whose uniform box is one whole period: ``x = z`` unwrapped on the real line. The likelihood is
  periodic in the angle and so is the (constant) prior density, so Hamiltonian dynamics on ``z``, read
  modulo the period, sample the circle exactly (NumPyro's ``CircularReparam`` works the same way); there
  is no edge for the posterior to pile up against. Draws are stored wrapped into [low, low + period);
* half-normal(scale): ``x = exp(z)``; normal(mean, sd): ``x = z``; log-uniform [low, high]: ``log x`` on
  the logit of the box.

An angle whose prior box is narrower than a period keeps its box.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import expit

from vlbicore.errors import VlbiError

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _xp(z):
    """NumPy for host arrays, jax.numpy for traced ones (host callers must not pay an eager JAX compile)."""
    return np if isinstance(z, np.ndarray) else jnp


def _sigmoid(z):
    return expit(z) if isinstance(z, np.ndarray) else jax.nn.sigmoid(z)


def _log_sigmoid_pair(z):
    # log σ(z) + log σ(−z), stable for large |z|
    return jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Uniform on [low, high] through the logit."""

    low: float
    high: float
    kind = "uniform"
    circular = False

    def to_value(self, z):
        return self.low + (self.high - self.low) * _sigmoid(z)

    def log_density(self, z):
        # prior density 1/(high − low) times the Jacobian (high − low) σ(z) σ(−z)
        return _log_sigmoid_pair(z)

    def to_unconstrained(self, x):
        frac = np.clip((np.asarray(x, np.float64) - self.low) / (self.high - self.low), 1e-9, 1 - 1e-9)
        return np.log(frac) - np.log1p(-frac)

    def draw(self, rng, n):
        return rng.logistic(size=n)  # = uniform draws in the box

    @property
    def scale(self):
        return self.high - self.low


@dataclasses.dataclass(frozen=True)
class Circular:
    """Uniform on the circle [low, low + period): the coordinate is the unwrapped angle itself."""

    low: float
    period: float
    start_spread: float = 1.0  # optimiser starts: drawn from this fraction of the circle, centred on it
    kind = "circular"
    circular = True

    def to_value(self, z):
        return z

    def log_density(self, z):
        return -math.log(self.period) + 0.0 * z

    def to_unconstrained(self, x):
        return np.asarray(x, np.float64)

    def wrap(self, x):
        """Values in [low, low + period) (what the store keeps)."""
        return self.low + np.mod(np.asarray(x) - self.low, self.period)

    def draw(self, rng, n):
        return self.low + self.period * (0.5 + self.start_spread * (rng.random(n) - 0.5))

    @property
    def scale(self):
        return self.period


@dataclasses.dataclass(frozen=True)
class HalfNormal:
    """Half-normal(scale) on [0, ∞) through ``x = exp(z)``."""

    sd: float
    kind = "halfnormal"
    circular = False

    def to_value(self, z):
        return _xp(z).exp(z)

    def log_density(self, z):
        x = jnp.exp(z)
        return math.log(2.0) - LOG_SQRT_2PI - math.log(self.sd) - 0.5 * (x / self.sd) ** 2 + z

    def to_unconstrained(self, x):
        return np.log(np.maximum(np.asarray(x, np.float64), 1e-12))

    def draw(self, rng, n):
        return np.log(np.abs(rng.normal(size=n)) * self.sd + 1e-12)

    @property
    def scale(self):
        return 1.0  # in z = log x: modes closer than 2 % in log x are one


@dataclasses.dataclass(frozen=True)
class Normal:
    """Normal(mean, sd) on the real line (identity)."""

    mean: float
    sd: float
    start_spread: float = 1.0  # optimiser starts: drawn from N(mean, (start_spread · sd)²)
    kind = "normal"
    circular = False

    def to_value(self, z):
        return self.mean + self.sd * z

    def log_density(self, z):
        return -LOG_SQRT_2PI - math.log(self.sd) - 0.5 * z**2 + 0.0 * z

    def to_unconstrained(self, x):
        return (np.asarray(x, np.float64) - self.mean) / self.sd

    def draw(self, rng, n):
        return self.start_spread * rng.normal(size=n)

    @property
    def scale(self):
        return 4.0  # z is in units of the prior sd


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """Uniform in log x on [low, high] through the logit of the log box."""

    low: float
    high: float
    kind = "loguniform"
    circular = False

    def to_value(self, z):
        xp = _xp(z)
        log_low, log_high = math.log(self.low), math.log(self.high)
        return xp.exp(log_low + (log_high - log_low) * _sigmoid(z))

    def log_density(self, z):
        # density of log x is 1/(log high − log low); Jacobian of z -> log x is (log high − log low) σσ
        return _log_sigmoid_pair(z) - jnp.log(self.to_value(z))

    def to_unconstrained(self, x):
        log_low, log_high = math.log(self.low), math.log(self.high)
        frac = np.clip((np.log(np.asarray(x, np.float64)) - log_low) / (log_high - log_low), 1e-9, 1 - 1e-9)
        return np.log(frac) - np.log1p(-frac)

    def draw(self, rng, n):
        return rng.logistic(size=n)

    @property
    def scale(self):
        return 1.0


def prior_of(param):
    """The prior object of a :class:`vlbicore.models.params.Param`."""
    kind = param.prior_kind
    if kind == "halfnormal":
        return HalfNormal(float(param.prior[1]))
    if kind == "normal":
        return Normal(float(param.prior[1]), float(param.prior[2]))
    if kind == "loguniform":
        return LogUniform(float(param.prior[1]), float(param.prior[2]))
    if not (np.isfinite(param.low) and np.isfinite(param.high) and param.high > param.low):
        raise VlbiError(f"priors: {param.name} needs a finite box low < high; fix the prior range")
    if param.period and abs((param.high - param.low) - param.period) < 1e-9 * param.period:
        return Circular(float(param.low), float(param.period))
    return Uniform(float(param.low), float(param.high))


@dataclasses.dataclass(frozen=True)
class ParameterSpace:
    """The free parameters of a fit (sky model, noise terms, ...) and their priors, in order.

    ``to_params(z)`` maps an unconstrained vector (or a batch, parameters on the last axis) to named
    values, ``log_prior(z)`` is the log prior density in z (Jacobian included)."""

    names: tuple[str, ...]
    priors: tuple

    @classmethod
    def of(cls, params, what: str = "model") -> "ParameterSpace":
        params = tuple(params)
        if not params:
            raise VlbiError(f"{what}: no free parameters left to fit; unfix at least one")
        return cls(tuple(p.name for p in params), tuple(prior_of(p) for p in params))

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def circular(self) -> np.ndarray:
        """Which coordinates are angles on the circle (unwrapped; no clipping, circular distances)."""
        return np.array([p.circular for p in self.priors])

    @property
    def scales(self) -> np.ndarray:
        """A natural width per coordinate (box width, period, ...), for deciding when two points agree."""
        return np.array([p.scale for p in self.priors], dtype=np.float64)

    def to_values(self, z):
        xp = _xp(z)
        return xp.stack([p.to_value(z[..., i]) for i, p in enumerate(self.priors)], axis=-1)

    def to_params(self, z) -> dict:
        return {name: p.to_value(z[..., i]) for i, (name, p) in enumerate(zip(self.names, self.priors))}

    def log_prior(self, z):
        return sum(p.log_density(z[..., i]) for i, p in enumerate(self.priors))

    def to_unconstrained(self, x) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return np.stack([p.to_unconstrained(x[..., i]) for i, p in enumerate(self.priors)], axis=-1)

    def wrap(self, values: np.ndarray) -> np.ndarray:
        """Parameter values with every circular angle put back into its box (NumPy)."""
        out = np.array(values, dtype=np.float64, copy=True)
        for i, p in enumerate(self.priors):
            if p.circular:
                out[..., i] = p.wrap(out[..., i])
        return out

    def draw(self, rng, n: int) -> np.ndarray:
        """``n`` unconstrained points whose values are prior draws (NumPy)."""
        return np.stack([p.draw(rng, n) for p in self.priors], axis=-1)

    def distance(self, za: np.ndarray, zb: np.ndarray) -> np.ndarray:
        """Per-coordinate distance between unconstrained points, in units of the prior's natural width:
        |Δx|/(high − low) on a box, |Δθ|/period on the circle (the short way round), |Δz| in units of
        ``scale`` for the unbounded priors (NumPy, broadcasting)."""
        za, zb = np.asarray(za, np.float64), np.asarray(zb, np.float64)
        out = np.empty(np.broadcast_shapes(za.shape, zb.shape))
        for i, p in enumerate(self.priors):
            if isinstance(p, Uniform):
                out[..., i] = np.abs(p.to_value(za[..., i]) - p.to_value(zb[..., i])) / p.scale
            elif p.circular:
                d = np.mod(za[..., i] - zb[..., i] + p.period / 2, p.period) - p.period / 2
                out[..., i] = np.abs(d) / p.period
            else:
                out[..., i] = np.abs(za[..., i] - zb[..., i]) / p.scale
        return out

    @property
    def curvature_floor(self) -> float:
        """The smallest curvature of −log p in z that a direction can have under the prior alone: 2π/P²
        for an angle (a Gaussian that wide spans a period), 3/π² for a box (the logistic's width in z),
        1 for the unbounded priors (z in units of their scale)."""
        floors = [2 * math.pi / p.period**2 if p.circular else 3 / math.pi**2 if isinstance(p, (Uniform, LogUniform))
                  else 1.0 for p in self.priors]
        return float(min(floors))

    def box_edges(self):
        """(index, low, high) of every coordinate with a uniform box (the ones that have edges)."""
        return [(i, p.low, p.high) for i, p in enumerate(self.priors) if isinstance(p, Uniform)]


def log_posterior_fn(space: ParameterSpace, loglike):
    """Log posterior density in the unconstrained space: ``loglike(params) + log prior``."""

    def log_post(z):
        return loglike(space.to_params(z)) + space.log_prior(z)

    return log_post
