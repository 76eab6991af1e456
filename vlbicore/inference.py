"""Posterior inference for one (observation, model): find the modes, then chain-parallel NUTS.

The pipeline of :func:`fit`:

1. **Modes first.** Geometric-model posteriors are multimodal (an m-ring fitted to M87* closures has a
   d ≈ 42 µas and a d ≈ 64 µas mode; a chain started in the wrong one never leaves). A batch of prior
   draws is optimised at once (Adam in the unconstrained space, every step one call of a vmapped
   gradient program), the end points are grouped into modes, and every mode is recorded with its log
   posterior.
2. **NUTS from the best mode**, with NumPyro's functional ``hmc`` kernel, its mass matrix started from
   the curvature there. Chains run in parallel over all local devices (``shard_map`` over a one-axis
   mesh); more chains than devices form a block per device, vectorised (``vmap``) on GPUs and run one
   after another inside the compiled program on CPUs (faster there); the ``vectorized`` and
   ``sequential`` methods run everything on one device.
3. **Diagnostics** (R-hat, bulk/tail ESS, divergences, tree-depth hits, chain agreement) give the
   ``converged`` flag; goodness of fit is the reduced χ² per product at the posterior median.

On a CPU, compilation is most of a short fit's wall time, so the fit compiles few programs and overlaps
them with work (see docs/architecture.md): one :class:`BatchGradient` program serves the optimiser,
the hill-valley test, the curvature, the NUTS initial states and the post-processing; the NUTS segment
program compiles in a background thread during the mode search.

Parameters live in a box prior per parameter; the sampler works on ``z = logit((x − low)/(high − low))``.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from scipy.special import expit

from .angles import unwrap_around_circular_mean
from .diagnostics import convergence_verdict, parameter_diagnostics
from .errors import VlbiError
from .likelihood import likelihood_data, pointwise_log_likelihood, predicted_products, reduced_chi_squared_of, unpad

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
        # NumPy in, NumPy out: host-side callers must not pay an eager JAX compile per call
        sigmoid = expit if isinstance(z, np.ndarray) else jax.nn.sigmoid
        return self.low + (self.high - self.low) * sigmoid(z)

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


def _rng(key) -> np.random.Generator:
    """A NumPy generator from a seed, a SeedSequence or a JAX PRNG key (host-side randomness: drawing
    start points with ``jax.random`` would compile a program per call)."""
    if isinstance(key, np.random.Generator):
        return key
    if isinstance(key, np.random.SeedSequence):
        return np.random.default_rng(key)
    return np.random.default_rng(np.asarray(key).ravel().tolist() if np.ndim(key) else int(key))


def _data_free(log_post):
    """``log_post(z)`` as the ``(z, data)`` function the compiled programs take (for posteriors whose
    data are constants, e.g. in tests)."""
    return lambda z, data: log_post(z)


class BatchGradient:
    """Log posterior and its gradient at a batch of points, through one compiled ``vmap`` program.

    The mode search (Adam steps), the hill-valley test between modes, the curvature at the best mode, the
    NUTS initial state and the post-processing of the draws all evaluate the model at batches of points;
    sharing one compiled program of ``rows`` points among them saves compiling five (compilation
    dominates a short CPU fit). ``log_post`` may return ``(log p, aux)`` with ``has_aux=True``: per-point
    outputs (per-datum log-likelihoods, predictions) for ``__call__(z, aux=True)``. Calls take any number
    of points; they are padded or split to ``rows``. ``log_post(z, data)`` gets ``data`` (a pytree of
    arrays, the same for every point) as an argument, so the program does not depend on its values.
    """

    def __init__(self, log_post, rows: int, dtype, *, has_aux: bool = False, data=None):
        self.rows = rows
        self.dtype = dtype
        self.data = jax.device_put({} if data is None else data)
        fn = log_post if has_aux else (lambda z, data: (log_post(z, data), {}))
        self._program = jax.jit(jax.vmap(jax.value_and_grad(fn, has_aux=True), in_axes=(0, None)))

    def __call__(self, z, aux: bool = False):
        z = np.asarray(z, dtype=self.dtype)
        n = len(z)
        values, grads, extras = [], [], []
        for i in range(0, n, self.rows):
            chunk = z[i : i + self.rows]
            keep = len(chunk)
            if keep < self.rows:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.rows - keep, axis=0)])
            (value, extra), grad = self._program(chunk, self.data)
            values.append(np.asarray(value)[:keep])
            grads.append(np.asarray(grad)[:keep])
            if aux:  # copied to the host only when asked (the optimiser's steps do not need them)
                extras.append(jax.tree.map(lambda x: np.asarray(x)[:keep], extra))
        values, grads = np.concatenate(values), np.concatenate(grads)
        if not aux:
            return values, grads
        return values, grads, jax.tree.map(lambda *xs: np.concatenate(xs), *extras)


def _adam(batch: BatchGradient, z, steps: int, learning_rate: float = 0.05):
    """Maximise the log posterior from every row of ``z`` at once (Adam, cosine-decayed step)."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = np.zeros_like(z)
    v = np.zeros_like(z)
    for t in range(steps):
        _, g = batch(z)
        g = -np.where(np.isfinite(g), g, 0.0)  # descend on −log p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        mhat = m / (1 - b1 ** (t + 1))
        vhat = v / (1 - b2 ** (t + 1))
        # large steps first to cross ridges, small at the end to settle in the mode
        lr = learning_rate * 0.5 * (1 + math.cos(math.pi * t / steps)) + 1e-3
        z = np.clip(z - lr * mhat / (np.sqrt(vhat) + eps), -12.0, 12.0).astype(z.dtype)
    lp, _ = batch(z)
    return z, lp


PATH_FRACTIONS = np.linspace(0.0, 1.0, 10)[1:-1]  # inner points of the hill-valley test


def find_modes(log_post, box: Box, key, *, starts: int, steps: int, dtype, batch: BatchGradient | None = None) -> list[dict]:
    """Optimise ``starts`` prior draws at once and group the end points into modes (best first).
    ``log_post(z)`` is only used when no ``batch`` program is given.

    An end point joins a known mode when every parameter agrees to 2 % of its prior width, or when the
    log posterior along the straight line between them never dips more than ``BARRIER`` below the
    lower end (a hill-valley test: no barrier, same basin; it merges optimiser end points that stopped
    at different places on one flat ridge). Each mode records its log posterior (unconstrained space),
    its parameter values and how many starts found it.
    """
    batch = batch or BatchGradient(_data_free(log_post), starts, dtype)
    z0 = _rng(key).logistic(size=(starts, len(box.names))).astype(dtype)  # = uniform draws in the box
    z_end, lp_end = _adam(batch, z0, steps)
    lp_end = lp_end.astype(np.float64)
    finite = np.isfinite(lp_end)
    if not finite.any():
        raise VlbiError(
            "priors: the log posterior is not finite anywhere the optimiser looked; the prior box may "
            "exclude every model the data allow, or the data hold NaNs; widen the priors or check the data"
        )
    order = np.argsort(-np.where(finite, lp_end, -np.inf))
    values = box.to_values(z_end.astype(np.float64))
    width = box.high - box.low
    modes: list[dict] = []
    for i in order:
        if not finite[i]:
            continue
        joined = next((m for m in modes if np.all(np.abs(values[i] - m["_x"]) <= 0.02 * width)), None)
        if joined is None and modes:
            # the segments to every known mode in one batch; the first mode without a barrier wins
            ends = np.stack([m["_z"] for m in modes])
            points = z_end[i] + PATH_FRACTIONS[None, :, None] * (ends[:, None, :] - z_end[i])
            lowest = batch(points.reshape(-1, z_end.shape[1]))[0].reshape(len(modes), -1).min(axis=1)
            joined = next((m for m, low in zip(modes, lowest) if low >= lp_end[i] - BARRIER), None)
        if joined is not None:
            joined["starts"] += 1
        else:
            modes.append({"_x": values[i], "_z": z_end[i], "lp": float(lp_end[i]), "starts": 1})
    return modes


def diagonal_variance(batch: BatchGradient, z) -> np.ndarray:
    """Per-parameter posterior variance at the mode ``z`` from the curvature, 1 / (−∂²log p/∂z_i²),
    by central differences of the gradient; NUTS starts its mass matrix there instead of the identity
    (the widths differ ×20 between parameters, and early warmup with the identity is slow)."""
    n = z.size
    h = 1e-4 if np.dtype(batch.dtype) == np.float64 else 3e-3
    shifts = h * np.eye(n)
    _, grads = batch(np.concatenate([z + shifts, z - shifts]))
    curvature = -(np.diag(grads[:n]) - np.diag(grads[n:])) / (2 * h)
    variance = np.ones(n)  # NumPyro's default where the curvature says nothing (not a maximum, not finite)
    usable = np.isfinite(curvature) & (curvature > 0)
    variance[usable] = 1.0 / curvature[usable]
    return np.clip(variance, 1e-12, 1.0)


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


def _within_device(devices: list, method: str) -> str:
    """How a device runs its block of chains: ``vmap`` (one batched program: GPUs, and the ``vectorized``
    method) or ``map`` (one chain after another inside the program: CPUs, where vmap gains nothing from
    batching, makes every chain wait for the longest tree of its block, and compiles ~1.5x slower)."""
    if method == "vectorized" or devices[0].platform != "cpu":
        return "vmap"
    return "map"


class _NutsRunner:
    """Compiled NUTS segments over a mesh of devices, each device holding a block of chains.

    The initial state comes from values and gradients the caller computed already (so the init program
    holds no model and compiles in a fraction of a second), with a diagonal inverse mass matrix per
    chain. ``compile_ahead`` compiles the segment program in a background thread (it depends only on
    shapes), so that its compilation overlaps the mode search. ``log_post(z, data)`` takes the data as an
    argument (replicated on every device), as in :class:`BatchGradient`.
    """

    def __init__(self, log_post, settings: SamplerSettings, devices: list, data=None):
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import ParamInfo

        self.settings = settings
        self.devices = devices
        self.within = _within_device(devices, settings.chain_method)
        self.segment = _segment_length(settings.warmup, settings.samples)
        self.mesh = jax.sharding.Mesh(np.array(devices), ("chain",))
        self.sharding = NamedSharding(self.mesh, P("chain"))
        self.data = jax.device_put({} if data is None else data, NamedSharding(self.mesh, P()))
        init_kernel, sample_kernel = hmc(potential_fn_gen=lambda data: lambda z: -log_post(z, data), algo="NUTS")

        def init_one(z, potential, grad, inverse_mass, key, data):
            return init_kernel(
                ParamInfo(z, potential, grad),
                num_warmup=settings.warmup,
                inverse_mass_matrix=inverse_mass,
                target_accept_prob=settings.target_accept,
                max_tree_depth=(min(settings.warmup_max_tree_depth, settings.max_tree_depth), settings.max_tree_depth),
                rng_key=key,
                model_args=(data,),
            )

        def advance_block(state, data, length):
            def one_chain(s):
                return sample_kernel(s, model_args=(data,))

            per_chain = jax.vmap(one_chain) if self.within == "vmap" else partial(jax.lax.map, one_chain)

            def step(s, _):
                s = per_chain(s)
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

        shard = partial(jax.shard_map, mesh=self.mesh, check_vma=False)
        self._init = jax.jit(shard(jax.vmap(init_one, in_axes=(0, 0, 0, 0, 0, None)),
                                   in_specs=(P("chain"),) * 5 + (P(),), out_specs=P("chain")))
        # scan stacks draws on axis 0 (local), chains on axis 1: shard outputs along the chain axis
        self._advance = jax.jit(
            shard(partial(advance_block, length=self.segment), in_specs=(P("chain"), P()),
                  out_specs=(P("chain"), P(None, "chain")))
        )
        self._ahead = None

    def compile_ahead(self, pool: Executor, chains_per_call: int, n_params: int, dtype):
        """Compile the segment program in ``pool`` now (the init program is small: it compiles on first
        use, in the caller's thread, while this one may still be compiling)."""

        def compile_advance():
            spec = partial(jax.ShapeDtypeStruct, sharding=self.sharding)
            vectors = spec((chains_per_call, n_params), dtype)
            init_specs = (vectors, spec((chains_per_call,), dtype), vectors, vectors,
                          spec((chains_per_call, 2), jnp.uint32), self.data)
            # every leaf of the state carries the chain axis first, sharded like the inputs
            state = jax.tree.map(lambda s: spec(s.shape, s.dtype), jax.eval_shape(self._init, *init_specs))
            return self._advance.lower(state, self.data).compile()

        self._ahead = pool.submit(compile_advance)

    def init(self, z0, potential, grad, inverse_mass, keys):
        """Initial NUTS states; ``potential`` = −log p and ``grad`` its gradient at ``z0`` (chains × ...)."""
        args = (z0, potential, grad, inverse_mass, keys)
        return self._init(*(jax.device_put(np.asarray(x), self.sharding) for x in args), self.data)

    def advance(self, state):
        """One segment of ``self.segment`` NUTS steps for every chain."""
        advance = self._ahead.result() if self._ahead is not None else self._advance
        return advance(state, self.data)


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


def _chains_per_call(settings: SamplerSettings) -> int:
    return 1 if settings.chain_method == "sequential" else settings.chains


def run_nuts(log_post, z_start, settings: SamplerSettings, key, runner: _NutsRunner | None = None,
             batch: BatchGradient | None = None, inverse_mass=None):
    """Run NUTS chains from ``z_start`` (chains × params). Returns draws (chain, draw, ...), warmup stats,
    the devices used and timings. ``log_post(z)`` is only used for what the caller does not give:
    ``runner`` may be one built (and compiling ahead) by the caller;
    ``batch`` evaluates the starting points; ``inverse_mass`` (params,) starts the mass matrix."""
    chains = settings.chains
    runner = runner or _NutsRunner(_data_free(log_post), settings, _devices_for(chains, settings.chain_method))
    batch = batch or BatchGradient(_data_free(log_post), chains, z_start.dtype)
    lp_start, grad_start = batch(z_start)
    inverse_mass = np.ones(z_start.shape[1]) if inverse_mass is None else np.asarray(inverse_mass)
    inverse_mass = np.broadcast_to(inverse_mass, z_start.shape).astype(z_start.dtype)
    keys = _rng(key).integers(0, 2**32, size=(chains, 2), dtype=np.uint32)  # raw threefry keys
    seg = runner.segment
    timings = {"warmup": 0.0, "sampling": 0.0}
    per_block = _chains_per_call(settings)
    draws_per_block, warm_div = [], []
    for b in range(chains // per_block):
        sl = slice(b * per_block, (b + 1) * per_block)
        t0 = time.perf_counter()
        state = runner.init(z_start[sl], -lp_start[sl], -grad_start[sl], inverse_mass[sl], keys[sl])
        divergent = 0
        for done in range(seg, settings.warmup + 1, seg):
            state, stats = runner.advance(state)
            divergent += int(np.sum(np.asarray(stats["diverging"])))
            _progress(done, settings.warmup, "warmup", t0, settings.progress)
        warm_div.append(divergent)
        t1 = time.perf_counter()
        collected = []
        for done in range(seg, settings.samples + 1, seg):
            state, stats = runner.advance(state)
            collected.append(jax.tree.map(np.asarray, stats))
            _progress(done, settings.samples, "sampling", t1, settings.progress)
        timings["warmup"] += t1 - t0
        timings["sampling"] += time.perf_counter() - t1
        # (draw, chain, ...) segments -> (chain, draw, ...)
        draws_per_block.append(
            {k: np.swapaxes(np.concatenate([c[k] for c in collected], axis=0), 0, 1) for k in collected[0]}
        )
    draws = {k: np.concatenate([d[k] for d in draws_per_block], axis=0) for k in draws_per_block[0]}
    return draws, {"warmup_divergences": int(sum(warm_div))}, [str(d) for d in runner.devices], timings


# --------------------------------------------------------------------------------------------------
# Stage 3: post-processing


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


def _wraps_around(box: Box, i: int, periods: Mapping[str, float]) -> bool:
    """An angle whose prior box is one whole period: its two edges are the same point on the circle."""
    period = periods.get(box.names[i])
    return bool(period) and abs((box.high[i] - box.low[i]) - period) < 1e-9 * period


def posterior_median(box: Box, values: np.ndarray, periods: Mapping[str, float]) -> dict[str, float]:
    """Median of every parameter's draws (``values``: draws × params); an angle whose box is a whole
    period gets its circular median, put back inside the box (a posterior straddling 0/2π has its linear
    median on the far side of the circle)."""
    out = {}
    for i, name in enumerate(box.names):
        x = values[:, i]
        if _wraps_around(box, i, periods):
            period = periods[name]
            x = unwrap_around_circular_mean(x, period)
            out[name] = float(box.low[i] + (np.median(x) - box.low[i]) % period)
        else:
            out[name] = float(np.median(x))
    return out


def prior_edge_warnings(box: Box, best: np.ndarray, median: np.ndarray | None = None,
                        periods: Mapping[str, float] | None = None, margin: float = 0.005) -> list[str]:
    """Parameters whose best value, or posterior median, sits on the edge of its prior box: the prior may
    exclude what the data prefer (m-ring coefficients on the edge are a warning too: the asymmetry
    saturates). The optimiser may stop just short of an edge the posterior then piles up against. Angles
    whose box is a whole period have no edge."""
    width = box.high - box.low
    out = []
    points = [("best fit", best)] + ([("posterior median", median)] if median is not None else [])
    for i, (name, lo, hi, w) in enumerate(zip(box.names, box.low, box.high, width)):
        if _wraps_around(box, i, periods or {}):
            continue
        for label, values in points:
            x = values[i]
            if x - lo < margin * w or hi - x < margin * w:
                out.append(f"{name}: {label} {x:.4g} at the edge of its prior [{lo:.4g}, {hi:.4g}]; "
                           "the prior may exclude what the data prefer; widen it")
                break
    return out


def fit(products, model, settings: SamplerSettings, *, amp_likelihood: str = "gauss") -> FitResult:
    """Fit ``model`` to ``products`` (a :class:`vlbicore.products.DataProducts`)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    dtype = jnp.float64 if settings.dtype == "float64" else jnp.float32
    if settings.dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    box = Box.of(model)
    n_params = len(box.names)
    periods = {q.name: q.period for q in model.params if q.period}
    # the data enter every program as an argument, padded to shared sizes: a model's programs compile once
    # for all files of similar size (persistent compilation cache), not once per file
    layout, data = likelihood_data(products, amp_likelihood=amp_likelihood, pad=True)

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
    runner = _NutsRunner(log_post, settings, _devices_for(settings.chains, settings.chain_method), data)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlbicore-compile")
    try:
        runner.compile_ahead(pool, _chains_per_call(settings), n_params, dtype)
        batch = BatchGradient(evaluate, settings.starts, dtype, has_aux=True, data=data)
        modes = find_modes(
            None, box, key_modes, starts=settings.starts, steps=settings.optimiser_steps, dtype=dtype,
            batch=batch,
        )
        best = modes[0]["_z"]
        variance = diagonal_variance(batch, best)
        timings["optimise"] = time.perf_counter() - t0

        # every chain starts at the best mode, jittered by a fraction of the posterior width there so the
        # chains are not identical
        jitter = 0.1 * np.sqrt(variance) * _rng(key_jitter).normal(size=(settings.chains, best.size))
        z_start = (best[None, :] + jitter).astype(dtype)
        draws, warm_stats, devices, nuts_timings = run_nuts(
            None, z_start, settings, key_nuts, runner, batch=batch, inverse_mass=variance
        )
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
    verdict["warnings"] = prior_edge_warnings(box, modes[0]["_x"], median_values, periods)
    verdict["warmup_divergences"] = warm_stats["warmup_divergences"]
    verdict["max_treedepth_fraction"] = float(np.mean(sample_stats["reached_max_treedepth"]))
    chain_means = np.stack([posterior[k].mean(axis=1) for k in box.names], axis=1)
    chains_per_mode = _assign_chains_to_modes(chain_means, modes, box)
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
