"""Load calibrated VLBI data (uvfits, Stokes I) into an immutable, analysis-ready ``Observation``.

ehtim does the uvfits parsing, but nothing of ehtim leaks out: the result is plain NumPy arrays,
user mistakes become one-line ``VlbiError`` messages, and every dropped row is counted in
``Observation.flag_counts`` instead of vanishing silently.

Pipeline of ``load_uvfits``:

1. check the file (exists, readable, random-groups uvfits with a Stokes I or RR/LL axis);
2. read it with ``ehtim.obsdata.load_uvfits(polrep='stokes')`` (zero-weight records are dropped by
   ehtim; they are counted as ``zero_weight``);
3. drop records with a non-finite or non-positive sigma (``bad_sigma``), NaN/inf or exactly zero
   visibilities (``bad_vis``; ehtim turns NaN into 0), and intra-site baselines (``intra_site``:
   shorter than ``min_baseline`` λ, i.e. ALMA-APEX and JCMT-SMA);
4. average each scan coherently over segments whose baselines all share the same integrations
   (``vlbicore.data.averaging``: one time stamp per segment, so the (u, v) of every closure close;
   records no segment can use are counted as ``segment_incomplete``).

Units: u, v in wavelengths, visibilities and sigmas in Jy, time in hours UTC from 0 h of ``mjd``.
"""
from __future__ import annotations

import contextlib
import datetime
import io
import os
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from vlbicore.data.averaging import MIN_SEGMENT_SECONDS, average_scans, scan_ids
from vlbicore.data.observation import Observation, file_sha256, one_line
from vlbicore.errors import VlbiError

# Centre frequencies of the EHT 2017/2018 bands (Hz) -> band names; a band is recognised within 0.5 GHz.
EHT_BANDS = {213.1e9: "b1", 215.1e9: "b2", 227.0707e9: "lo", 229.0707e9: "hi"}

_SIGMA_COLUMNS = ("sigma", "qsigma", "usigma", "vsigma")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence ehtim: its progress lines go to stdout and its harmless RuntimeWarnings to warnings."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def ehtim():
    """Import ehtim quietly (the import itself prints a welcome banner)."""
    with quiet():
        import ehtim as eh
    return eh



def load_uvfits(path, *, scan_average: bool = True, drop_intra_site: bool = True,
                min_baseline: float = 1e8, min_segment_seconds: float = MIN_SEGMENT_SECONDS) -> Observation:
    """Read a Stokes I uvfits file into an ``Observation`` (see the module docstring for the steps).

    ``min_baseline`` (λ) is the length below which a baseline counts as intra-site and is dropped
    when ``drop_intra_site``; the shortest inter-site EHT baseline is ~1.2e9 λ. With ``scan_average``
    each scan is averaged over segments of at least ``min_segment_seconds`` (``average_scans``).
    """
    path = Path(path)
    n_groups = _check_uvfits(path)
    eh = ehtim()
    try:
        with quiet():
            raw = eh.obsdata.load_uvfits(str(path), polrep="stokes")
    except Exception as exc:  # ehtim raises bare Exceptions for every kind of bad input
        raise VlbiError(f"{path}: ehtim could not read this uvfits file ({one_line(exc)}); "
                        "check that it is a calibrated, single-source uvfits file") from None

    data = raw.data
    flag_counts = {"zero_weight": int(n_groups - len(data))}
    keep, counts = _usable_records(data, min_baseline if drop_intra_site else 0.0)
    flag_counts.update(counts)
    flag_counts["segment_incomplete"] = 0  # set by the averaging
    if not keep.any():
        raise VlbiError(f"{path}: no usable rows (dropped: {_describe(flag_counts)}); "
                        "the file has no finite visibilities with positive sigma on inter-site baselines")
    data = data[keep]

    present = set(data["t1"]) | set(data["t2"])
    stations = tuple(str(s) for s in raw.tarr["site"] if s in present)
    xyz = {row["site"]: (row["x"], row["y"], row["z"]) for row in raw.tarr}
    names = np.asarray(stations)
    by_name = np.argsort(names)
    ant1, ant2 = (by_name[np.searchsorted(names, np.asarray(data[column], str), sorter=by_name)].astype(np.int64)
                  for column in ("t1", "t2"))
    order = np.lexsort((ant2, ant1, data["time"]))
    data, ant1, ant2 = data[order], ant1[order], ant2[order]
    time = np.asarray(data["time"], float)
    obs = Observation(
        path=str(path), sha256=file_sha256(path), source=str(raw.source), date=mjd_to_date(raw.mjd),
        band=band_name(path.name, raw.rf), frequency=float(raw.rf), stations=stations,
        u=np.asarray(data["u"], float), v=np.asarray(data["v"], float),
        vis=np.asarray(data["vis"], np.complex128), sigma=np.asarray(data["sigma"], float),
        time=time, ant1=ant1, ant2=ant2, scan=scan_ids(time)[0].astype(np.int64), flag_counts=flag_counts,
        ra=float(raw.ra), dec=float(raw.dec), mjd=int(raw.mjd), bandwidth=float(raw.bw),
        station_xyz=np.array([xyz[s] for s in stations], float),
        tint=np.asarray(data["tint"], float),
    )
    if not scan_average:
        return obs
    averaged = average_scans(obs, min_segment_seconds)
    if not len(averaged):
        raise VlbiError(f"{path}: no usable rows after scan averaging (dropped: "
                        f"{_describe(averaged.flag_counts)}); no baseline is present through a whole scan "
                        "segment, try a smaller min_segment_seconds")
    return averaged


def to_ehtim(obs: Observation):
    """An ``ehtim.obsdata.Obsdata`` (Stokes) holding exactly the rows of ``obs``.

    For cross-checks against ehtim and for writing uvfits. ehtim may reorder rows and flip baselines
    to its uvfits order, so match rows by time and station names, not by position.
    """
    eh = ehtim()
    const = eh.const_def
    table = np.zeros(len(obs), dtype=const.DTPOL_STOKES)
    names = np.asarray(obs.stations)
    table["time"], table["u"], table["v"] = obs.time, obs.u, obs.v
    table["tint"] = obs.tint if obs.tint is not None else 0.0
    table["t1"], table["t2"] = names[obs.ant1], names[obs.ant2]
    table["vis"], table["sigma"] = obs.vis, obs.sigma
    # ehtim writes RR = I + V, LL = I - V with sigma_RR = sqrt(sigma_I^2 + sigma_V^2) and reads back
    # sigma_I = sqrt(sigma_RR^2 + sigma_LL^2) / 2; so sigma_V = sigma_I round-trips sigma_I exactly
    # (the shipped EHT files hold the same: all four Stokes sigmas equal).
    for column in _SIGMA_COLUMNS[1:]:
        table[column] = obs.sigma
    tarr = np.zeros(len(obs.stations), dtype=const.DTARR)
    tarr["site"] = names
    if obs.station_xyz is not None:
        tarr["x"], tarr["y"], tarr["z"] = np.asarray(obs.station_xyz).T
    with quiet():
        return eh.obsdata.Obsdata(obs.ra, obs.dec, obs.frequency, obs.bandwidth or 1.0, table, tarr,
                                  source=obs.source, mjd=obs.mjd, polrep="stokes")


def save_uvfits(obs: Observation, path) -> Path:
    """Write ``obs`` as a uvfits file (RR = LL = Stokes I) that ehtim and ``load_uvfits`` read back."""
    path = Path(path)
    if not path.parent.is_dir():
        raise VlbiError(f"{path}: the output folder does not exist; create it first")
    with quiet():
        to_ehtim(obs).save_uvfits(str(path))
    return path




def _check_uvfits(path: Path) -> int:
    """Fail early, with an actionable message, on anything ehtim would choke on; return GCOUNT."""
    from astropy.io import fits

    if not path.exists():
        raise VlbiError(f"{path}: file not found; check the path (data files live under data/)")
    if not path.is_file():
        raise VlbiError(f"{path}: not a regular file; give the path of a .uvfits file")
    if not os.access(path, os.R_OK):
        raise VlbiError(f"{path}: file is not readable; check its permissions")
    try:
        with quiet(), fits.open(path, memmap=False) as hdul:
            hdul.verify("silentfix")
            primary = hdul[0]
            header = primary.header
            if not isinstance(primary, fits.GroupsHDU) or "GCOUNT" not in header:
                raise VlbiError(f"{path}: not a uvfits file (no random-groups visibility table); "
                                "export the data as uvfits (e.g. from AIPS FITTP or ehtim save_uvfits)")
            n_groups = int(header["GCOUNT"])
            # reading the data catches truncated files, which astropy opens without complaint
            n_read = len(primary.data)
            stokes = _stokes_codes(header)
            total_intensity = [i for i, code in enumerate(stokes or []) if code in (1, -1, -2)]
            weights = np.asarray(primary.data["DATA"])[..., total_intensity, 2] if total_intensity else None
    except VlbiError:
        raise
    except Exception as exc:
        raise VlbiError(f"{path}: cannot be read as FITS ({one_line(exc)}); the file is truncated "
                        "or not a uvfits file, download or export it again") from None
    if n_read != n_groups or n_groups == 0:
        raise VlbiError(f"{path}: holds {n_read} of {n_groups} visibility records (truncated or empty); "
                        "download or export it again")
    if stokes is None or not ({1, -1, -2} & set(stokes)):
        raise VlbiError(f"{path}: no Stokes I (or RR/LL) correlations (STOKES axis codes {stokes}); "
                        "vlbicore fits total intensity, give a file with Stokes I or RR/LL data")
    if not np.any(weights > 0):
        raise VlbiError(f"{path}: no usable rows (all {n_groups} records have zero or NaN weight, i.e. are "
                        "flagged); give a file with unflagged Stokes I or RR/LL data")
    return n_groups


def _stokes_codes(header) -> list[int] | None:
    """The Stokes codes of the correlation axis (1 = I, -1 = RR, -2 = LL, ...), or None if absent."""
    for axis in range(2, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{axis}", "")).strip().upper() == "STOKES":
            n = int(header[f"NAXIS{axis}"])
            crval, cdelt = float(header[f"CRVAL{axis}"]), float(header.get(f"CDELT{axis}", 1.0))
            crpix = float(header.get(f"CRPIX{axis}", 1.0))
            return [int(round(crval + (i + 1 - crpix) * cdelt)) for i in range(n)]
    return None


def _usable_records(data, min_baseline: float) -> tuple[np.ndarray, dict[str, int]]:
    """Mask of records to keep and the number dropped for each reason (first matching reason wins)."""
    sigma, vis = data["sigma"], data["vis"]
    bad_sigma = ~(np.isfinite(sigma) & (sigma > 0))
    # ehtim turns NaN visibilities into exact zeros, which no real measurement is
    bad_vis = ~(np.isfinite(vis) & (vis != 0)) & ~bad_sigma
    intra = (np.hypot(data["u"], data["v"]) < min_baseline) & ~bad_sigma & ~bad_vis
    counts = {"bad_sigma": int(bad_sigma.sum()), "bad_vis": int(bad_vis.sum()),
              "intra_site": int(intra.sum())}
    return ~(bad_sigma | bad_vis | intra), counts



def band_name(filename: str, frequency: float) -> str:
    """'lo'/'hi' from an EHT-style file name, else the EHT band of the frequency, else e.g. '230.0GHz'."""
    match = re.search(r"_(lo|hi)_", filename)
    if match:
        return match.group(1)
    for centre, name in EHT_BANDS.items():
        if abs(frequency - centre) < 0.5e9:
            return name
    return f"{frequency / 1e9:.1f}GHz"


def mjd_to_date(mjd: float) -> str:
    return (datetime.date(1858, 11, 17) + datetime.timedelta(days=int(mjd))).isoformat()


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counts.items() if n) or "nothing"
