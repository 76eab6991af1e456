"""Stage 2 of a fit: chain-parallel NUTS over every local device.

NumPyro's functional ``hmc`` kernel runs in compiled segments. Chains run in parallel over all local
devices (``shard_map`` over a one-axis mesh); more chains than devices form a block per device,
vectorised (``vmap``) on GPUs and run one after another inside the compiled program on CPUs (faster
there); the ``vectorized`` and ``sequential`` methods run everything on one device.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from concurrent.futures import Executor
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vlbicore.inference.batch import BatchGradient, host_rng, select_posterior
from vlbicore.inference.settings import SamplerSettings


def devices_for(chains: int, method: str) -> list:
    """The local devices the chains run on: all of them for ``parallel`` (as many as divide the chains
    evenly, so every device runs an equal block; a warning says when some stay idle), else one."""
    devices = jax.local_devices()
    if method != "parallel":
        return devices[:1]
    n = max(d for d in range(1, min(chains, len(devices)) + 1) if chains % d == 0)
    if n < min(chains, len(devices)):
        warnings.warn(f"{chains} chains do not divide evenly over {len(devices)} devices: running them on {n} "
                      f"device(s); choose a chain count that is a multiple of {len(devices)} to use every device",
                      stacklevel=2)
    return devices[:n]


def segment_length(warmup: int, samples: int) -> int:
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


class NutsRunner:
    """Compiled NUTS segments over a mesh of devices, each device holding a block of chain *slots*.

    A slot is one chain of one posterior: with ``n_posteriors`` > 1 the data are stacked along a leading
    posterior axis (replicated on every device) and each slot carries the index of its posterior, so the
    chains of a whole batch of posteriors run in one program. The initial state comes from values and
    gradients the caller computed already (so the init program holds no model and compiles in a fraction
    of a second), with a diagonal inverse mass matrix per slot. ``compile_ahead`` compiles the segment
    program in a background thread (it depends only on shapes), so that its compilation overlaps the mode
    search. ``log_post(z, data)`` takes the data as an argument, as in :class:`BatchGradient`.
    """

    def __init__(self, log_post, settings: SamplerSettings, devices: list, data=None, n_posteriors: int = 1):
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import ParamInfo

        self.settings = settings
        self.devices = devices
        self.within = _within_device(devices, settings.chain_method)
        self.segment = segment_length(settings.warmup, settings.samples)
        self.mesh = jax.sharding.Mesh(np.array(devices), ("chain",))
        self.sharding = NamedSharding(self.mesh, P("chain"))
        self.data = jax.device_put({} if data is None else data, NamedSharding(self.mesh, P()))
        init_kernel, sample_kernel = hmc(potential_fn_gen=lambda data: lambda z: -log_post(z, data), algo="NUTS")
        data_of = (lambda data, i: select_posterior(data, i)) if n_posteriors > 1 else (lambda data, i: data)

        def init_one(z, potential, grad, inverse_mass, key, index, data):
            return init_kernel(
                ParamInfo(z, potential, grad),
                num_warmup=settings.warmup,
                inverse_mass_matrix=inverse_mass,
                target_accept_prob=settings.target_accept,
                max_tree_depth=(min(settings.warmup_max_tree_depth, settings.max_tree_depth), settings.max_tree_depth),
                rng_key=key,
                model_args=(data_of(data, index),),
            )

        def segment_of_one(state, index, data, length):
            own = data_of(data, index)  # gathered once per segment, not per step

            def step(s, _):
                s = sample_kernel(s, model_args=(own,))
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

        def advance_block(state, index, data, length):
            one = partial(segment_of_one, data=data, length=length)
            if self.within == "vmap":
                return jax.vmap(one)(state, index)
            return jax.lax.map(lambda args: one(*args), (state, index))

        shard = partial(jax.shard_map, mesh=self.mesh, check_vma=False)
        self._init = jax.jit(shard(jax.vmap(init_one, in_axes=(0, 0, 0, 0, 0, 0, None)),
                                   in_specs=(P("chain"),) * 6 + (P(),), out_specs=P("chain")))
        # every output carries the slot axis first (draws second), sharded along it
        self._advance = jax.jit(
            shard(partial(advance_block, length=self.segment), in_specs=(P("chain"), P("chain"), P()),
                  out_specs=(P("chain"), P("chain")))
        )
        self._ahead = None
        self._index = None

    @classmethod
    def of_function(cls, log_post, settings: SamplerSettings, devices: list) -> "NutsRunner":
        """The runner of a log density ``log_post(z)`` whose data are constants inside it (tests, toys)."""
        return cls(lambda z, data: log_post(z), settings, devices)

    def compile_ahead(self, pool: Executor, slots: int, n_params: int, dtype):
        """Compile the segment program for ``slots`` chains in ``pool`` now (the init program is small: it
        compiles on first use, in the caller's thread, while this one may still be compiling)."""

        def compile_advance():
            spec = partial(jax.ShapeDtypeStruct, sharding=self.sharding)
            vectors = spec((slots, n_params), dtype)
            index = spec((slots,), jnp.int32)
            init_specs = (vectors, spec((slots,), dtype), vectors, vectors, spec((slots, 2), jnp.uint32), index,
                          self.data)
            # every leaf of the state carries the slot axis first, sharded like the inputs
            state = jax.tree.map(lambda s: spec(s.shape, s.dtype), jax.eval_shape(self._init, *init_specs))
            return self._advance.lower(state, index, self.data).compile()

        self._ahead = pool.submit(compile_advance)

    def init(self, z0, potential, grad, inverse_mass, keys, index=None):
        """Initial NUTS states; ``potential`` = −log p and ``grad`` its gradient at ``z0`` (slots × ...);
        ``index``: the posterior of every slot (default: all the first)."""
        index = np.zeros(len(z0), np.int32) if index is None else np.asarray(index, np.int32)
        self._index = jax.device_put(index, self.sharding)
        args = (z0, potential, grad, inverse_mass, keys)
        return self._init(*(jax.device_put(np.asarray(x), self.sharding) for x in args), self._index, self.data)

    def advance(self, state):
        """One segment of ``self.segment`` NUTS steps for every slot; stats are (slot, step, ...)."""
        advance = self._ahead.result() if self._ahead is not None else self._advance
        return advance(state, self._index, self.data)


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


def run_nuts(runner: NutsRunner, batch: BatchGradient, z_start, settings: SamplerSettings, key, *,
             inverse_mass=None, index=None, slots_per_call: int | None = None):
    """Run NUTS chains from ``z_start`` (slots × params) with ``runner`` (which may be compiling ahead).

    ``batch`` evaluates the starting points; ``inverse_mass`` ((slots ×) params) starts the mass matrices
    (default: the identity); ``index`` is each slot's posterior (default: all the first); ``key`` seeds
    the chains, or is their raw keys already (slots × 2 uint32). Slots run
    ``slots_per_call`` at a time (default: all at once, or one at a time for the ``sequential`` method);
    a last partial call is filled with copies of its last slot, which are dropped. Returns draws (slot,
    draw, ...), per-slot warmup divergences, the devices used and timings."""
    n_slots = len(z_start)
    index = np.zeros(n_slots, np.int32) if index is None else np.asarray(index, np.int32)
    lp_start, grad_start = batch(z_start, index=index)
    inverse_mass = np.ones(z_start.shape[1]) if inverse_mass is None else np.asarray(inverse_mass)
    inverse_mass = np.broadcast_to(inverse_mass, z_start.shape).astype(z_start.dtype)
    if np.shape(key) == (n_slots, 2) and np.asarray(key).dtype == np.uint32:
        keys = np.asarray(key)
    else:
        keys = host_rng(key).integers(0, 2**32, size=(n_slots, 2), dtype=np.uint32)  # raw threefry keys
    per_call = slots_per_call or (1 if settings.chain_method == "sequential" else n_slots)
    n_calls = -(-n_slots // per_call)
    fill = np.concatenate([np.arange(n_slots), np.full(n_calls * per_call - n_slots, n_slots - 1)])
    seg = runner.segment
    timings = {"warmup": 0.0, "sampling": 0.0}
    draws_per_call, warm_div = [], []
    for call in range(n_calls):
        sl = fill[call * per_call : (call + 1) * per_call]
        t0 = time.perf_counter()
        state = runner.init(z_start[sl], -lp_start[sl], -grad_start[sl], inverse_mass[sl], keys[sl], index[sl])
        divergent = np.zeros(per_call, np.int64)
        for done in range(seg, settings.warmup + 1, seg):
            state, stats = runner.advance(state)
            divergent += np.asarray(stats["diverging"]).sum(axis=1)
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
        draws_per_call.append({k: np.concatenate([c[k] for c in collected], axis=1) for k in collected[0]})
    draws = {k: np.concatenate([d[k] for d in draws_per_call], axis=0)[:n_slots] for k in draws_per_call[0]}
    warmup_divergences = np.concatenate(warm_div)[:n_slots]
    return draws, {"warmup_divergences": warmup_divergences}, [str(d) for d in runner.devices], timings
