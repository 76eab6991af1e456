"""Station gains: the instrument model of amplitude data, and the analytic marginalisation of the gain
log-amplitudes.

Model. Every station ``s`` has a complex gain per *segment* (``segment: scan`` by default, also
``integration`` or ``track``), G_s = exp(g_s + iφ_s), and a baseline sees V_ij → G_i conj(G_j) V_ij.
Closure phases and closure amplitudes are immune to them; amplitudes are not:

    log|V_ij| = log|V_model,ij| + g_i + g_j + ε,     g_s ~ N(0, σ_s²) per station and segment.

Priors (``gains.sigma``, ``gains.stations``): σ_s = 0.1 (10 %) for every station, and σ_LM = 1.0 for the
Large Millimeter Telescope. The a priori amplitude calibration of EHT 2017 is good to roughly 10 % for
most stations (M87 2017 Paper III's error budget), but the LMT's 2017 gains were poorly known (pointing
and focus problems; the imaging pipelines of Paper IV treated it specially), so it gets a prior that
lets the data set its gain per scan. Any station can be overridden (``stations: {AA: 0.05}``); a name
that is neither a station of the file nor a known EHT code is an error (a typo), a known one the file
lacks is ignored (one campaign config serves every epoch).

Analytic marginalisation (``method: marginal``, the default). With ε ~ N(0, D) (D diagonal: the
thermal relative variance σ²/|V|² plus the noise model's terms, e.g. f² of ``noise.fractional``) and
Gaussian gains, the log amplitudes of one segment are jointly Gaussian,

    r = log A_obs − log|V_model| ~ N(0, C),   C = D + A Σ_g Aᵀ,

A being the baseline → station incidence of the segment (one 1 per station of a baseline). It is
evaluated through the matrix determinant lemma and Woodbury's identity in the station space: with
s = (σ_1…σ_S) and the S × S matrix M = I + diag(s) Aᵀ D⁻¹ A diag(s) per segment,

    rᵀ C⁻¹ r = rᵀ D⁻¹ r − bᵀ M⁻¹ b   (b = diag(s) Aᵀ D⁻¹ r),    log det C = log det D + log det M,

so each segment costs one S × S Cholesky factor (S = stations of the file, padded to a multiple of 4);
absent stations and padded entries contribute exactly zero. Shapes are fixed (segments are a padded
axis) and the data enter through scatter-adds, so the density is jit/vmap friendly; M ≥ I keeps its
factor and the gradient finite everywhere. The density is that of the debiased amplitudes A (the
Jacobian −log A is included), exactly normalised, so leave-one-out compares it like with like with
the Gaussian amplitude likelihood without gains. Per datum, the value is its own Gaussian term, plus
the segment's correction on the segment's first datum: sums over a segment (and hence over a scan,
the unit of leave-one-out, when segments are scans or integrations) are exact joint densities. z² per
datum is the residual after the conditional-mean gains ĝ = Σ_g Aᵀ C⁻¹ r, plus ĝᵀΣ_g⁻¹ĝ on the first
datum, so Σ z² = rᵀC⁻¹r.

Amplitudes enter as logs, so those at low SNR are cut (``snr_cut.amp`` 3 by default with gains, as
for log closure amplitudes; see docs/data.md).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vlbicore.errors import VlbiError
from vlbicore.models.params import Param
from vlbicore.products.base import pad, padded_size, round_up

METHODS = ("marginal", "sampled")
SEGMENTS = ("scan", "integration", "track")
DEFAULT_SIGMA = 0.1
EHT2017_STATIONS = {"LM": 1.0}  # the LMT's 2017 a priori gains were poorly known
# EHT station codes (uvfits two-letter names) a gains override may name even if a file lacks them
KNOWN_STATIONS = ("AA", "AP", "AZ", "JC", "LM", "PV", "SM", "SP", "GL", "KP", "NN", "SR")
DEFAULT_AMP_SNR_CUT = 3.0
GAIN_KEYS = ("method", "segment", "sigma", "stations", "reference")
_LOG_2PI = math.log(2.0 * math.pi)
_TINY = 1e-30


@dataclasses.dataclass(frozen=True)
class GainModel:
    """Station gains of one fit: ``method`` (``marginal``: gain log-amplitudes integrated out
    analytically; ``sampled``: gains are posterior parameters), ``segment`` (``scan``, ``integration``,
    ``track``: one gain per station and segment), ``sigma`` (prior sd of every gain's log-amplitude, 1),
    ``stations`` (per-station overrides of ``sigma``; the EHT 2017 default widens the LMT's to 1.0),
    ``reference`` (the station whose gain phase is fixed to 0 when phases are sampled, in every segment
    it is in; elsewhere, and by default, the segment's first station in the file's order)."""

    method: str = "marginal"
    segment: str = "scan"
    sigma: float = DEFAULT_SIGMA
    stations: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(EHT2017_STATIONS))
    reference: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise VlbiError(f"gains.method: {self.method!r} is unknown; use one of {', '.join(METHODS)}")
        if self.segment not in SEGMENTS:
            raise VlbiError(f"gains.segment: {self.segment!r} is unknown; use one of {', '.join(SEGMENTS)}")
        for where, value in (("gains.sigma", self.sigma), *((f"gains.stations.{k}", v) for k, v in self.stations.items())):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise VlbiError(f"{where}: {value!r} is not a log-amplitude sd >= 0; use e.g. 0.1 for 10 %")
        object.__setattr__(self, "stations", {str(k): float(v) for k, v in self.stations.items()})
        object.__setattr__(self, "sigma", float(self.sigma))

    @classmethod
    def of(cls, setting, products=("amp",)) -> "GainModel | None":
        """The gain model of a ``gains:`` setting for a fit of ``products``: None/false (no gains), true
        (the defaults) or a mapping of :data:`GAIN_KEYS` (``stations`` overrides add to the EHT 2017
        defaults). ``method`` defaults to ``marginal`` for amplitudes and ``sampled`` for visibilities
        (their phases cannot be integrated out analytically). Products immune to gains (closures only)
        get None: a campaign-wide ``gains: true`` does not stop its closure-only models."""
        if setting is None or setting is False:
            return None
        if setting is True:
            setting = {}
        if not isinstance(setting, Mapping):
            raise VlbiError(f"gains: {setting!r} is not true, false or a mapping of {', '.join(GAIN_KEYS)}")
        unknown = sorted(set(setting) - set(GAIN_KEYS))
        if unknown:
            raise VlbiError(f"gains: unknown key(s) {', '.join(unknown)}; valid: {', '.join(GAIN_KEYS)}")
        stations = setting.get("stations") or {}
        if not isinstance(stations, Mapping):
            raise VlbiError(f"gains.stations: {stations!r} is not a mapping of station codes to sds, e.g. {{LM: 1.0}}")
        values = dict(setting)
        values["stations"] = {**EHT2017_STATIONS, **stations}
        values.setdefault("method", "sampled" if "vis" in products else "marginal")
        model = cls(**values)
        if not set(products) & {"amp", "vis"}:
            return None
        if model.method == "marginal" and "vis" in products:
            raise VlbiError("gains.method: marginal integrates out gain amplitudes of amp only; complex "
                            "visibilities need gains.method: sampled (their gain phases too)")
        return model

    def to_dict(self) -> dict:
        return {"method": self.method, "segment": self.segment, "sigma": self.sigma,
                "stations": dict(self.stations), "reference": self.reference}

    def station_sigma(self, obs) -> np.ndarray:
        """Prior sd of the gain log-amplitude of every station of ``obs`` (one-line error for an override
        naming no station of the file and no known EHT code)."""
        bad = sorted(k for k in self.stations if k not in obs.stations and k not in KNOWN_STATIONS)
        if bad:
            raise VlbiError(f"gains.stations: {', '.join(bad)} is not a station of {obs.path} "
                            f"({', '.join(obs.stations)}) nor a known EHT code; check the spelling")
        return np.array([self.stations.get(s, self.sigma) for s in obs.stations], np.float64)


def segment_ids(obs, rows: np.ndarray, segment: str) -> np.ndarray:
    """The gain segment of each of ``rows`` (0, 1, ... in time order): its scan, its time stamp, or 0."""
    rows = np.asarray(rows)
    if segment == "scan":
        key = np.asarray(obs.scan)[rows]
    elif segment == "integration":
        key = np.asarray(obs.time)[rows]
    elif segment == "track":
        key = np.zeros(len(rows))
    else:
        raise VlbiError(f"gains.segment: {segment!r} is unknown; use one of {', '.join(SEGMENTS)}")
    return np.unique(key, return_inverse=True)[1].astype(np.int64).reshape(len(rows))


def gain_sizes(product_sets, gains: GainModel) -> dict:
    """Padded sizes (segments, stations) of the marginal arrays that hold every product set of a batch."""
    blocks = max(len(np.unique(segment_ids(p.obs, p["amp"].rows, gains.segment))) if p["amp"].n else 1
                 for p in product_sets)
    return {"gain_blocks": padded_size(blocks), "gain_stations": round_up(max(len(p.obs.stations) for p in product_sets))}


def marginal_arrays(product, obs, gains: GainModel, sizes: Mapping, base: dict) -> dict:
    """The arrays of the ``gains_marginal`` amplitude density: ``base`` (the product's Gaussian arrays:
    rows, mask, values, sigma, amplitude, uvdist, padded to ``sizes['n']``) plus log amplitudes, the
    stations and segment of every datum, the first datum of each segment and the stations' prior sds."""
    n = sizes["n"]
    values = np.asarray(product.values, np.float64)
    if np.any(values <= 0):
        raise VlbiError(f"{obs.path}: {int(np.sum(values <= 0))} amplitudes are at or below their σ; the gain "
                        "marginalisation fits log amplitudes, so set snr_cut.amp >= 1 (default with gains: 3)")
    rows = np.asarray(product.rows)
    block = segment_ids(obs, rows, gains.segment)
    n_blocks = sizes.get("gain_blocks") or max(int(block.max()) + 1 if len(block) else 1, 1)
    n_stations = sizes.get("gain_stations") or round_up(len(obs.stations))
    first = np.zeros(len(rows), bool)
    if len(rows):
        first[np.unique(block, return_index=True)[1]] = True
    sd = pad(gains.station_sigma(obs), n_stations, 0.0)
    out = dict(base)
    out.update(log_values=pad(np.log(values) if len(values) else values, n, 0.0),
               pos_values=pad(values, n, 1.0),
               station1=pad(np.asarray(obs.ant1)[rows].astype(np.int64), n, 0),
               station2=pad(np.asarray(obs.ant2)[rows].astype(np.int64), n, 1 % max(n_stations, 1)),
               block=pad(block, n, 0), first=pad(first, n, False),
               gain_sd=sd, block_slots=np.zeros(n_blocks, bool))
    return out


def marginal_terms(arrays: Mapping, predicted, variance):
    """Per datum (log-likelihood, z²) of log amplitudes with the gain log-amplitudes integrated out, and
    the conditional-mean gains ĝ (segment × station); see the module docstring. ``variance``: the total
    σ² of each amplitude (thermal + noise terms), turned into a relative variance by the amplitude."""
    mask = arrays["mask"]
    amp = arrays["pos_values"]
    d = jnp.where(mask, variance / amp**2, 1.0)
    w = jnp.where(mask, 1.0 / d, 0.0)
    r = jnp.where(mask, arrays["log_values"] - jnp.log(jnp.maximum(predicted, _TINY)), 0.0)
    s = arrays["gain_sd"]
    n_blocks, n_stations = arrays["block_slots"].shape[0], s.shape[0]
    i, j, b = arrays["station1"], arrays["station2"], arrays["block"]
    si, sj = s[i], s[j]
    H = jnp.zeros((n_blocks, n_stations, n_stations), r.dtype)
    H = H.at[b, i, i].add(w * si * si).at[b, j, j].add(w * sj * sj)
    H = H.at[b, i, j].add(w * si * sj).at[b, j, i].add(w * si * sj)
    rhs = jnp.zeros((n_blocks, n_stations), r.dtype).at[b, i].add(w * r * si).at[b, j].add(w * r * sj)
    M = H + jnp.eye(n_stations, dtype=r.dtype)
    L = jnp.linalg.cholesky(M)
    y = jax.scipy.linalg.solve_triangular(L, rhs[..., None], lower=True)
    h = jax.scipy.linalg.solve_triangular(jnp.swapaxes(L, -1, -2), y, lower=False)[..., 0]  # M⁻¹ b
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    quad = jnp.sum(rhs * h, axis=-1)
    g = h * s  # conditional-mean gain log-amplitudes, segment × station
    first = arrays["first"] & mask
    correction = jnp.where(first, 0.5 * quad[b] - 0.5 * log_det[b], 0.0)
    logp = -0.5 * r**2 / d - 0.5 * jnp.log(d) - 0.5 * _LOG_2PI - jnp.log(amp) + correction
    z2 = (r - g[b, i] - g[b, j]) ** 2 / d + jnp.where(first, jnp.sum(h**2, axis=-1)[b], 0.0)
    return jnp.where(mask, logp, 0.0), jnp.where(mask, z2, 0.0), g


def marginal_log_density(variant: str, arrays: Mapping, predicted, variance):
    """(log-likelihood, z²) per datum of the ``gains_marginal`` variant (the kind-contract signature)."""
    logp, z2, _ = marginal_terms(arrays, predicted, variance)
    return logp, z2


def corrected_chi_squared(product, obs, gains: GainModel, predicted) -> tuple[float, int]:
    """χ² of the amplitudes against their thermal σ after the gains that best fit them (the conditional
    means given thermal errors only) are applied to the model: Σ ((A − e^{ĝ_i+ĝ_j}|V|)/σ)² (NumPy)."""
    if product.n == 0:
        return 0.0, 0
    base = {"mask": np.ones(product.n, bool)}
    arrays = marginal_arrays(product, obs, gains, {"n": product.n}, base)
    predicted = np.asarray(predicted, np.float64)[: product.n]
    sigma = np.asarray(product.sigma, np.float64)
    _, _, g = marginal_terms(jax.tree.map(jnp.asarray, arrays), jnp.asarray(predicted), jnp.asarray(sigma**2))
    g = np.asarray(g)
    b, i, j = arrays["block"], arrays["station1"], arrays["station2"]
    model = np.exp(g[b, i] + g[b, j]) * predicted
    return float(np.sum(((np.asarray(product.values) - model) / sigma) ** 2)), product.n


# --------------------------------------------------------------------------------------------------
# Sampled gains (``method: sampled``): the gains are posterior parameters, one log-amplitude per station
# and segment (normal prior of the station's sd; stations with sd 0 have none) and, when complex
# visibilities are fitted, one phase per station and segment, uniform on the circle, except the
# segment's reference station, whose phase is 0 (the gauge: a common phase of all stations is invisible,
# so without it the posterior would be improper along that direction).


@dataclasses.dataclass(frozen=True, eq=False)
class SampledGains:
    """The gain parameters of a batch: ``stations`` × ``n_segments`` grids of indices into the
    log-amplitude (``amp_index``) and phase (``phase_index``) parameter vectors (-1: not a parameter: no
    data, a zero prior sd, or the reference station's phase); ``params`` (log-amplitudes first, then
    phases) and ``segment_time`` (hours, mean time of each segment's rows, of the first set)."""

    stations: tuple[str, ...]
    n_segments: int
    amp_index: np.ndarray
    phase_index: np.ndarray
    params: tuple
    segment_time: np.ndarray

    @property
    def amp_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.name.startswith("gain."))

    @property
    def phase_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.name.startswith("gain_phase."))

    def arrays(self, obs, n_uv: int) -> dict:
        """Per uv row (padded to ``n_uv``): where each end's log-amplitude and phase sit in the parameter
        vectors extended by one constant 0 (index ``len``)."""
        seg = segment_ids(obs, np.arange(len(obs)), self.segment_kind)
        n_amp, n_phase = len(self.amp_names), len(self.phase_names)
        out = {}
        for end, ant in (("1", obs.ant1), ("2", obs.ant2)):
            a = self.amp_index[ant, seg]
            p = self.phase_index[ant, seg]
            out["amp" + end] = pad(np.where(a >= 0, a, n_amp), n_uv, n_amp)
            out["phase" + end] = pad(np.where(p >= 0, p, n_phase), n_uv, n_phase)
        return out

    segment_kind: str = "scan"
    present: np.ndarray | None = None  # station × segment: the station has data in that segment

    def apply(self, V, p: Mapping, arrays: Mapping):
        """Model visibilities times the gains: V_ij G_i conj(G_j), G = exp(g + iφ) (JAX)."""
        zero = jnp.zeros((1,), jnp.real(V).dtype)
        g = jnp.concatenate([jnp.stack([p[n] for n in self.amp_names]), zero]) if self.amp_names else zero
        factor = jnp.exp(g[arrays["amp1"]] + g[arrays["amp2"]])
        if self.phase_names:
            phi = jnp.concatenate([jnp.stack([p[n] for n in self.phase_names]), zero])
            return V * factor * jnp.exp(1j * (phi[arrays["phase1"]] - phi[arrays["phase2"]]))
        return V * factor

    def unpack(self, posterior: Mapping, shape) -> dict:
        """The gain draws as (chain, draw, station, segment) arrays: NaN where not a parameter (no data, a
        zero prior sd), and phase 0 for each segment's reference station."""
        out = {"log_amplitude": self._grid(self.amp_index, self.amp_names, posterior, shape)}
        if self.phase_names:
            phase = self._grid(self.phase_index, self.phase_names, posterior, shape)
            phase[..., self.present & (self.phase_index < 0)] = 0.0
            out["phase"] = phase
        return out

    def _grid(self, index, names, posterior, shape):
        grid = np.full((*shape, len(self.stations), self.n_segments), np.nan)
        for s, k in zip(*np.nonzero(index >= 0)):
            grid[..., s, k] = np.asarray(posterior[names[index[s, k]]])
        return grid


def sampled_gains(product_sets, gains: GainModel, phases: bool) -> SampledGains:
    """The gain parameters of a batch of product sets (one grid for all: the union of the (station,
    segment) pairs with data; every set must share its stations, e.g. simulations of one coverage)."""
    first = product_sets[0].obs
    for products in product_sets[1:]:
        if tuple(products.obs.stations) != tuple(first.stations):
            raise VlbiError("gains: sampled gains in a batch need the same stations in every data set; "
                            "fit them in separate batches")
    n_stations = len(first.stations)
    sd = gains.station_sigma(first)
    present = None
    n_segments = max(int(segment_ids(p.obs, np.arange(len(p.obs)), gains.segment).max()) + 1 for p in product_sets)
    for products in product_sets:
        obs = products.obs
        seg = segment_ids(obs, np.arange(len(obs)), gains.segment)
        here = np.zeros((n_stations, n_segments), bool)
        here[obs.ant1, seg] = True
        here[obs.ant2, seg] = True
        present = here if present is None else present | here
    amp_index = np.full((n_stations, n_segments), -1, np.int64)
    phase_index = np.full((n_stations, n_segments), -1, np.int64)
    params = []
    for s, k in zip(*np.nonzero(present & (sd[:, None] > 0))):
        amp_index[s, k] = len(params)
        params.append(Param(f"gain.{first.stations[s]}.{k}", "1",
                            f"log-amplitude of the gain of {first.stations[s]} in segment {k}", -10.0, 10.0,
                            prior=("normal", 0.0, float(sd[s]))))
    if phases:
        if gains.reference is not None and gains.reference not in first.stations:
            raise VlbiError(f"gains.reference: {gains.reference} is not a station of {first.path} "
                            f"({', '.join(first.stations)})")
        n_amp = len(params)
        for k in range(n_segments):
            here = np.flatnonzero(present[:, k])
            if not len(here):
                continue
            ref = first.stations.index(gains.reference) if gains.reference in first.stations and \
                present[first.stations.index(gains.reference), k] else here[0]
            for s in here:
                if s == ref:
                    continue
                phase_index[s, k] = len(params) - n_amp
                params.append(Param(f"gain_phase.{first.stations[s]}.{k}", "rad",
                                    f"phase of the gain of {first.stations[s]} in segment {k} (relative to "
                                    f"{first.stations[ref]})", -math.pi, math.pi, period=2 * math.pi))
    seg = segment_ids(first, np.arange(len(first)), gains.segment)
    times = np.array([np.mean(first.time[seg == k]) if np.any(seg == k) else np.nan for k in range(n_segments)])
    return SampledGains(stations=tuple(first.stations), n_segments=n_segments, amp_index=amp_index,
                        phase_index=phase_index, params=tuple(params), segment_time=times,
                        segment_kind=gains.segment, present=present)
