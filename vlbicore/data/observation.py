"""The analysis-ready observation: an immutable set of Stokes I visibility rows with their metadata,
and its checksummed ``.npz`` form (``vlbicore prepare``), which the workflow caches between steps.

Units: u, v in wavelengths, visibilities and sigmas in Jy, time in hours UTC from 0 h of ``mjd``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from vlbicore.errors import VlbiError

@dataclasses.dataclass(frozen=True, eq=False)
class Observation:
    """One calibrated, flagged, (scan-averaged) Stokes I observation; one entry per row of the arrays.

    ``ant1``/``ant2`` index ``stations``; the visibility of a row is that of baseline ant1 -> ant2 at
    (u, v). ``flag_counts`` says how many raw records were dropped and why (``segment_incomplete``: those
    the scan averaging could not use). A scan (``scan``) can hold several time stamps (its segments).
    The fields after ``flag_counts`` describe the observation for writing it back to uvfits.
    """

    path: str
    sha256: str
    source: str
    date: str
    band: str
    frequency: float
    stations: tuple[str, ...]
    u: np.ndarray
    v: np.ndarray
    vis: np.ndarray
    sigma: np.ndarray
    time: np.ndarray
    ant1: np.ndarray
    ant2: np.ndarray
    scan: np.ndarray
    flag_counts: dict[str, int]
    ra: float = 0.0  # hours
    dec: float = 0.0  # degrees
    mjd: int = 0
    bandwidth: float = 0.0  # Hz
    station_xyz: np.ndarray | None = None  # [n_stations, 3] geocentric metres
    tint: np.ndarray | None = None  # seconds per row

    def __len__(self) -> int:
        return len(self.vis)

    @property
    def uvdist(self) -> np.ndarray:
        """Baseline length of each row in wavelengths."""
        return np.hypot(self.u, self.v)

    @property
    def baseline_labels(self) -> np.ndarray:
        """'AA-LM' style label of each row."""
        names = np.asarray(self.stations)
        return np.char.add(np.char.add(names[self.ant1], "-"), names[self.ant2])

    def summary(self) -> str:
        """A few lines of plain text describing the observation and what was flagged."""
        flags = ", ".join(f"{k} {n}" for k, n in self.flag_counts.items() if n) or "none"
        snr = np.abs(self.vis) / self.sigma
        return "\n".join([
            f"{Path(self.path).name}: {self.source} {self.date} band {self.band} "
            f"({self.frequency / 1e9:.4f} GHz)",
            f"  stations ({len(self.stations)}): {' '.join(self.stations)}",
            f"  rows {len(self)} in {len(np.unique(self.scan))} scans, "
            f"{len(np.unique(self.ant1 * 1000 + self.ant2))} baselines, "
            f"uv {self.uvdist.min() / 1e9:.2f}-{self.uvdist.max() / 1e9:.2f} Gλ, "
            f"median SNR {np.median(snr):.1f}",
            f"  dropped records: {flags}",
        ])



_ARRAY_FIELDS = ("u", "v", "vis", "sigma", "time", "ant1", "ant2", "scan", "station_xyz", "tint")
_META_FIELDS = ("path", "sha256", "source", "date", "band", "frequency", "stations", "flag_counts", "ra", "dec",
                "mjd", "bandwidth")
# 2: scans averaged over segments whose baselines share their integrations (flag_counts gains
# segment_incomplete); files prepared with the per-baseline scan averaging of format 1 are refused.
PREPARED_FORMAT = 2


def save_prepared(obs: Observation, path) -> Path:
    """Write ``obs`` as a ``.npz`` (arrays + JSON metadata + a checksum of both) for ``load_prepared``.

    The metadata keep the input file's path and sha256, so a workflow can tell which uvfits a prepared
    file came from; the checksum catches a damaged or hand-edited file.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise VlbiError(f"{path}: the output folder does not exist; create it first")
    arrays = {name: np.asarray(getattr(obs, name)) for name in _ARRAY_FIELDS if getattr(obs, name) is not None}
    meta = {name: getattr(obs, name) for name in _META_FIELDS}
    meta["stations"] = list(obs.stations)
    meta["format"] = PREPARED_FORMAT
    meta_json = json.dumps(meta)
    with open(path, "wb") as handle:  # a handle, so numpy does not append ".npz" to other names
        np.savez(handle, meta=np.array(meta_json), checksum=np.array(_content_checksum(arrays, meta_json)),
                 **arrays)
    return path


def load_prepared(path) -> Observation:
    """Read an ``Observation`` written by ``save_prepared`` (checksum verified)."""
    path = Path(path)
    if not path.is_file():
        raise VlbiError(f"{path}: prepared file not found; run `vlbicore prepare DATA.uvfits --out {path}`")
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {name: npz[name] for name in npz.files}
        meta_json = str(contents.pop("meta"))
        checksum = str(contents.pop("checksum"))
        meta = json.loads(meta_json)
    except Exception as exc:
        raise VlbiError(f"{path}: not a prepared observation ({one_line(exc)}); "
                        "run `vlbicore prepare` again") from None
    if meta.get("format") != PREPARED_FORMAT or checksum != _content_checksum(contents, meta_json):
        raise VlbiError(f"{path}: checksum or format mismatch (damaged, edited or from another vlbicore "
                        "version); run `vlbicore prepare` again")
    meta.pop("format")
    meta["stations"] = tuple(meta["stations"])
    return Observation(**meta, **{name: contents.get(name) for name in _ARRAY_FIELDS})


def _content_checksum(arrays: dict[str, np.ndarray], meta_json: str) -> str:
    digest = hashlib.sha256(meta_json.encode())
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# helpers


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()



def load_observation(path) -> Observation:
    """A uvfits file, or a prepared ``.npz`` written by ``vlbicore prepare``."""
    if str(path).endswith(".npz"):
        return load_prepared(path)
    from vlbicore.data.uvfits import load_uvfits

    return load_uvfits(path)


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (at most 200 characters), for error messages."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
