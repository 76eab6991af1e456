"""Host-side randomness and the one batched log-posterior program a fit shares between its stages."""
from __future__ import annotations

import jax
import numpy as np


def host_rng(key) -> np.random.Generator:
    """A NumPy generator from a seed, a SeedSequence or a JAX PRNG key (host-side randomness: drawing
    start points with ``jax.random`` would compile a program per call)."""
    if isinstance(key, np.random.Generator):
        return key
    if isinstance(key, np.random.SeedSequence):
        return np.random.default_rng(key)
    return np.random.default_rng(np.asarray(key).ravel().tolist() if np.ndim(key) else int(key))


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

    @classmethod
    def of_function(cls, log_post, rows: int, dtype) -> "BatchGradient":
        """The batch program of a log density ``log_post(z)`` whose data are constants inside it (tests,
        toy posteriors); the fitter passes its data as an argument instead."""
        return cls(lambda z, data: log_post(z), rows, dtype)

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
