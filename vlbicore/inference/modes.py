"""Stage 1 of a fit: find the posterior's modes and weigh them.

Geometric-model posteriors are multimodal (an m-ring fitted to M87* closures has a d ≈ 42 µas and a
d ≈ 64 µas mode; a chain started in the wrong one never leaves). A batch of prior draws is optimised at
once (Adam in the unconstrained space, every step one call of the batch program; every posterior of a
batch at once), and the end points are grouped into modes.

Each mode is then weighed by its posterior mass, estimated by the Laplace approximation with the full
Hessian in the unconstrained space (where the prior's Jacobian is part of the density):
log M = log p(z*) + (n/2) log 2π − ½ log det(−H). The Hessian comes from central differences of the
gradient (2n points, all modes of all posteriors in one call), after one Newton step from the optimiser's
end point. A mode whose −H is not positive definite gets ``laplace_ok = False`` (its mass is the
regularised estimate and should not be trusted).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import logsumexp

from vlbicore.errors import VlbiError
from vlbicore.inference.batch import BatchGradient, host_rng
from vlbicore.inference.transforms import ParameterSpace

BARRIER = 2.0  # log-posterior dip (nats) that separates two modes
AGREEMENT = 0.02  # end points closer than this in every coordinate (in prior widths) are one mode
PATH_FRACTIONS = np.linspace(0.0, 1.0, 10)[1:-1]  # inner points of the hill-valley test
Z_LIMIT = 12.0  # |z| bound of box coordinates during optimisation (σ(12) = 1 − 6e-6)


@dataclasses.dataclass
class Mode:
    """One mode of a posterior.

    ``z``: where it is, in the unconstrained space; ``values``: its parameter values (angles wrapped into
    their box); ``lp``: log posterior there (unconstrained space); ``starts``: optimiser starts that ended
    in it; ``log_mass``: Laplace estimate of log ∫ p over its basin; ``mass``: its fraction of the mass of
    all modes found; ``laplace_ok``: −Hessian positive definite (the mass estimate is usable);
    ``variance``: diagonal of −H⁻¹ (the start of the NUTS mass matrix).
    """

    z: np.ndarray
    values: np.ndarray
    lp: float
    starts: int = 1
    log_mass: float = math.nan
    mass: float = math.nan
    laplace_ok: bool = True
    variance: np.ndarray | None = None


def adam(batch: BatchGradient, z, steps: int, *, index=None, bounded=None, learning_rate: float = 0.05):
    """Maximise the log posterior from every row of ``z`` at once (Adam, cosine-decayed step). ``bounded``
    marks the coordinates clipped to ±Z_LIMIT (box coordinates; unwrapped angles are not clipped)."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = np.zeros_like(z)
    v = np.zeros_like(z)
    limit = np.where(bounded, Z_LIMIT, np.inf) if bounded is not None else Z_LIMIT
    for t in range(steps):
        _, g = batch(z, index=index)
        g = -np.where(np.isfinite(g), g, 0.0)  # descend on −log p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        mhat = m / (1 - b1 ** (t + 1))
        vhat = v / (1 - b2 ** (t + 1))
        # large steps first to cross ridges, small at the end to settle in the mode
        lr = learning_rate * 0.5 * (1 + math.cos(math.pi * t / steps)) + 1e-3
        z = np.clip(z - lr * mhat / (np.sqrt(vhat) + eps), -limit, limit).astype(z.dtype)
    lp, _ = batch(z, index=index)
    return z, lp


def search_modes(batch: BatchGradient, space: ParameterSpace, keys, *, starts: int, steps: int, z0=None,
                 learning_rate: float = 0.05) -> list[list[Mode]]:
    """The modes of every posterior of ``batch`` (one key per posterior), each list best mass first.

    ``starts`` prior draws per posterior (or the given starts ``z0``: posterior × start × coordinate)
    are optimised at once; an end point joins a known mode when every
    coordinate agrees to ``AGREEMENT`` of its prior width (angles on the circle), or when the log posterior
    along the straight line between them never dips more than ``BARRIER`` below the lower end (a
    hill-valley test: no barrier, same basin; it merges optimiser end points that stopped at different
    places on one flat ridge). Then every mode is weighed (:func:`weigh_modes`).
    """
    n_post = len(keys)
    if z0 is None:
        z0 = np.concatenate([space.draw(host_rng(key), starts) for key in keys])
    z0 = np.asarray(z0).reshape(n_post * starts, space.size).astype(batch.dtype)
    index = np.repeat(np.arange(n_post), starts)
    z_end, lp_end = adam(batch, z0, steps, index=index, bounded=~space.circular, learning_rate=learning_rate)
    z_end = z_end.reshape(n_post, starts, -1)
    lp_end = lp_end.astype(np.float64).reshape(n_post, starts)
    finite = np.isfinite(lp_end)
    if not finite.any(axis=1).all():
        raise VlbiError(
            "priors: the log posterior is not finite anywhere the optimiser looked; the prior box may "
            "exclude every model the data allow, or the data hold NaNs; widen the priors or check the data"
        )
    order = np.argsort(-np.where(finite, lp_end, -np.inf), axis=1)
    modes: list[list[Mode]] = [[] for _ in range(n_post)]
    for rank in range(starts):
        pending = []  # (posterior, end point) needing a hill-valley test against its known modes
        for b in range(n_post):
            i = order[b, rank]
            if not finite[b, i]:
                continue
            z = z_end[b, i]
            known = modes[b]
            close = next((m for m in known if np.all(space.distance(z, m.z) <= AGREEMENT)), None)
            if close is not None:
                close.starts += 1
            elif known:
                pending.append((b, z, float(lp_end[b, i])))
            else:
                known.append(Mode(z=z, values=space.wrap(space.to_values(z.astype(np.float64))), lp=float(lp_end[b, i])))
        if pending:
            _hill_valley(batch, space, modes, pending)
    weigh_modes(batch, space, modes)
    return modes


def find_modes(batch: BatchGradient, space: ParameterSpace, key, *, starts: int, steps: int) -> list[Mode]:
    """The modes of a lone posterior (:func:`search_modes` for a batch of one)."""
    return search_modes(batch, space, [key], starts=starts, steps=steps)[0]


def _hill_valley(batch: BatchGradient, space: ParameterSpace, modes: list[list[Mode]], pending) -> None:
    """Join each pending end point to the first known mode of its posterior with no barrier between them
    (all segments of all posteriors in one batch call), or make it a new mode."""
    points, index, owners = [], [], []
    for j, (b, z, _) in enumerate(pending):
        for k, mode in enumerate(modes[b]):
            step = _toward(space, z, mode.z)
            points.append(z + PATH_FRACTIONS[:, None] * step)
            index.append(np.full(len(PATH_FRACTIONS), b))
            owners.append((j, k))
    lowest = batch(np.concatenate(points), index=np.concatenate(index))[0].reshape(len(owners), -1).min(axis=1)
    joined: dict[int, int] = {}
    for (j, k), low in zip(owners, lowest):
        if j not in joined and low >= pending[j][2] - BARRIER:
            joined[j] = k
    for j, (b, z, lp) in enumerate(pending):
        if j in joined:
            modes[b][joined[j]].starts += 1
        else:
            modes[b].append(Mode(z=z, values=space.wrap(space.to_values(z.astype(np.float64))), lp=lp))


def _toward(space: ParameterSpace, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """end − start in z, the short way round the circle for angles."""
    step = np.asarray(end, np.float64) - np.asarray(start, np.float64)
    for i, prior in enumerate(space.priors):
        if prior.circular:
            step[i] = (step[i] + prior.period / 2) % prior.period - prior.period / 2
    return step


def hessians(batch: BatchGradient, z: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Hessians of the log posterior at the points ``z`` (m × n) by central differences of the gradient."""
    m, n = z.shape
    h = 1e-4 if np.dtype(batch.dtype) == np.float64 else 3e-3
    shifts = h * np.eye(n)
    points = np.concatenate([z[:, None, :] + shifts, z[:, None, :] - shifts], axis=1).reshape(-1, n)
    _, grads = batch(points, index=np.repeat(index, 2 * n))
    grads = grads.reshape(m, 2, n, n).astype(np.float64)
    hess = (grads[:, 0] - grads[:, 1]) / (2 * h)  # [mode, shifted coordinate k, gradient component j]
    return 0.5 * (hess + np.swapaxes(hess, 1, 2))


def weigh_modes(batch: BatchGradient, space: ParameterSpace, modes: list[list[Mode]]) -> None:
    """Laplace mass, curvature variance and mass fraction of every mode (in place); each posterior's modes
    are then sorted by mass, largest first."""
    flat = [(b, mode) for b, posterior in enumerate(modes) for mode in posterior]
    index = np.array([b for b, _ in flat])
    z = np.stack([mode.z for _, mode in flat]).astype(np.float64)
    # one Newton step from the optimiser's end point, kept where it raises the log posterior
    precision = -hessians(batch, z, index)
    lp, grad = batch(z, index=index)
    step = np.stack([_newton_step(p, g) for p, g in zip(precision, grad.astype(np.float64))])
    lp_new, _ = batch(z + step, index=index)
    better = np.isfinite(lp_new) & (lp_new > lp)
    z = np.where(better[:, None], z + step, z)
    precision = -hessians(batch, z, index) if better.any() else precision
    lp = np.where(better, lp_new, lp).astype(np.float64)
    n = space.size
    variance_cap = np.where(space.circular, np.array([getattr(p, "period", 1.0) for p in space.priors]) ** 2 / 12, 1.0)
    for (b, mode), zi, lpi, prec in zip(flat, z, lp, precision):
        eig = np.linalg.eigvalsh(np.nan_to_num(prec))
        mode.laplace_ok = bool(np.all(eig > 0) and np.isfinite(prec).all())
        # no direction may be wider than the prior itself allows (a flat angle spans one period, a flat box
        # coordinate the logistic width of its prior in z), so a flat or saddle direction cannot inflate
        # a mode's mass
        safe = np.maximum(eig, space.curvature_floor)
        mode.z, mode.lp = zi, float(lpi)
        mode.values = space.wrap(space.to_values(zi))
        mode.log_mass = float(lpi + 0.5 * n * math.log(2 * math.pi) - 0.5 * np.sum(np.log(safe)))
        if mode.laplace_ok:
            variance = np.diag(np.linalg.inv(prec))
        else:  # the diagonal curvature where it says something, NumPyro's default (1) elsewhere
            diag = np.diag(prec)
            variance = np.where(np.isfinite(diag) & (diag > 0), 1.0 / np.where(diag > 0, diag, 1.0), 1.0)
        mode.variance = np.clip(variance, 1e-12, variance_cap)
    for posterior in modes:
        log_masses = np.array([m.log_mass for m in posterior])
        fractions = np.exp(log_masses - logsumexp(log_masses))
        for mode, fraction in zip(posterior, fractions):
            mode.mass = float(fraction)
        posterior.sort(key=lambda m: -m.mass)


def _newton_step(precision: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """−H⁻¹ g where −H is positive definite, else no step."""
    try:
        chol = np.linalg.cholesky(precision)
    except np.linalg.LinAlgError:
        return np.zeros_like(grad)
    step = np.linalg.solve(chol.T, np.linalg.solve(chol, grad))
    return step if np.all(np.isfinite(step)) else np.zeros_like(grad)
