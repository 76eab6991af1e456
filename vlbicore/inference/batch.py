"""Host-side randomness and the one batched log-posterior program a fit shares between its stages.

A fit may hold several independent posteriors of one model (a batch: snapshots of one night, epochs of a
campaign, simulated data sets): their data are stacked along a leading *posterior* axis (padded to one
size, see :func:`vlbicore.likelihood.common_sizes`), and every point evaluated says which posterior it
belongs to. A lone fit is a batch of one, whose data are not stacked.
"""
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


def select_posterior(data, index):
    """The data of posterior ``index`` from data stacked along a leading posterior axis (JAX)."""
    return jax.tree.map(lambda x: x[index], data)


class BatchGradient:
    """Log posterior and its gradient at a batch of points, through one compiled ``vmap`` program.

    The mode search (Adam steps), the hill-valley test between modes, the curvature at the modes, the
    NUTS initial states and the post-processing of the draws all evaluate the model at batches of points;
    sharing one compiled program of ``rows`` points among them saves compiling five (compilation
    dominates a short CPU fit). ``log_post(z, data)`` may return ``(log p, aux)`` with ``has_aux=True``:
    per-point outputs (per-datum log-likelihoods, predictions) for ``__call__(z, aux=True)``. Calls take
    any number of points; they are padded or split to ``rows``. ``data`` is a pytree of arrays passed to
    the program as an argument, so the program does not depend on its values; with ``n_posteriors`` > 1
    its leaves are stacked along a leading posterior axis and each call says which posterior every point
    belongs to (``index``).
    """

    def __init__(self, log_post, rows: int, dtype, *, has_aux: bool = False, data=None, n_posteriors: int = 1):
        self.rows = rows
        self.dtype = dtype
        self.n_posteriors = n_posteriors
        self.data = jax.device_put({} if data is None else data)
        fn = log_post if has_aux else (lambda z, data: (log_post(z, data), {}))
        value_and_grad = jax.value_and_grad(fn, has_aux=True)
        if n_posteriors > 1:
            one = lambda z, i, data: value_and_grad(z, select_posterior(data, i))  # noqa: E731
            self._program = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
        else:
            self._program = jax.jit(jax.vmap(lambda z, i, data: value_and_grad(z, data), in_axes=(0, 0, None)))

    @classmethod
    def of_function(cls, log_post, rows: int, dtype) -> "BatchGradient":
        """The batch program of a log density ``log_post(z)`` whose data are constants inside it (tests,
        toy posteriors); the fitter passes its data as an argument instead."""
        return cls(lambda z, data: log_post(z), rows, dtype)

    def __call__(self, z, aux: bool = False, index=None):
        """(log p, gradient[, aux]) at the points ``z`` (points × parameters) of posteriors ``index``."""
        z = np.asarray(z, dtype=self.dtype)
        n = len(z)
        index = np.zeros(n, np.int32) if index is None else np.broadcast_to(np.asarray(index, np.int32), (n,))
        values, grads, extras = [], [], []
        for i in range(0, n, self.rows):
            chunk, which = z[i : i + self.rows], index[i : i + self.rows]
            keep = len(chunk)
            if keep < self.rows:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.rows - keep, axis=0)])
                which = np.concatenate([which, np.repeat(which[-1:], self.rows - keep)])
            (value, extra), grad = self._program(chunk, which, self.data)
            values.append(np.asarray(value)[:keep])
            grads.append(np.asarray(grad)[:keep])
            if aux:  # copied to the host only when asked (the optimiser's steps do not need them)
                extras.append(jax.tree.map(lambda x: np.asarray(x)[:keep], extra))
        values, grads = np.concatenate(values), np.concatenate(grads)
        if not aux:
            return values, grads
        return values, grads, jax.tree.map(lambda *xs: np.concatenate(xs), *extras)
