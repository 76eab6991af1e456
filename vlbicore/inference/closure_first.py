"""Starts of the mode search for visibility fits: the sky shape first, on the data that neither the
station gains nor the image position touch; then the position and the gains that go with it.

Why. A visibility likelihood is riddled with local optima that amplitudes and closure phases do not
have: the position of the image has a mode every fringe spacing (~25 µas on 8 Gλ baselines: 8 prior
draws of (x0, y0) missed the true one and ended at (−48, −85) µas with F0 a third of the truth), and
with a phase per station and segment (scan or integration) hundreds of gain phases started at 0 make
the optimiser wrap the sky around the wrong phases (measured on simulated M87*-like rings with random
per-scan phases: 5 of 10 data sets in modes of d = 92–137 µas, truth 42 µas). Yet, with the position
pinned (a phase per segment absorbs it), such data hold exactly the information of amplitudes +
closure phases with gains, a posterior with no gain phases, whose gain amplitudes integrate out.

How. (1) The sky model's modes are searched on amplitudes + closure phases of the same observation
(with marginalised gains of the fit's segmentation and priors when gains are fitted,
:mod:`vlbicore.likelihood.gains`), their own default noise terms and the fit's optimiser settings, from
prior draws. (2) At every such mode, a free position (``x0``, ``y0``) is put at the peak of the
cross-correlation of the data with the model over the whole prior box (:func:`best_position`), and
sampled gains are solved by self-calibration against that sky (:func:`self_calibrate`). (3) These
points, in the visibility fit's own space, are the starts of its mode search, which polishes, groups
and weighs them on the full posterior as for any fit. Every sky mode above the sampling threshold
becomes a start; none is assumed.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vlbicore.inference.batch import BatchGradient, host_rng
from vlbicore.inference.modes import search_modes
from vlbicore.inference.postprocess import MASS_THRESHOLD, MAX_SAMPLED_MODES
from vlbicore.inference.settings import SamplerSettings, use_precision
from vlbicore.inference.transforms import ParameterSpace
from vlbicore.likelihood import NoiseModel
from vlbicore.likelihood.gains import DEFAULT_AMP_SNR_CUT, GainModel, SampledGains, segment_ids
from vlbicore.products import build_products
from vlbicore.units import RAD_PER_UAS

PROXY_PRODUCTS = ("amp", "cphase")
SELF_CAL_ITERATIONS = 2000  # at most; it stops when no gain moves by more than SELF_CAL_TOLERANCE
SELF_CAL_TOLERANCE = 1e-6
WARM_LEARNING_RATE = 0.01  # Adam's first step from a warm start (a tenth of the cold one: stay in the basin)
GAIN_CLIP_SD = 4.0  # a self-calibrated gain log-amplitude is kept within this many prior sds


def uses_closure_first(product_sets) -> bool:
    """Visibility fits: the fits whose starts come from :func:`closure_first_starts`."""
    return "vis" in product_sets[0]


def closure_first_starts(product_sets, model, space: ParameterSpace, gains: GainModel | None,
                         sampled: SampledGains | None, settings: SamplerSettings, seeds, fit_batch) -> np.ndarray:
    """The starts (posterior, start, coordinate of ``space``) of the visibility fits' mode search: the sky
    modes of amplitudes + closure phases (with marginalised gains when ``gains`` are fitted), each with
    its best position (when free) and self-calibrated gains (when sampled); ``settings.starts`` per
    posterior: every sky mode above the threshold, then jittered copies, best first.
    ``fit_batch(product_sets, space, noise, gains)`` builds a batch program, as the fitter does."""
    use_precision(settings.dtype)
    cut = {"amp": DEFAULT_AMP_SNR_CUT} if gains is not None else {}
    proxies = [build_products(p.obs, PROXY_PRODUCTS, covariance=p.options.covariance, snr_cut=cut)
               for p in product_sets]
    proxy_gains = dataclasses.replace(gains, method="marginal", reference=None) if gains is not None else None
    proxy_noise = NoiseModel.of("default", PROXY_PRODUCTS)
    proxy_space = ParameterSpace.of(tuple(model.params) + tuple(proxy_noise.params))
    batch: BatchGradient = fit_batch(proxies, proxy_space, proxy_noise, proxy_gains)
    keys = [np.random.SeedSequence(seed).spawn(4)[3] for seed in seeds]
    modes = search_modes(batch, proxy_space, keys, starts=settings.starts, steps=settings.optimiser_steps)
    starts = np.zeros((len(product_sets), settings.starts, space.size))
    for b, (products, posterior_modes) in enumerate(zip(product_sets, modes)):
        kept = [m for m in posterior_modes if m.mass > MASS_THRESHOLD][:MAX_SAMPLED_MODES] or posterior_modes[:1]
        rng = host_rng(keys[b].spawn(1)[0])
        full = [_full_start(products, model, space, sampled, gains, dict(zip(proxy_space.names, m.values)))
                for m in kept]
        sky_at = [space.names.index(name) for name in proxy_space.names if name in space.names]
        sky_of = [proxy_space.names.index(space.names[i]) for i in sky_at]
        for i in range(settings.starts):
            starts[b, i] = full[i % len(kept)]
            if i >= len(kept):  # jittered copies: the sky moved by a tenth of its width in the closure posterior
                width = np.sqrt(kept[i % len(kept)].variance[sky_of])
                starts[b, i, sky_at] += 0.1 * width * rng.normal(size=len(sky_at))
    return starts


def _full_start(products, model, space: ParameterSpace, sampled: SampledGains | None, gains: GainModel | None,
                sky: dict):
    """The point of ``space`` with the sky (and shared noise terms) of ``sky``, the best position (when
    free) and the gains that self-calibrate the visibilities to that sky (when sampled); coordinates in
    none of them take their prior's centre."""
    import jax.numpy as jnp

    obs, rows = products.obs, np.asarray(products["vis"].rows)
    sky = dict(sky)
    free_position = {"x0", "y0"} <= set(space.names)
    if free_position:
        sky.update(x0=0.0, y0=0.0)
    params = {name: jnp.asarray(sky[name]) for name in (p.name for p in model.params)}
    u, v = obs.u[rows], obs.v[rows]
    V_model = np.asarray(model.visibility(params, jnp.asarray(u), jnp.asarray(v)), np.complex128)
    box = [space.priors[space.names.index(name)] for name in ("x0", "y0")] if free_position else None
    G = None
    for _ in range(2 if free_position and sampled is not None else 1):
        if free_position:
            corrected = obs.vis[rows] if G is None else obs.vis[rows] / _baseline_gains(obs, rows, G, sampled)
            sky["x0"], sky["y0"] = best_position(corrected, V_model, obs.sigma[rows], u, v, box)
        shifted = V_model * _shift(u, v, sky.get("x0", 0.0), sky.get("y0", 0.0)) if free_position else V_model
        if sampled is not None:
            G = self_calibrate(obs, rows, shifted, sampled)
    values = np.zeros(space.size)
    centre = space.to_values(np.zeros(space.size))
    index = {name: i for i, name in enumerate(space.names)}
    for i, name in enumerate(space.names):
        values[i] = sky.get(name, centre[i])
    if sampled is None:
        return space.to_unconstrained(space.wrap(values))
    log_amp, phase = np.log(np.abs(G)), np.angle(G)
    sd = gains.station_sigma(obs)
    for s, k in zip(*np.nonzero(sampled.amp_index >= 0)):
        values[index[sampled.amp_names[sampled.amp_index[s, k]]]] = np.clip(
            log_amp[s, k], -GAIN_CLIP_SD * sd[s], GAIN_CLIP_SD * sd[s])
    for s, k in zip(*np.nonzero(sampled.phase_index >= 0)):
        values[index[sampled.phase_names[sampled.phase_index[s, k]]]] = phase[s, k]
    return space.to_unconstrained(space.wrap(values))


def self_calibrate(obs, rows: np.ndarray, V_model: np.ndarray, sampled: SampledGains,
                   iterations: int = SELF_CAL_ITERATIONS) -> np.ndarray:
    """Complex gains (station × segment) that best map ``V_model`` (at ``rows``) onto the observed
    visibilities, V_ij ≈ G_i conj(G_j) M_ij, by alternating least squares per station (StefCal: each
    station's weighted least-squares gain given the others, averaged with the last iterate every other
    step; Salvini & Wijnholds 2014), all segments at once, until no gain moves by ``SELF_CAL_TOLERANCE``.
    A segment with two stations fixes only the product of their amplitudes (the split is arbitrary). Stations without a gain amplitude parameter keep |G| = 1. The phases are then referred to
    each segment's reference station (the sampled gains' gauge)."""
    seg = segment_ids(obs, np.arange(len(obs)), sampled.segment_kind)[rows]
    a1, a2 = np.asarray(obs.ant1)[rows], np.asarray(obs.ant2)[rows]
    V, M = np.asarray(obs.vis)[rows], np.asarray(V_model, np.complex128)
    w = 1.0 / np.asarray(obs.sigma, np.float64)[rows] ** 2
    shape = (len(sampled.stations), sampled.n_segments)
    fixed_amplitude = sampled.amp_index < 0
    n_seg = shape[1]
    at1, at2 = a1 * n_seg + seg, a2 * n_seg + seg  # flat (station, segment) of each end

    def add(at, x):
        return np.bincount(at, x.real, minlength=G.size) + 1j * np.bincount(at, x.imag, minlength=G.size)

    G = np.ones(shape, np.complex128)
    for i in range(iterations):
        g = G.ravel()
        num = add(at1, w * V * g[at2] * np.conj(M)) + add(at2, w * np.conj(V) * g[at1] * M)
        den = np.bincount(at1, w * np.abs(g[at2] * M) ** 2, minlength=G.size) + \
            np.bincount(at2, w * np.abs(g[at1] * M) ** 2, minlength=G.size)
        new = np.where(den > 0, num / np.where(den > 0, den, 1.0), g).reshape(shape)
        new = np.where(np.abs(new) > 0, new, 1.0)
        previous = G
        G = 0.5 * (G + new) if i % 2 else new  # StefCal: average every other step (it stops the oscillation)
        G = np.where(fixed_amplitude, G / np.abs(G), G)
        if i % 2 and np.max(np.abs(G - previous)) < SELF_CAL_TOLERANCE:
            break
    reference = sampled.present & (sampled.phase_index < 0)
    for k in range(sampled.n_segments):
        ref = np.flatnonzero(reference[:, k])
        if len(ref):
            G[:, k] *= np.exp(-1j * np.angle(G[ref[0], k]))
    return G


POSITION_GRID_STEP = 2.0  # µas: a tenth of the fringe spacing of the longest EHT baselines


def best_position(V, M, sigma, u, v, box, step: float = POSITION_GRID_STEP) -> tuple[float, float]:
    """The shift (x0, y0) in µas, on a grid of ``step`` over the prior ``box`` (the x0 and y0 priors),
    that maximises the likelihood of visibilities ``V`` (σ ``sigma``) under the model ``M``
    shifted by it: the peak of Re Σ w V conj(M) exp(−2πi (u x0 + v y0)) (|M| does not depend on the
    shift), the cross-correlation of the data with the model."""
    weighted = np.asarray(V) * np.conj(M) / np.asarray(sigma, np.float64) ** 2
    xs = np.arange(box[0].low, box[0].high + step / 2, step)
    ys = np.arange(box[1].low, box[1].high + step / 2, step)
    gx, gy = (g.ravel() for g in np.meshgrid(xs, ys, indexing="ij"))
    best, where = -np.inf, (0.0, 0.0)
    for i in range(0, len(gx), 512):  # 512 grid points at a time bound the memory
        phase = 2.0 * np.pi * RAD_PER_UAS * (np.outer(gx[i:i + 512], u) + np.outer(gy[i:i + 512], v))
        score = weighted.real @ np.cos(phase).T + weighted.imag @ np.sin(phase).T
        j = int(np.argmax(score))
        if score[j] > best:
            best, where = float(score[j]), (float(gx[i + j]), float(gy[i + j]))
    return where


def _shift(u, v, x0, y0) -> np.ndarray:
    """exp(+2πi (u x0 + v y0)) (NumPy; µas)."""
    return np.exp(2j * np.pi * RAD_PER_UAS * (u * x0 + v * y0))


def _baseline_gains(obs, rows, G, sampled: SampledGains) -> np.ndarray:
    """G_i conj(G_j) of every row at ``rows``."""
    seg = segment_ids(obs, np.arange(len(obs)), sampled.segment_kind)[rows]
    return G[np.asarray(obs.ant1)[rows], seg] * np.conj(G[np.asarray(obs.ant2)[rows], seg])
