"""Starts of visibility fits (vlbicore.inference.closure_first): self-calibration recovers injected
station gains, the cross-correlation finds an injected shift, on the coverage of a shipped M87* file.
The fits that rely on them are in test_inference (calibrated vis) and bench/bench_gains.py (vis with
per-scan gains)."""
import dataclasses

import jax.numpy as jnp
import numpy as np

from conftest import m87_file
from vlbicore.data import load_observation
from vlbicore.inference.closure_first import best_position, self_calibrate
from vlbicore.inference.transforms import ParameterSpace
from vlbicore.likelihood.gains import GainModel, sampled_gains, segment_ids
from vlbicore.models import build_model
from vlbicore.models.params import X0, Y0
from vlbicore.products import build_products
from vlbicore.products.base import wrap_phase_np

RING = {"type": "mring", "order": 1}
TRUTH = {"F0": 0.6, "d": 42.0, "beta1_re": -0.2, "beta1_im": 0.1}


def _ring_visibilities(obs, x0=0.0, y0=0.0):
    model = build_model(RING)
    p = {k: jnp.asarray(v) for k, v in {**TRUTH, "x0": x0, "y0": y0}.items()}
    return np.asarray(model.visibility(p, jnp.asarray(obs.u), jnp.asarray(obs.v)), np.complex128)


def test_self_calibration_recovers_injected_gains_per_scan():
    """Noiseless visibilities of a ring times random per-scan gains (10 % amplitude, uniform phase): the
    solution against the true ring reproduces the data and matches the injected gains: phases relative to
    each scan's reference station (the sampled gains' gauge), amplitudes where the scan's baselines fix
    them (a scan of two stations, or a station seen on one baseline of a three-station chain, fixes only
    a product)."""
    obs = load_observation(m87_file(101, "lo"))
    rng = np.random.default_rng(3)
    gains = GainModel(method="sampled", segment="scan")
    M = _ring_visibilities(obs)
    seg = segment_ids(obs, np.arange(len(obs)), "scan")
    shape = (len(obs.stations), seg.max() + 1)
    G_true = np.exp(0.1 * rng.standard_normal(shape) + 2j * np.pi * rng.random(shape))
    data = dataclasses.replace(obs, vis=M * G_true[obs.ant1, seg] * np.conj(G_true[obs.ant2, seg]))
    products = build_products(data, ("vis",))
    sampled = sampled_gains([products], gains, phases=True)
    rows = np.asarray(products["vis"].rows)
    G = self_calibrate(data, rows, M[rows], sampled)
    fitted = sampled.present
    determined = _amplitudes_determined(obs, rows, seg, shape)
    assert determined.sum() > 0.8 * fitted.sum()
    np.testing.assert_allclose(np.log(np.abs(G[determined])), np.log(np.abs(G_true[determined])), atol=1e-3)
    reference = np.argmax(sampled.present & (sampled.phase_index < 0), axis=0)
    relative = np.angle(G_true) - np.angle(G_true[reference, np.arange(shape[1])])
    assert np.max(np.abs(wrap_phase_np(np.angle(G[fitted]) - relative[fitted]))) < 1e-3
    model = M[rows] * G[obs.ant1[rows], seg[rows]] * np.conj(G[obs.ant2[rows], seg[rows]])
    np.testing.assert_allclose(model, data.vis[rows], atol=1e-4 * np.abs(M).max())


def _amplitudes_determined(obs, rows, seg, shape) -> np.ndarray:
    """Station × scan: the scan's baselines fix that station's gain amplitude (log|V| = g_i + g_j has a
    unique solution: the scan's incidence matrix has full column rank)."""
    out = np.zeros(shape, bool)
    for k in range(shape[1]):
        mine = rows[seg[rows] == k]
        stations = np.unique(np.concatenate([obs.ant1[mine], obs.ant2[mine]]))
        incidence = np.zeros((len(mine), len(stations)))
        incidence[np.arange(len(mine)), np.searchsorted(stations, obs.ant1[mine])] = 1
        incidence[np.arange(len(mine)), np.searchsorted(stations, obs.ant2[mine])] = 1
        if len(mine) and np.linalg.matrix_rank(incidence) == len(stations):
            out[stations, k] = True
    return out


def test_best_position_finds_a_shift_of_several_fringe_spacings():
    """A ring shifted by (37, −58) µas (several fringe spacings of the longest baselines, where a local
    optimiser from the centre stops in a side lobe), with thermal noise: the cross-correlation's peak on
    the prior box is within one grid step of the shift."""
    obs = load_observation(m87_file(101, "lo"))
    rng = np.random.default_rng(1)
    V = _ring_visibilities(obs, 37.0, -58.0)
    V = V + obs.sigma * (rng.standard_normal(len(V)) + 1j * rng.standard_normal(len(V))) / np.sqrt(2)
    box = ParameterSpace.of((X0, Y0)).priors
    x0, y0 = best_position(V, _ring_visibilities(obs), obs.sigma, obs.u, obs.v, box)
    assert abs(x0 - 37.0) <= 2.0 and abs(y0 + 58.0) <= 2.0, (x0, y0)
