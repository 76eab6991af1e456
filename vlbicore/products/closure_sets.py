"""Minimal, non-redundant closure sets per time stamp, and the closure product they make.

Closure sets are minimal and non-redundant **per time stamp**, built from that time's baseline graph,
so they stay complete when stations are missing (ehtim's ``count='min'`` anchors every closure on one
reference station and loses closures whenever that station lacks a baseline):

* closure phases: the number of independent closure phases at one time is the dimension of the
  graph's cycle space, ``E - V + C`` (baselines, stations, connected components). Triangles are taken
  greedily, highest SNR first, whenever their cycle vector raises the rank of the chosen set; any
  dimension triangles cannot reach is filled with fundamental loops of a BFS spanning tree (which
  can be longer than three baselines, hence ``rows``/``signs`` padded to L columns).
* log closure amplitudes: gain-invariant combinations of log amplitudes are the null space of the
  unsigned incidence matrix, of dimension ``E - V + B`` (B = bipartite components; N(N-3)/2 for a
  full N-station array). Quadrangles log|V_ab| + log|V_cd| - log|V_ac| - log|V_bd| are taken
  greedily, highest SNR first, while they raise the rank. (Graphs whose invariants are not all
  spanned by 4-cycles, e.g. two triangles joined by a single baseline, get fewer than E - V + B; no
  time stamp of the EHT 2017 M87 files is such a graph.)

Errors are the high-SNR propagation: sigma_phase = sigma/|V| per baseline, summed in quadrature.
With ``covariance=True`` each closure product also carries the full covariance A diag(sigma_i^2) A^T
inside each time stamp (closures sharing a baseline are correlated), block diagonal across times.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import scipy.linalg

import jax
import jax.numpy as jnp

from vlbicore.products.base import (LOG_2PI, Product, ProductOptions, gaussian_pointwise, index_arrays, pad,
                                    relative_sigma, whitener)

# A candidate closure raises the rank of the chosen set when its residual after projection on the
# chosen set is longer than this (cycle vectors have integer entries, so real residuals are O(1)).
_RANK_TOLERANCE = 1e-8


@dataclasses.dataclass(frozen=True, eq=False)
class ClosureProduct(Product):
    """A closure product: datum k combines the baselines ``rows[k, :]`` with ``signs[k, :]`` (0 = padding);
    ``cov`` is the thermal covariance (block diagonal in time) or None (independent data).

    Two density variants (the error terms enter through the relative variance of every leg, which the
    likelihood computes, see :mod:`vlbicore.likelihood.noise`):

    * ``independent``: closure k has variance Σ_legs σ_leg²/|V_leg|² (no correlations);
    * ``blocks`` (``covariance: true``): per time stamp, C = A diag(v) Aᵀ with A the signed design matrix
      of that time's closures over its baselines and v the legs' relative variances, so closures sharing a
      baseline are correlated. The residuals are whitened by C's Cholesky factor; each closure's value is
      its conditional density given the closures before it in the block, so the sum over a time stamp
      (or a scan) is the exact joint density of its closures, whichever minimal set was chosen.
    """

    signs: np.ndarray
    cov: np.ndarray | None = None
    variance_kind: ClassVar[str] = "closure_legs"  # the likelihood supplies σ²/|V|² per leg

    def sizes(self) -> dict[str, int]:
        sizes = {"n": self.n, "legs": int(np.shape(self.rows)[1]) if self.n else 1}
        if self.cov is not None:
            blocks = self.blocks()
            sizes.update(blocks=len(blocks), block_size=max((len(k) for k, _, _ in blocks), default=1),
                         block_edges=max((len(e) for _, e, _ in blocks), default=1))
        return sizes

    def blocks(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per time stamp: (closure indices, the obs rows of its baselines, design matrix A [K_t, E_t])."""
        out = []
        rows, signs = np.asarray(self.rows), np.asarray(self.signs)
        for t in np.unique(self.time):
            closures = np.flatnonzero(self.time == t)
            used = signs[closures] != 0
            edges, column = np.unique(rows[closures][used], return_inverse=True)
            design = np.zeros((len(closures), len(edges)))
            which = np.broadcast_to(np.arange(len(closures))[:, None], used.shape)[used]
            np.add.at(design, (which, column), signs[closures][used])
            out.append((closures, edges, design))
        return out

    def likelihood_arrays(self, obs, options: ProductOptions, sizes: dict) -> tuple[str, dict]:
        arrays = index_arrays(self, sizes["n"], width=sizes["legs"])
        arrays["values"] = pad(np.asarray(self.values), sizes["n"], 0.0)
        rel_var = relative_sigma(obs) ** 2
        amplitude, uvdist = np.abs(obs.vis), obs.uvdist
        if self.cov is None:
            legs = arrays["rows"]
            arrays.update(leg_mask=arrays["signs"] != 0, leg_rel_var=np.where(arrays["signs"] != 0, rel_var[legs], 0.0),
                          leg_amplitude=np.where(arrays["signs"] != 0, amplitude[legs], 1.0),
                          leg_uvdist=np.where(arrays["signs"] != 0, uvdist[legs], 1.0))
            return "independent", arrays
        n_blocks, n_slots, n_edges = sizes["blocks"], sizes["block_size"], sizes["block_edges"]
        block_index = np.zeros((n_blocks, n_slots), np.int64)
        block_mask = np.zeros((n_blocks, n_slots), bool)
        design = np.zeros((n_blocks, n_slots, n_edges))
        edge_rows = np.full((n_blocks, n_edges), -1, np.int64)
        position = np.zeros(sizes["n"], np.int64)
        for t, (closures, edges, a) in enumerate(self.blocks()):
            k, e = len(closures), len(edges)
            block_index[t, :k], block_mask[t, :k], design[t, :k, :e], edge_rows[t, :e] = closures, True, a, edges
            position[closures] = t * n_slots + np.arange(k)
        real = edge_rows >= 0
        arrays.update(block_index=block_index, block_mask=block_mask, position=position)
        if options.leg_noise == "common":
            return "blocks_common", {**arrays, **_common_noise_whitening(design, np.where(real, rel_var[edge_rows], 0.0),
                                                                         block_mask)}
        arrays.update(design=design, leg_rel_var=np.where(real, rel_var[edge_rows], 0.0),
                      leg_amplitude=np.where(real, amplitude[edge_rows], 1.0),
                      leg_uvdist=np.where(real, uvdist[edge_rows], 1.0))
        return "blocks", arrays

    @classmethod
    def residual_of(cls, difference):
        """data − model as the density sees it (closure phases wrap it onto the circle); JAX or NumPy."""
        return difference

    @classmethod
    def log_density(cls, variant: str, arrays: dict, predicted, variance):
        if variant == "blocks":
            return cls.block_density(arrays, predicted, variance)
        if variant == "blocks_common":
            return cls.common_block_density(arrays, predicted, variance)
        closure_variance = jnp.sum(jnp.where(arrays["leg_mask"], variance, 0.0), axis=-1)
        # padded closures have no legs: a unit variance keeps their (masked) density and its gradient finite
        closure_variance = jnp.where(jnp.any(arrays["leg_mask"], axis=-1), closure_variance, 1.0)
        return cls.independent_density(arrays, predicted, closure_variance)

    @staticmethod
    def independent_density(arrays: dict, predicted, closure_variance):
        return gaussian_pointwise(predicted - arrays["values"], closure_variance)

    @classmethod
    def block_density(cls, arrays: dict, predicted, variance):
        mask = arrays["block_mask"]
        residual = cls.residual_of(arrays["values"] - predicted)
        r = jnp.where(mask, residual[arrays["block_index"]], 0.0)  # (T, K_t)
        design = arrays["design"]
        cov = jnp.einsum("tke,te,tle->tkl", design, variance, design)
        cov = cov + jnp.eye(mask.shape[1]) * jnp.where(mask, 0.0, 1.0)[:, :, None]  # padded slots: unit
        w, log_diag = whiten_small(cov, r)
        logp = jnp.where(mask, -0.5 * w**2 - log_diag - 0.5 * LOG_2PI, 0.0)
        return logp.reshape(-1)[arrays["position"]], (w**2).reshape(-1)[arrays["position"]]

    @classmethod
    def common_block_density(cls, arrays: dict, predicted, extra):
        """The blocks density when every leg gains the same relative variance ``extra`` (f_nc², the
        default noise model): C(f) = B + f² S with B = A D Aᵀ (thermal) and S = A Aᵀ. With the generalised
        eigenvectors W of (S, B) (Wᵀ B W = I, Wᵀ S W = Λ, precomputed), y = Wᵀ r gives
        rᵀC⁻¹r = Σ y²/(1 + f²λ) and log det C = log det B + Σ log(1 + f²λ): no factorisation per
        evaluation. Each datum's value is that of one whitened component of its time stamp (log det B
        spread evenly), so sums over a time stamp are exact."""
        mask = arrays["block_mask"]
        residual = cls.residual_of(arrays["values"] - predicted)
        r = jnp.where(mask, residual[arrays["block_index"]], 0.0)  # (T, K_t)
        y = jnp.einsum("tki,tk->ti", arrays["whitening"], r)
        scale = 1.0 + extra * arrays["lam"]
        z2 = y**2 / scale
        logp = jnp.where(mask, -0.5 * z2 - 0.5 * jnp.log(scale) - arrays["half_log_det"] - 0.5 * LOG_2PI, 0.0)
        return logp.reshape(-1)[arrays["position"]], z2.reshape(-1)[arrays["position"]]

    def chi_squared(self, predicted) -> tuple[float, int]:
        resid = np.asarray(self.residual_of(self.residuals(predicted)))
        if self.cov is None:
            return float(np.sum((resid / self.sigma) ** 2)), len(self.values)
        white, _ = whitener(self.cov)
        return float(np.sum((white @ resid) ** 2)), len(self.values)


def _common_noise_whitening(design: np.ndarray, rel_var: np.ndarray, mask: np.ndarray) -> dict:
    """Per block, the generalised eigenvectors W of (S = A Aᵀ, B = A D Aᵀ) as columns (Wᵀ B W = I), the
    eigenvalues λ and log det B spread evenly over the block's data (padded slots: W = I, λ = 0)."""
    n_blocks, n_slots = mask.shape
    whitening = np.tile(np.eye(n_slots), (n_blocks, 1, 1))
    lam = np.zeros((n_blocks, n_slots))
    half_log_det = np.zeros((n_blocks, n_slots))
    for t in range(n_blocks):
        k = int(mask[t].sum())
        if not k:
            continue
        a = design[t, :k]
        thermal = (a * rel_var[t]) @ a.T
        lam[t, :k], whitening[t, :k, :k] = scipy.linalg.eigh(a @ a.T, thermal)
        half_log_det[t, :k] = 0.5 * np.linalg.slogdet(thermal)[1] / k
    return {"whitening": whitening, "lam": lam, "half_log_det": half_log_det}


def whiten_small(cov, r):
    """``(L⁻¹ r, log diag L)`` for batches of small covariances C = L Lᵀ (last two axes), by the Cholesky
    factorisation and the forward substitution written as loops over columns of plain array operations.

    The blocks are small (closures of one time stamp, ≤ ~20); XLA's CPU LAPACK calls for batched
    Cholesky / triangular solves were seen to hang on repeated execution inside vmapped programs, and
    the loop form compiles to a small program on every backend and differentiates the same way."""
    n = cov.shape[-1]
    eye = jnp.eye(n, dtype=cov.dtype)
    below = jnp.arange(n)

    def column(j, chol):
        # C[:, j] − Σ_k L[:, k] L[j, k]: only the columns k < j are filled yet
        s = cov[..., :, j] - jnp.sum(chol * chol[..., j, None, :], axis=-1)
        d = jnp.sqrt(s[..., j])
        col = jnp.where(below > j, s / d[..., None], jnp.where(below == j, d[..., None], 0.0))
        return chol + col[..., :, None] * eye[j]

    chol = jax.lax.fori_loop(0, n, column, jnp.zeros_like(cov))
    diag = jnp.diagonal(chol, axis1=-2, axis2=-1)

    def substitute(i, w):
        wi = (r[..., i] - jnp.sum(chol[..., i, :] * w, axis=-1)) / diag[..., i]
        return w + wi[..., None] * eye[i]

    w = jax.lax.fori_loop(0, n, substitute, jnp.zeros_like(r))
    return w, jnp.log(diag)


# --------------------------------------------------------------------------------------------------
# graphs and minimal sets


@dataclasses.dataclass(frozen=True)
class _Graph:
    """The baselines present at one time: stations are obs station indices, edges oriented ant1->ant2."""

    edges: tuple[tuple[int, int], ...]
    rows: tuple[int, ...]  # obs row of each edge
    edge_sigma: tuple[float, ...]  # sigma/|V| of each edge (rad, or relative amplitude error)

    @property
    def stations(self) -> tuple[int, ...]:
        return tuple(sorted({s for edge in self.edges for s in edge}))

    def edge(self, a: int, b: int) -> tuple[int, float] | None:
        """(edge index, +1/-1 orientation) of the baseline a->b, or None if it is missing."""
        return self._lookup.get((a, b))

    @functools.cached_property
    def _lookup(self) -> dict:
        table = {}
        for k, (a, b) in enumerate(self.edges):
            table[(a, b)], table[(b, a)] = (k, 1.0), (k, -1.0)
        return table


@dataclasses.dataclass(frozen=True)
class _Closure:
    """One closure: the stations along it (label), and per baseline its edge index and sign."""

    stations: tuple[int, ...]
    edges: tuple[int, ...]
    signs: tuple[float, ...]

    def vector(self, n_edges: int) -> np.ndarray:
        out = np.zeros(n_edges)
        np.add.at(out, list(self.edges), self.signs)
        return out

    def sigma(self, graph: _Graph) -> float:
        return float(np.sqrt(sum(graph.edge_sigma[e] ** 2 for e in self.edges)))


def graphs_by_time(obs, rows: np.ndarray, edge_sigma: np.ndarray):
    """Yield (time, baseline graph) per time stamp; a baseline seen twice keeps its best-SNR row."""
    for time in np.unique(obs.time[rows]):
        best: dict[frozenset, int] = {}
        for row in rows[obs.time[rows] == time]:
            key = frozenset((obs.ant1[row], obs.ant2[row]))
            if len(key) == 2 and (key not in best or edge_sigma[row] < edge_sigma[best[key]]):
                best[key] = row
        chosen = sorted(best.values())
        yield float(time), _Graph(edges=tuple((int(obs.ant1[r]), int(obs.ant2[r])) for r in chosen),
                                  rows=tuple(int(r) for r in chosen),
                                  edge_sigma=tuple(float(edge_sigma[r]) for r in chosen))


def cycle_rank(edges: Iterable[tuple[int, int]]) -> int:
    """Number of independent closure phases of a baseline graph: E - V + C."""
    edges = list({frozenset(e) for e in edges})
    stations = {s for e in edges for s in e}
    return len(edges) - len(stations) + len(_components(stations, edges))


def log_amplitude_rank(edges: Iterable[tuple[int, int]]) -> int:
    """Number of independent log closure amplitudes of a baseline graph: E - V + (bipartite components)."""
    edges = list({frozenset(e) for e in edges})
    stations = {s for e in edges for s in e}
    n_bipartite = sum(_is_bipartite(c, edges) for c in _components(stations, edges))
    return len(edges) - len(stations) + n_bipartite


def _components(stations, edges) -> list[set]:
    neighbours = {s: set() for s in stations}
    for a, b in (tuple(e) for e in edges):
        neighbours[a].add(b)
        neighbours[b].add(a)
    seen, components = set(), []
    for start in sorted(stations):
        if start in seen:
            continue
        component, stack = set(), [start]
        while stack:
            s = stack.pop()
            if s not in component:
                component.add(s)
                stack.extend(neighbours[s] - component)
        seen |= component
        components.append(component)
    return components


def _is_bipartite(component: set, edges) -> bool:
    colour = {}
    for start in sorted(component):
        if start in colour:
            continue
        colour[start], stack = 0, [start]
        while stack:
            s = stack.pop()
            for e in edges:
                a, b = tuple(e)
                if s in (a, b):
                    other = b if s == a else a
                    if other not in colour:
                        colour[other] = 1 - colour[s]
                        stack.append(other)
                    elif colour[other] == colour[s]:
                        return False
    return True


class _RankTracker:
    """Greedy selection of linearly independent vectors (incremental Gram-Schmidt)."""

    def __init__(self):
        self.basis: list[np.ndarray] = []

    def add_if_independent(self, vector: np.ndarray) -> bool:
        residual = vector.astype(float)
        for q in self.basis:
            residual = residual - (q @ residual) * q
        norm = np.linalg.norm(residual)
        if norm <= _RANK_TOLERANCE:
            return False
        self.basis.append(residual / norm)
        return True


def _loop(graph: _Graph, stations: tuple[int, ...]) -> _Closure | None:
    """The closed loop s0 -> s1 -> ... -> s0, or None if a baseline is missing."""
    steps = [graph.edge(a, b) for a, b in zip(stations, stations[1:] + stations[:1])]
    if any(step is None for step in steps):
        return None
    return _Closure(stations=stations, edges=tuple(e for e, _ in steps), signs=tuple(s for _, s in steps))


def minimal_cycles(graph: _Graph) -> list[_Closure]:
    """A basis of the cycle space: best-SNR triangles first, then spanning-tree loops."""
    target = cycle_rank(graph.edges)
    triangles = [t for t in (_loop(graph, c) for c in itertools.combinations(graph.stations, 3)) if t]
    chosen = _greedy(graph, sorted(triangles, key=lambda c: c.sigma(graph)), target)
    if len(chosen) < target:
        chosen += _greedy(graph, _fundamental_loops(graph), target - len(chosen), prior=chosen)
    return chosen


def _fundamental_loops(graph: _Graph) -> list[_Closure]:
    """One loop per non-tree baseline of a BFS spanning forest (rooted at the best-connected station)."""
    neighbours = {s: [] for s in graph.stations}
    for a, b in graph.edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    parent, depth = {}, {}
    for root in sorted(graph.stations, key=lambda s: (-len(neighbours[s]), s)):
        if root in parent:
            continue
        parent[root], depth[root], queue = None, 0, [root]
        for s in queue:
            for t in sorted(neighbours[s]):
                if t not in parent:
                    parent[t], depth[t] = s, depth[s] + 1
                    queue.append(t)
    loops = []
    for a, b in graph.edges:
        if parent.get(b) == a or parent.get(a) == b:
            continue
        # tree path from b back to a through their lowest common ancestor: a -> b -> ... -> lca -> ... -> a
        up_a, up_b = [a], [b]
        while up_a[-1] != up_b[-1]:
            deeper = up_a if depth[up_a[-1]] >= depth[up_b[-1]] else up_b
            deeper.append(parent[deeper[-1]])
        path = up_b + up_a[-2::-1]  # b ... lca ... a
        loop = _loop(graph, tuple(path[-1:] + path[:-1]))  # start at a: a, b, ..., lca, ...
        loops.append(loop)
    return sorted(loops, key=lambda c: (len(c.edges), c.sigma(graph)))


def minimal_quadrangles(graph: _Graph) -> list[_Closure]:
    """Best-SNR quadrangles while they raise the rank, up to E - V + B."""
    target = log_amplitude_rank(graph.edges)
    candidates = []
    for a, *others in itertools.combinations(graph.stations, 4):
        # a closure amplitude divides one pairing of the four stations by another; a's partner is b
        # in the numerator and c in the denominator (swapping the two pairings only flips the sign)
        for b, c in itertools.combinations(others, 2):
            d = next(s for s in others if s not in (b, c))
            quad = _quadrangle(graph, a, b, c, d)
            if quad:
                candidates.append(quad)
    return _greedy(graph, sorted(candidates, key=lambda c: c.sigma(graph)), target)


def _quadrangle(graph: _Graph, a: int, b: int, c: int, d: int) -> _Closure | None:
    """|V_ab||V_cd| / |V_ac||V_bd|, or None if a baseline is missing."""
    steps = [graph.edge(a, b), graph.edge(c, d), graph.edge(a, c), graph.edge(b, d)]
    if any(step is None for step in steps):
        return None
    return _Closure(stations=(a, b, c, d), edges=tuple(e for e, _ in steps), signs=(1.0, 1.0, -1.0, -1.0))


def _greedy(graph: _Graph, candidates: list[_Closure], limit: int, prior=()) -> list[_Closure]:
    tracker = _RankTracker()
    for closure in prior:
        tracker.add_if_independent(closure.vector(len(graph.edges)))
    chosen = []
    for closure in candidates:
        if len(chosen) >= limit:
            break
        if tracker.add_if_independent(closure.vector(len(graph.edges))):
            chosen.append(closure)
    return chosen


# --------------------------------------------------------------------------------------------------
# assembling arrays


def assemble(obs, closures, cls, *, value_fn, edge_sigma, covariance: bool, min_width: int):
    """Pad the closures of all times into [K, L] arrays and compute values, sigmas and covariance."""
    width = max((len(c.edges) for _, _, c in closures), default=min_width)
    K = len(closures)
    rows, signs = np.zeros((K, width), np.int64), np.zeros((K, width))
    for k, (_, graph, closure) in enumerate(closures):
        n = len(closure.edges)
        rows[k, :n] = [graph.rows[e] for e in closure.edges]
        signs[k, :n] = closure.signs
    names = np.asarray(obs.stations)
    labels = np.array(["-".join(names[list(c.stations)]) for _, _, c in closures], dtype=str)
    weights = np.where(signs != 0, edge_sigma[rows], 0.0) ** 2
    uv = np.where(signs != 0, obs.uvdist[rows], 0.0)
    return cls(rows=rows, signs=signs, values=np.asarray(value_fn(rows, signs), float),
               sigma=np.sqrt(weights.sum(axis=1)), time=np.array([t for t, _, _ in closures], float),
               labels=labels, uvdist=uv.max(axis=1) if K else np.zeros(0),
               cov=_covariance(rows, signs, edge_sigma) if covariance else None)


def _covariance(rows, signs, edge_sigma) -> np.ndarray:
    """C = A diag(sigma_row^2) A^T with A [K, used rows] the signed design matrix (block diagonal in
    time, because closures of different times share no rows)."""
    used, column = np.unique(rows[signs != 0], return_inverse=True)
    design = np.zeros((len(rows), len(used)))
    closure = np.broadcast_to(np.arange(len(rows))[:, None], rows.shape)[signs != 0]
    np.add.at(design, (closure, column), signs[signs != 0])
    return (design * edge_sigma[used] ** 2) @ design.T
