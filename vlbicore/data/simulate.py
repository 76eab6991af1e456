"""Synthetic observations of any sky model, written as uvfits that ehtim and ``load_uvfits`` read.

The uv coverage comes either from an ehtim array table (``array="EHT2017"`` or a path; ehtim's
``Array.obsdata`` computes the tracks, elevation limits and SEFD-based thermal sigmas, and works on
NumPy 2) or from a real uvfits file (``like=...``: its records, sigmas and metadata are copied, so
the synthetic data have exactly the real coverage). Visibilities are ``model_fn(u, v)`` plus, with
``noise=True``, complex Gaussian noise of the given sigma on each real and imaginary part, drawn from
``numpy.random.default_rng(seed)``.

Stations in the ehtim tables are named ALMA, APEX, SMT, ...; they are renamed to the two-letter
uvfits codes of the real EHT files (AA, AP, AZ, ...) so synthetic and real data share labels.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from collections.abc import Mapping
from typing import Callable

import numpy as np

from vlbicore.data.averaging import scan_ids
from vlbicore.data.observation import Observation, file_sha256
from vlbicore.data.uvfits import band_name, ehtim, load_uvfits, mjd_to_date, quiet, save_uvfits
from vlbicore.errors import VlbiError

# shipped as package data, so simulation works from any install (not only an editable one)
ARRAY_DIR = Path(__file__).resolve().parent / "arrays"
STATION_CODES = {"ALMA": "AA", "APEX": "AP", "SMT": "AZ", "JCMT": "JC", "LMT": "LM", "PV": "PV",
                 "SMA": "SM", "SPT": "SP", "GLT": "GL", "KP": "KP", "NOEMA": "NN"}


def simulate_observation(model_fn: Callable, *, array: str | Path | None = "EHT2017", like=None,
                         source: str = "M87", ra: float = 12.513728, dec: float = 12.391123,
                         freq: float = 227.0707e9, mjd: int = 57854, tint: float = 60.0,
                         tadv: float = 600.0, tstart: float = 0.0, tstop: float = 24.0,
                         bw: float = 2e9, elevmin: float = 10.0, elevmax: float = 85.0,
                         noise: bool = True, seed: int = 0, nonclosing: float = 0.0,
                         gains: float | Mapping[str, float] = 0.0, out=None) -> Observation:
    """Observe ``model_fn`` (u, v in λ -> complex visibilities in Jy) and optionally write uvfits.

    ``ra`` is in hours, ``dec`` in degrees, ``tint``/``tadv`` in seconds, ``tstart``/``tstop`` in hours
    UTC on day ``mjd``. With ``like`` the coverage, sigmas, source, position, frequency and date of that
    file are used instead (its raw records, before scan averaging). Returns the unaveraged synthetic
    ``Observation``; with ``out`` it is also written there (``path``/``sha256`` then refer to it).

    Errors beyond the thermal noise, each constant within a scan (as calibration errors are):
    ``nonclosing``: a complex baseline-based error, V → V (1 + ε) with Re ε, Im ε ~ N(0, nonclosing²)
    per baseline and scan (it does not cancel in closures); ``gains``: station gains g = exp(a + iφ) per
    station and scan with a ~ N(0, sd²) (one sd for all stations, or per station code) and φ uniform,
    V_ij → g_i conj(g_j) V_ij (they cancel in closures). :func:`injected_gains` with the same ``like``,
    ``seed``, ``nonclosing`` and ``gains`` returns the injected gains per station and scan.
    """
    if like is not None:
        template = _like_template(like)
    else:
        template = _array_template(array, source=source, ra=ra, dec=dec, freq=freq, mjd=mjd, tint=tint,
                                   tadv=tadv, tstart=tstart, tstop=tstop, bw=bw, elevmin=elevmin,
                                   elevmax=elevmax)
    observation = observe(template, model_fn, noise=noise, seed=seed, nonclosing=nonclosing, gains=gains)
    if out is None:
        return observation
    path = save_uvfits(observation, out)
    return dataclasses.replace(observation, path=str(path), sha256=file_sha256(path))


def observe(template: Observation, model_fn: Callable, *, noise: bool = True, seed: int = 0,
            nonclosing: float = 0.0, gains: float | Mapping[str, float] = 0.0) -> Observation:
    """``template``'s records with the visibilities of ``model_fn`` and the errors of
    :func:`simulate_observation` (same seed, same draws); for many simulations on one coverage, read the
    template once (e.g. ``load_uvfits(like, scan_average=False)``) and call this per simulation."""
    vis = model_visibilities(model_fn, template.u, template.v)
    rng = np.random.default_rng(seed)
    thermal = rng.standard_normal(len(vis)) + 1j * rng.standard_normal(len(vis))  # drawn first: same as before
    vis = vis * scan_errors(template, np.random.default_rng([seed, 1]), nonclosing=nonclosing, gains=gains)
    if noise:
        vis = vis + template.sigma * thermal
    return dataclasses.replace(template, vis=vis, flag_counts={}, path="<simulated>", sha256="")


def injected_gains(like, *, seed: int = 0, nonclosing: float = 0.0,
                   gains: float | Mapping[str, float] = 0.0) -> dict:
    """The station gains :func:`simulate_observation` injects into a simulation on ``like``'s coverage
    (a uvfits path, or its raw template ``Observation``) with the same ``seed``, ``nonclosing`` and
    ``gains``: ``stations`` (codes), ``time_start``/``time_end`` (hours UTC, per scan) and ``gain``
    (complex, station × scan; 1 where ``gains`` is 0)."""
    template = like if isinstance(like, Observation) else _like_template(like)
    _, g = scan_errors(template, np.random.default_rng([seed, 1]), nonclosing=nonclosing, gains=gains,
                       with_gains=True)
    scan, _ = scan_ids(template.time)
    n_scans = g.shape[1]
    start = np.array([template.time[scan == k].min() if np.any(scan == k) else np.nan for k in range(n_scans)])
    end = np.array([template.time[scan == k].max() if np.any(scan == k) else np.nan for k in range(n_scans)])
    return {"stations": tuple(template.stations), "time_start": start, "time_end": end, "gain": g}


def injected_gains_at(injected: Mapping, stations, times) -> np.ndarray:
    """The gains of :func:`injected_gains` ``injected`` for ``stations`` (codes) × ``times`` (hours UTC,
    e.g. a fit's segment times): each time's scan is the one whose records span it; NaN for a time in no
    scan, or in more than one."""
    times = np.asarray(times, float)
    within = (injected["time_start"][None, :] - 1e-6 <= times[:, None]) & \
             (times[:, None] <= injected["time_end"][None, :] + 1e-6)  # times × scans
    scan = np.where(within.sum(axis=1) == 1, np.argmax(within, axis=1), -1)
    rows = [injected["stations"].index(s) for s in stations]
    return np.where(scan >= 0, injected["gain"][rows][:, np.maximum(scan, 0)], np.nan)


def scan_errors(obs: Observation, rng: np.random.Generator, *, nonclosing: float = 0.0,
                gains: float | Mapping[str, float] = 0.0, with_gains: bool = False):
    """The multiplicative error of every record: (1 + ε_baseline,scan) g_i conj(g_j) (see
    :func:`simulate_observation`); with ``with_gains`` also the gains, station × scan."""
    scan, _ = scan_ids(obs.time)
    n_scans, n_stations = int(scan.max()) + 1 if len(scan) else 0, len(obs.stations)
    factor = np.ones(len(obs), np.complex128)
    if nonclosing:
        baseline = obs.ant1 * n_stations + obs.ant2
        key, which = np.unique(baseline * max(n_scans, 1) + scan, return_inverse=True)
        eps = nonclosing * (rng.standard_normal(len(key)) + 1j * rng.standard_normal(len(key)))
        factor = factor * (1.0 + eps[which])
    sd = np.array([gains.get(s, gains.get("default", 0.0)) for s in obs.stations]) if isinstance(gains, Mapping) \
        else np.full(n_stations, float(gains))
    g = np.exp(sd[:, None] * rng.standard_normal((n_stations, max(n_scans, 1)))
               + 1j * (2 * np.pi * rng.random((n_stations, max(n_scans, 1))) if np.any(sd > 0) else 0.0))
    if np.any(sd > 0):
        factor = factor * g[obs.ant1, scan] * np.conj(g[obs.ant2, scan])
    return (factor, g) if with_gains else factor


def model_visibilities(model_fn: Callable, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``model_fn(u, v)`` as a finite complex128 NumPy array of the right length."""
    vis = np.asarray(model_fn(np.asarray(u, float), np.asarray(v, float)), dtype=np.complex128)
    if vis.shape != np.shape(u):
        raise VlbiError(f"model_fn: returned shape {vis.shape} for {len(u)} (u, v) points; "
                        "it must return one complex visibility per (u, v) point")
    if not np.all(np.isfinite(vis)):
        raise VlbiError("model_fn: returned NaN or inf visibilities; check the model parameters")
    return vis


def load_array(array: str | Path):
    """An ehtim ``Array`` from a table name in vlbicore/data/arrays ("EHT2017", "EHT2017_m87", ...) or a path."""
    path = Path(array)
    if not path.suffix and not path.exists():
        path = ARRAY_DIR / f"{array}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in ARRAY_DIR.glob("*.txt")) if ARRAY_DIR.is_dir() else []
        raise VlbiError(f"array: {array!r} is neither a file nor a known table ({', '.join(known)}); "
                        "give a path to an ehtim array table")
    try:
        with quiet():
            return ehtim().array.load_txt(str(path))
    except Exception as exc:
        raise VlbiError(f"{path}: not a readable ehtim array table ({' '.join(str(exc).split())[:120]}); "
                        "expected lines 'NAME X Y Z SEFDR SEFDL ...'") from None


def _array_template(array, *, source, ra, dec, freq, mjd, tint, tadv, tstart, tstop, bw, elevmin,
                    elevmax) -> Observation:
    """Coverage and SEFD-based sigmas of an ehtim array table as an Observation with zero visibilities."""
    if not (tint > 0 and tadv >= tint and tstop > tstart):
        raise VlbiError(f"simulate: need tint > 0, tadv >= tint and tstop > tstart "
                        f"(got tint={tint}, tadv={tadv}, tstart={tstart}, tstop={tstop})")
    eh_array = load_array(array)
    with quiet():
        obs = eh_array.obsdata(ra, dec, freq, bw, tint, tadv, tstart, tstop, mjd=mjd, timetype="UTC",
                               polrep="stokes", elevmin=elevmin, elevmax=elevmax)
    data = obs.data
    if len(data) == 0:
        raise VlbiError(f"simulate: the source (ra {ra} h, dec {dec} deg) is never above {elevmin} deg "
                        f"for two stations of {array} between {tstart} and {tstop} h; change the array or times")
    tarr = obs.tarr
    names = [STATION_CODES.get(str(s), str(s)) for s in tarr["site"]]
    code = dict(zip(tarr["site"], names))
    present = [n for n in names if n in {code[s] for s in data["t1"]} | {code[s] for s in data["t2"]}]
    index = {n: i for i, n in enumerate(present)}
    xyz = {n: (row["x"], row["y"], row["z"]) for n, row in zip(names, tarr)}
    return _observation(
        source=source, ra=ra, dec=dec, freq=freq, mjd=mjd, bw=bw, stations=tuple(present),
        u=data["u"], v=data["v"], sigma=data["sigma"], time=data["time"], tint=data["tint"],
        ant1=np.array([index[code[s]] for s in data["t1"]]), ant2=np.array([index[code[s]] for s in data["t2"]]),
        station_xyz=np.array([xyz[n] for n in present]))


def _like_template(like) -> Observation:
    """The raw records (no averaging, nothing dropped but unusable rows) of a real uvfits file."""
    return load_uvfits(like, scan_average=False, drop_intra_site=False)


def _observation(*, source, ra, dec, freq, mjd, bw, stations, u, v, sigma, time, tint, ant1, ant2,
                 station_xyz) -> Observation:
    time = np.asarray(time, float)
    order = np.lexsort((ant2, ant1, time))
    scan, _ = scan_ids(time[order])
    return Observation(
        path="<simulated>", sha256="", source=str(source), date=mjd_to_date(mjd),
        band=band_name("", freq), frequency=float(freq), stations=tuple(stations),
        u=np.asarray(u, float)[order], v=np.asarray(v, float)[order],
        vis=np.zeros(len(order), np.complex128), sigma=np.asarray(sigma, float)[order],
        time=time[order], ant1=np.asarray(ant1, np.int64)[order], ant2=np.asarray(ant2, np.int64)[order],
        scan=scan.astype(np.int64), flag_counts={}, ra=float(ra), dec=float(dec), mjd=int(mjd),
        bandwidth=float(bw), station_xyz=np.asarray(station_xyz, float),
        tint=np.asarray(tint, float)[order])


def parse_params(pairs: list[str]) -> dict:
    """``["d=42", "beta_list=0.2+0.1j,-0.05j"]`` -> {"d": 42.0, "beta_list": [(0.2+0.1j), -0.05j]}."""
    params = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise VlbiError(f"--param: {pair!r} is not NAME=VALUE; e.g. --param d=42")
        try:
            if name.strip() == "beta_list":
                params["beta_list"] = [complex(item.replace(" ", "")) for item in text.split(",") if item]
            else:
                params[name.strip()] = float(text)
        except ValueError:
            raise VlbiError(f"--param: {pair!r} has no numeric value; beta_list takes complex numbers "
                            "like 0.2+0.1j,-0.05j") from None
    return params
