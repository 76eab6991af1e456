"""Posterior inference for one (observation, model): find the modes, then chain-parallel NUTS.

The pipeline of :func:`fit`:

1. **Modes first.** Geometric-model posteriors are multimodal (an m-ring fitted to M87* closures has a
   d ≈ 42 µas and a d ≈ 64 µas mode; a chain started in the wrong one never leaves). A batch of prior
   draws is optimised at once (``vmap`` of Adam in the unconstrained space), the end points are grouped
   into modes, and every mode is recorded with its log posterior.
2. **NUTS from the best mode**, with NumPyro's functional ``hmc`` kernel. Chains run in parallel over all
   local devices (``shard_map`` over a one-axis mesh); more chains than devices are vectorised (``vmap``)
   within each device; ``vectorized`` and ``sequential`` methods run everything on one device.
3. **Diagnostics** (R-hat, bulk/tail ESS, divergences, tree-depth hits, chain agreement) give the
   ``converged`` flag; goodness of fit is the reduced χ² per product at the posterior median.

Parameters live in a box prior per parameter; the sampler works on ``z = logit((x − low)/(high − low))``.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from functools import partial
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from .diagnostics import convergence_verdict, parameter_diagnostics
from .errors import VlbiError
from .likelihood import make_log_likelihood, reduced_chi_squared

CHAIN_METHODS = ("parallel", "vectorized", "sequential")
BARRIER = 2.0  # log-posterior dip (nats) that separates two modes


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """User settings of one fit (see ``vlbicore fit --help``)."""

    chains: int = 4
    warmup: int = 1000
    samples: int = 2000
    target_accept: float = 0.8
    max_tree_depth: int = 10
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
    modes: list[dict]
    reduced_chi2: dict[str, tuple[float, int]]
    timings: dict[str, float]
    devices: list[str]
    chain_method: str


# --------------------------------------------------------------------------------------------------
# Parameter transform: box prior <-> unconstrained space


@dataclasses.dataclass(frozen=True)
class Box:
    """Independent uniform priors; ``to_params`` maps unconstrained ``z`` to named parameters."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, model) -> "Box":
        params = model.params
        if not params:
            raise VlbiError(f"model {model.name!r}: no free parameters left to fit; unfix at least one")
        low = np.array([p.low for p in params], dtype=np.float64)
        high = np.array([p.high for p in params], dtype=np.float64)
        bad = [p.name for p in params if not (np.isfinite(p.low) and np.isfinite(p.high) and p.high > p.low)]
        if bad:
            raise VlbiError(f"priors: {', '.join(bad)} need a finite box low < high; fix the prior range")
        return cls(tuple(p.name for p in params), low, high)

    def to_values(self, z):
        return self.low + (self.high - self.low) * jax.nn.sigmoid(z)

    def to_params(self, z) -> dict:
        x = self.to_values(z)
        return {name: x[..., i] for i, name in enumerate(self.names)}

    def log_jacobian(self, z):
        # d x / d z = (high − low) σ(z)(1 − σ(z)); log σ(z) + log σ(−z) is stable for large |z|
        return jnp.sum(jnp.log(self.high - self.low) + jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z))

    def to_unconstrained(self, x):
        frac = np.clip((np.asarray(x) - self.low) / (self.high - self.low), 1e-9, 1 - 1e-9)
        return np.log(frac) - np.log1p(-frac)


def log_posterior_fn(box: Box, loglike):
    """Log posterior density in the unconstrained space (uniform prior density is a constant)."""

    def log_post(z):
        return loglike(box.to_params(z)) + box.log_jacobian(z)

    return log_post


# --------------------------------------------------------------------------------------------------
# Stage 1: batched multi-start optimisation


def _adam_path(neg_log_post, z0, steps: int, learning_rate: float = 0.05):
    grad = jax.value_and_grad(neg_log_post)
    b1, b2, eps = 0.9, 0.999, 1e-8

    def step(carry, t):
        z, m, v = carry
        value, g = grad(z)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        mhat = m / (1 - b1 ** (t + 1))
        vhat = v / (1 - b2 ** (t + 1))
        # cosine-decayed step: large first to cross ridges, small at the end to settle in the mode
        lr = learning_rate * 0.5 * (1 + jnp.cos(jnp.pi * t / steps)) + 1e-3
        z = jnp.clip(z - lr * mhat / (jnp.sqrt(vhat) + eps), -12.0, 12.0)
        return (z, m, v), value

    (z, _, _), _ = jax.lax.scan(step, (z0, jnp.zeros_like(z0), jnp.zeros_like(z0)), jnp.arange(steps))
    return z, -neg_log_post(z)


def find_modes(log_post, box: Box, key, *, starts: int, steps: int, dtype) -> list[dict]:
    """Optimise ``starts`` prior draws at once and group the end points into modes (best first).

    An end point joins a known mode when every parameter agrees to 2 % of its prior width, or when the
    log posterior along the straight line between them never dips more than ``BARRIER`` below the
    lower end (a hill-valley test: no barrier, same basin; it merges optimiser end points that stopped
    at different places on one flat ridge). Each mode records its log posterior (unconstrained space),
    its parameter values and how many starts found it.
    """
    z0 = jax.random.logistic(key, (starts, len(box.names)), dtype=dtype)  # = uniform draws in the box
    run = jax.jit(jax.vmap(partial(_adam_path, lambda z: -log_post(z), steps=steps)))
    z_end, lp_end = run(z0)
    z_end, lp_end = np.asarray(z_end, dtype=np.float64), np.asarray(lp_end, dtype=np.float64)
    finite = np.isfinite(lp_end)
    if not finite.any():
        raise VlbiError(
            "priors: the log posterior is not finite anywhere the optimiser looked; the prior box may "
            "exclude every model the data allow, or the data hold NaNs; widen the priors or check the data"
        )
    fractions = jnp.linspace(0.0, 1.0, 10, dtype=dtype)[1:-1]
    path_min = jax.jit(
        lambda a, b: jnp.min(jax.vmap(lambda t: log_post(a + t * (b - a)))(fractions))
    )
    order = np.argsort(-np.where(finite, lp_end, -np.inf))
    values = np.asarray(box.to_values(z_end))
    width = box.high - box.low
    modes: list[dict] = []
    for i in order:
        if not finite[i]:
            continue
        for mode in modes:
            close = np.all(np.abs(values[i] - mode["_x"]) <= 0.02 * width)
            if close or float(path_min(z_end[i], mode["_z"])) >= lp_end[i] - BARRIER:
                mode["starts"] += 1
                break
        else:
            modes.append({"_x": values[i], "_z": z_end[i], "lp": float(lp_end[i]), "starts": 1})
    return modes


# --------------------------------------------------------------------------------------------------
# Stage 2: chain-parallel NUTS


def _devices_for(chains: int, method: str) -> list:
    devices = jax.local_devices()
    if method != "parallel":
        return devices[:1]
    # the largest device count that divides the chains evenly, so every device runs an equal block
    n = max(d for d in range(1, min(chains, len(devices)) + 1) if chains % d == 0)
    return devices[:n]


def _segment_length(warmup: int, samples: int) -> int:
    """Steps per compiled segment: divides warmup and samples, about 1/20 of the run (for progress)."""
    g = math.gcd(warmup, samples)
    target = max(1, (warmup + samples) // 20)
    best = max(d for d in range(1, min(g, target) + 1) if g % d == 0)
    return best if best * 4 >= min(target, g) else g


class _NutsRunner:
    """Compiled NUTS segments over a mesh of devices, each device holding a block of vmapped chains."""

    def __init__(self, log_post, settings: SamplerSettings, devices: list):
        from numpyro.infer.hmc import hmc

        self.settings = settings
        self.mesh = jax.sharding.Mesh(np.array(devices), ("chain",))
        self.sharding = NamedSharding(self.mesh, P("chain"))
        init_kernel, sample_kernel = hmc(potential_fn=lambda z: -log_post(z), algo="NUTS")

        def init_block(z0, keys):
            init_one = partial(
                init_kernel,
                num_warmup=settings.warmup,
                target_accept_prob=settings.target_accept,
                max_tree_depth=settings.max_tree_depth,
            )
            return jax.vmap(lambda z, k: init_one(z, rng_key=k))(z0, keys)

        def advance_block(state, length):
            def step(s, _):
                s = jax.vmap(sample_kernel)(s)
                stats = {
                    "z": s.z,
                    "lp": -s.potential_energy,
                    "diverging": s.diverging,
                    "n_steps": s.num_steps,
                    "acceptance_rate": s.accept_prob,
                    "step_size": s.adapt_state.step_size,
                    "energy": s.energy,
                }
                return s, stats

            return jax.lax.scan(step, state, None, length=length)

        shard = partial(jax.shard_map, mesh=self.mesh, in_specs=P("chain"), out_specs=P("chain"), check_vma=False)
        self._init = jax.jit(shard(init_block))
        self._advance = {}
        self._advance_block = advance_block
        self._shard = partial(jax.shard_map, mesh=self.mesh, in_specs=P("chain"), check_vma=False)

    def init(self, z0, keys):
        return self._init(jax.device_put(z0, self.sharding), jax.device_put(keys, self.sharding))

    def advance(self, state, length: int):
        if length not in self._advance:
            body = partial(self._advance_block, length=length)
            # scan stacks draws on axis 0 (local), chains on axis 1: shard outputs along the chain axis
            self._advance[length] = jax.jit(
                self._shard(body, out_specs=(P("chain"), P(None, "chain")))
            )
        return self._advance[length](state)


def _progress(done: int, total: int, phase: str, started: float, enabled: bool):
    if not enabled:
        return
    width = 30
    filled = int(width * done / total)
    elapsed = time.perf_counter() - started
    sys.stderr.write(f"\r  {phase:8s} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {elapsed:6.1f}s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def run_nuts(log_post, z_start, settings: SamplerSettings, key) -> tuple[dict, dict, list[str], dict]:
    """Run NUTS chains from ``z_start`` (chains × params). Returns draws (chain, draw, ...), warmup stats,
    the devices used and timings."""
    chains = settings.chains
    devices = _devices_for(chains, settings.chain_method)
    blocks = chains if settings.chain_method == "sequential" else 1
    runner = _NutsRunner(log_post, settings, devices)
    keys = jax.random.split(key, chains)
    seg = _segment_length(settings.warmup, settings.samples)
    timings = {"warmup": 0.0, "sampling": 0.0}
    per_block = chains // blocks
    draws_per_block, warm_div = [], []
    for b in range(blocks):
        sl = slice(b * per_block, (b + 1) * per_block)
        t0 = time.perf_counter()
        state = runner.init(z_start[sl], keys[sl])
        divergent = 0
        for done in range(seg, settings.warmup + 1, seg):
            state, stats = runner.advance(state, seg)
            divergent += int(np.sum(np.asarray(stats["diverging"])))
            _progress(done, settings.warmup, "warmup", t0, settings.progress)
        warm_div.append(divergent)
        t1 = time.perf_counter()
        collected = []
        for done in range(seg, settings.samples + 1, seg):
            state, stats = runner.advance(state, seg)
            collected.append(jax.tree.map(np.asarray, stats))
            _progress(done, settings.samples, "sampling", t1, settings.progress)
        timings["warmup"] += t1 - t0
        timings["sampling"] += time.perf_counter() - t1
        # (draw, chain, ...) segments -> (chain, draw, ...)
        draws_per_block.append(
            {k: np.swapaxes(np.concatenate([c[k] for c in collected], axis=0), 0, 1) for k in collected[0]}
        )
    draws = {k: np.concatenate([d[k] for d in draws_per_block], axis=0) for k in draws_per_block[0]}
    return draws, {"warmup_divergences": int(sum(warm_div))}, [str(d) for d in devices], timings


# --------------------------------------------------------------------------------------------------
# Stage 3: post-processing


def _batched_map(fn, z_flat, batch: int = 256):
    """Apply ``fn`` to every row of ``z_flat`` in jitted vmapped batches (bounded memory)."""
    fn = jax.jit(jax.vmap(fn))
    n = z_flat.shape[0]
    pad = (-n) % batch
    zp = np.concatenate([z_flat, np.repeat(z_flat[-1:], pad, axis=0)]) if pad else z_flat
    outs = [jax.tree.map(np.asarray, fn(zp[i : i + batch])) for i in range(0, len(zp), batch)]
    out = jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)
    return out


def _mode_records(modes: list[dict], box: Box, chains_per_mode: dict[int, int], limit: int = 10) -> list[dict]:
    return [
        {
            "lp": m["lp"],
            "values": {n: float(x) for n, x in zip(box.names, m["_x"])},
            "starts": m["starts"],
            "chains": chains_per_mode.get(i, 0),
        }
        for i, m in enumerate(modes[:limit])
    ]


def _assign_chains_to_modes(chain_means: np.ndarray, modes: list[dict], box: Box) -> dict[int, int]:
    counts: dict[int, int] = {}
    width = box.high - box.low
    centres = np.array([m["_x"] for m in modes])
    for mean in chain_means:
        i = int(np.argmin(np.max(np.abs(centres - mean) / width, axis=1)))
        counts[i] = counts.get(i, 0) + 1
    return counts


def prior_edge_warnings(box: Box, best: np.ndarray, margin: float = 0.005) -> list[str]:
    """Parameters whose best value sits on the edge of its prior box: the prior may exclude what the data
    prefer (m-ring coefficients on the edge are a warning too: the asymmetry saturates)."""
    width = box.high - box.low
    out = []
    for name, x, lo, hi, w in zip(box.names, best, box.low, box.high, width):
        if x - lo < margin * w or hi - x < margin * w:
            out.append(f"{name}: best fit {x:.4g} at the edge of its prior [{lo:.4g}, {hi:.4g}]; "
                       "the prior may exclude what the data prefer; widen it")
    return out


def fit(products, model, settings: SamplerSettings, *, amp_likelihood: str = "gauss") -> FitResult:
    """Fit ``model`` to ``products`` (a :class:`vlbicore.products.DataProducts`)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    dtype = jnp.float64 if settings.dtype == "float64" else jnp.float32
    if settings.dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    box = Box.of(model)
    loglike, pointwise = make_log_likelihood(products, model, amp_likelihood=amp_likelihood)
    log_post = log_posterior_fn(box, loglike)
    key = jax.random.PRNGKey(settings.seed)
    key_modes, key_jitter, key_nuts = jax.random.split(key, 3)

    modes = find_modes(log_post, box, key_modes, starts=settings.starts, steps=settings.optimiser_steps, dtype=dtype)
    timings["optimise"] = time.perf_counter() - t0

    # every chain starts at the best mode, jittered slightly so the chains are not identical
    best = modes[0]["_z"]
    jitter = 0.01 * np.asarray(jax.random.normal(key_jitter, (settings.chains, best.size)))
    z_start = jnp.asarray(best[None, :] + jitter, dtype=dtype)
    draws, warm_stats, devices, nuts_timings = run_nuts(log_post, z_start, settings, key_nuts)
    timings.update(nuts_timings)

    t1 = time.perf_counter()
    n_chain, n_draw = draws["lp"].shape
    z_flat = draws["z"].reshape(n_chain * n_draw, -1)
    obs = products.obs
    u, v = jnp.asarray(obs.u), jnp.asarray(obs.v)

    def per_draw(z):
        p = box.to_params(z)
        V = model.visibility(p, u, v)
        return {
            "params": p,
            "derived": model.derived(p),
            "ll": pointwise(p),
            "pred": {kind: prod.predict(V) for kind, prod in products.items()},
        }

    out = _batched_map(per_draw, z_flat)
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
    verdict["warnings"] = prior_edge_warnings(box, modes[0]["_x"])
    verdict["warmup_divergences"] = warm_stats["warmup_divergences"]
    verdict["max_treedepth_fraction"] = float(np.mean(sample_stats["reached_max_treedepth"]))
    chain_means = np.stack([posterior[k].mean(axis=1) for k in box.names], axis=1)
    chains_per_mode = _assign_chains_to_modes(chain_means, modes, box)
    median = {k: float(np.median(posterior[k])) for k in box.names}
    gof = reduced_chi_squared(products, model, median)
    timings["postprocess"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    return FitResult(
        posterior=posterior,
        sample_stats=sample_stats,
        log_likelihood=log_likelihood,
        posterior_predictive=predictive,
        diagnostics=diag,
        convergence=verdict,
        modes=_mode_records(modes, box, chains_per_mode),
        reduced_chi2=gof,
        timings=timings,
        devices=devices,
        chain_method=settings.chain_method,
    )
