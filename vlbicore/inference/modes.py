"""Stage 1 of a fit: find the posterior's modes by batched multi-start optimisation.

Geometric-model posteriors are multimodal (an m-ring fitted to M87* closures has a d ≈ 42 µas and a
d ≈ 64 µas mode; a chain started in the wrong one never leaves). A batch of prior draws is optimised at
once (Adam in the unconstrained space, every step one call of the batch program), and the end points
are grouped into modes.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from vlbicore.errors import VlbiError
from vlbicore.inference.batch import BatchGradient, host_rng
from vlbicore.inference.transforms import Box

BARRIER = 2.0  # log-posterior dip (nats) that separates two modes


@dataclasses.dataclass
class Mode:
    """One mode of the posterior: where the optimiser ended (``z`` in the unconstrained space, ``values``
    of the parameters), its log posterior ``lp`` (unconstrained space) and how many ``starts`` found it."""

    z: np.ndarray
    values: np.ndarray
    lp: float
    starts: int = 1


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


def find_modes(batch: BatchGradient, box: Box, key, *, starts: int, steps: int) -> list[Mode]:
    """Optimise ``starts`` prior draws at once with the ``batch`` program and group the end points into
    modes (best first).

    An end point joins a known mode when every parameter agrees to 2 % of its prior width, or when the
    log posterior along the straight line between them never dips more than ``BARRIER`` below the
    lower end (a hill-valley test: no barrier, same basin; it merges optimiser end points that stopped
    at different places on one flat ridge). Each mode records its log posterior (unconstrained space),
    its parameter values and how many starts found it.
    """
    z0 = host_rng(key).logistic(size=(starts, len(box.names))).astype(batch.dtype)  # = uniform draws in the box
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
    modes: list[Mode] = []
    for i in order:
        if not finite[i]:
            continue
        joined = next((m for m in modes if np.all(np.abs(values[i] - m.values) <= 0.02 * width)), None)
        if joined is None and modes:
            # the segments to every known mode in one batch; the first mode without a barrier wins
            ends = np.stack([m.z for m in modes])
            points = z_end[i] + PATH_FRACTIONS[None, :, None] * (ends[:, None, :] - z_end[i])
            lowest = batch(points.reshape(-1, z_end.shape[1]))[0].reshape(len(modes), -1).min(axis=1)
            joined = next((m for m, low in zip(modes, lowest) if low >= lp_end[i] - BARRIER), None)
        if joined is not None:
            joined.starts += 1
        else:
            modes.append(Mode(z=z_end[i], values=values[i], lp=float(lp_end[i])))
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
