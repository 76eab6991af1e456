"""``vlbicore campaign init``: a campaign (an epoch sheet and a config) from a folder or glob of uvfits files.

Each file's primary header says its source (``OBJECT``), date (``DATE-OBS``, else ``MJD``) and
frequency (the ``FREQ`` axis), read with astropy alone (no ehtim: hundreds of headers take seconds).
The band comes from the file name or the frequency exactly as the fit itself names it
(:func:`vlbicore.data.band_name`), and the calibration pipeline from the file name where it says one
(``..._hops_...``, ``..._casa_...``). Epoch ids are ``<source>_<date>_<band>``, plus ``_<pipeline>``
where files of several pipelines share those.

Nothing is dropped silently: an unreadable file, and a second file for an epoch already taken, is
reported in one line each and left out of the sheet. The models, products and sampler settings of the
config are a starting point (the demo campaign's, or another campaign's with ``like=``).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import glob
import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import Iterable

import yaml

from vlbicore.data import band_name, mjd_to_date
from vlbicore.errors import VlbiError
from vlbicore.survey import sheet

UVFITS_SUFFIXES = (".uvfits", ".uvf", ".uvfits.gz")  # what a directory argument collects
PIPELINES = ("hops", "casa", "aips", "rpicard", "difmap", "ehtim")  # names a file name may state

# The demo campaign's settings (config/config.yaml; tests/test_campaign_init.py keeps the two equal): a
# starting point for a new campaign, to be edited.
STARTER_SETTINGS = {
    "products": ["cphase", "lcamp"],
    "models": {
        "mring1": {"type": "mring", "order": 1},
        "thick_mring2": {"type": "thick_mring", "order": 2},
        "crescent": {"type": "crescent"},
    },
    "sampler": {"chains": 4, "warmup": 300, "samples": 500, "target_accept": 0.8, "max_tree_depth": 8,
                "seed": 0, "dtype": "float64", "starts": 32},
}
# What `like=` copies from another campaign: everything but its name, results and epochs.
SETTINGS_KEYS = ("prepare", "products", "models", "sampler", "systematic", "amp_likelihood", "covariance",
                 "resources")


@dataclasses.dataclass(frozen=True)
class FileEpoch:
    """What one uvfits header (and its file name) says about the observation in it."""

    path: str
    source: str
    date: str
    band: str
    frequency_hz: float
    pipeline: str


@dataclasses.dataclass
class InitResult:
    """The files :func:`init_campaign` wrote, the epochs in the sheet and one line per file left out."""

    config: Path
    sheet: Path
    epochs: list[dict]
    skipped: list[str]

    @property
    def sources(self) -> list[str]:
        return sorted({row["source"] for row in self.epochs})


# --------------------------------------------------------------------------------------------------
# finding files, reading headers


def find_uvfits(patterns: Iterable[str]) -> list[str]:
    """Files named by directories (their uvfits files, not recursive), glob patterns (``**`` recurses)
    or plain paths, each once, sorted; a pattern matching nothing is an error naming it."""
    found: dict[str, None] = {}
    for pattern in patterns:
        pattern = str(pattern)
        if os.path.isdir(pattern):
            matches = [str(Path(pattern) / name) for name in os.listdir(pattern)
                       if name.lower().endswith(UVFITS_SUFFIXES) and os.path.isfile(os.path.join(pattern, name))]
        elif glob.has_magic(pattern):
            matches = [path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path)]
        else:
            matches = [pattern] if os.path.exists(pattern) else []
        if not matches:
            raise VlbiError(f"{pattern}: no uvfits files there (a directory's *.uvfits/*.uvf files, a glob, or "
                            "file paths); check the path")
        found.update(dict.fromkeys(sorted(matches)))
    return sorted(found)


def _header_date(header) -> str | None:
    """ISO date from DATE-OBS ('2017-04-05', '2017-04-05T...', or the old 'DD/MM/YY'), else from MJD."""
    value = str(header.get("DATE-OBS", "")).strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}", value):
        return value[:10]
    old_style = re.match(r"^(\d{2})/(\d{2})/(\d{2})$", value)
    if old_style:
        day, month, year = map(int, old_style.groups())
        return datetime.date(1900 + year if year >= 50 else 2000 + year, month, day).isoformat()
    if isinstance(header.get("MJD"), (int, float)):
        return mjd_to_date(float(header["MJD"]))
    return None


def _header_frequency(header) -> float | None:
    """Reference frequency (Hz) of the FREQ axis of a random-groups header."""
    for axis in range(2, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{axis}", "")).strip().upper() == "FREQ":
            value = header.get(f"CRVAL{axis}")
            return float(value) if isinstance(value, (int, float)) else None
    return None


def file_pipeline(filename: str) -> str:
    """The calibration pipeline the file name states (``_hops_``, ``-casa.``, ...), else ''."""
    tokens = set(re.split(r"[^a-z0-9]+", filename.lower()))
    return next((name for name in PIPELINES if name in tokens), "")


def read_file_epoch(path: str) -> FileEpoch:
    """Source, date, band, frequency and pipeline of one uvfits file; VlbiError saying what is missing."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():  # astropy's verify warnings would add lines to the one-line report
            warnings.simplefilter("ignore")
            header = fits.getheader(path, 0)
    except Exception as exc:  # astropy raises OSError, ValueError, ... for a damaged or foreign file
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise VlbiError(f"{path}: unreadable FITS header ({detail}); download or export the file again") from None
    if not header.get("GROUPS"):
        raise VlbiError(f"{path}: not a uvfits file (no random-groups visibility table); export it as uvfits")
    source = str(header.get("OBJECT", "")).strip()
    date = _header_date(header)
    frequency = _header_frequency(header)
    missing = [name for name, value in (("OBJECT", source), ("DATE-OBS/MJD", date), ("FREQ axis", frequency))
               if not value]
    if missing:
        raise VlbiError(f"{path}: header has no {', no '.join(missing)}; add the row to the sheet by hand")
    name = Path(path).name
    return FileEpoch(path=str(path), source=source, date=date, band=band_name(name, frequency),
                     frequency_hz=frequency, pipeline=file_pipeline(name))


# --------------------------------------------------------------------------------------------------
# epoch ids, duplicates


def identifier(text: str) -> str:
    """``text`` made safe for file names and Snakemake wildcards (letters, digits, ``_.-``)."""
    safe = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9_.-]", "-", text)).strip("-._")
    return safe or "x"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def epochs_from_files(paths: Iterable[str]) -> tuple[list[dict], list[str]]:
    """Sheet rows (sorted by source, date, band) and one line per file left out (unreadable, duplicate)."""
    skipped, found = [], []
    for path in paths:
        try:
            found.append(read_file_epoch(path))
        except VlbiError as exc:
            skipped.append(f"unreadable: {exc}")
    by_epoch: dict[tuple, list[FileEpoch]] = {}
    for item in found:
        by_epoch.setdefault((item.source, item.date, item.band), []).append(item)
    rows, taken = [], {}
    for key in sorted(by_epoch):
        group = by_epoch[key]
        # files of several stated pipelines for one epoch are several epochs, named by their pipeline
        several_pipelines = len({item.pipeline for item in group if item.pipeline}) > 1
        for item in group:
            parts = [item.source, item.date, item.band] + ([item.pipeline or "unnamed"] if several_pipelines else [])
            epoch_id = identifier("_".join(parts))
            if epoch_id in taken:
                first = taken[epoch_id]
                same = " (identical content)" if _sha256(first) == _sha256(item.path) else ""
                skipped.append(f"duplicate: {item.path}: same source, date, band and pipeline as {first}{same} "
                               f"(epoch {epoch_id}); left out, add it by hand with its own id if it is another observation")
                continue
            taken[epoch_id] = item.path
            rows.append({"id": epoch_id, "uvfits": item.path, "source": item.source, "date": item.date,
                         "band": item.band, "pipeline": item.pipeline})
    return rows, skipped


# --------------------------------------------------------------------------------------------------
# the campaign files


def _default_name(patterns: list[str], paths: list[str]) -> str:
    first = patterns[0] if patterns else ""
    if os.path.isdir(first):
        return Path(os.path.abspath(first)).name
    common = os.path.commonpath([os.path.abspath(p) for p in paths]) if paths else ""
    return Path(common).name if common and os.path.isdir(common) else "campaign"


def _settings(like: str | None) -> dict:
    """The starter settings, or those of the campaign ``like`` (checked with the new config at the end)."""
    if like is None:
        return copy.deepcopy(STARTER_SETTINGS)
    try:
        config = yaml.safe_load(Path(like).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise VlbiError(f"--like: cannot read {like} as a campaign YAML ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(config, dict) or "models" not in config:
        raise VlbiError(f"--like: {like} is not a campaign config (no `models:`); give a campaign YAML")
    return {key: config[key] for key in SETTINGS_KEYS if key in config}


def init_campaign(patterns: Iterable[str], out="campaign.yaml", *, sheet_path=None, name: str | None = None,
                  like: str | None = None, overwrite: bool = False) -> InitResult:
    """Write an epoch sheet (one row per readable, distinct file) and a campaign config that names it.

    Paths in both files are as given (relative ones relative to the working directory, where Snakemake
    then runs). ``sheet_path`` defaults to ``<out stem>-epochs.tsv`` beside ``out``; ``like``: a campaign
    whose models, products, sampler and resources are copied (default: the demo campaign's).
    """
    patterns = [str(p) for p in patterns]
    out = Path(out)
    sheet_file = Path(sheet_path) if sheet_path else out.with_name(f"{out.stem}-epochs.tsv")
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise VlbiError(f"--out: {out} should end in .yaml (it is the campaign config)")
    for path in (out, sheet_file):
        if path.exists() and not overwrite:
            raise VlbiError(f"{path} already exists; pass --force to replace it or choose another --out")
    settings = _settings(like)
    paths = find_uvfits(patterns)
    rows, skipped = epochs_from_files(paths)
    if not rows:
        raise VlbiError(f"{', '.join(patterns)}: none of the {len(paths)} file(s) could be used "
                        f"({skipped[0] if skipped else 'no files'}); check the files")
    name = name or _default_name(patterns, paths)
    sources = sorted({row["source"] for row in rows})
    config = {
        "campaign": name,
        "results": f"results/{identifier(name)}",
        "epochs": str(sheet_file),
        **settings,
    }
    sheet.write_epoch_sheet(rows, sheet_file)
    header = (
        f"# Campaign written by `vlbicore campaign init {' '.join(patterns)}` on {datetime.date.today()}:\n"
        f"# {len(rows)} epoch(s) of {len(sources)} source(s) ({', '.join(sources)}), one row each in {sheet_file}\n"
        f"# ({len(skipped)} file(s) left out, listed when it ran). The models, products and sampler settings\n"
        "# are a starting point: edit them (schema: workflow/schemas/config.schema.yaml; docs/workflow.md).\n"
        f"# Run from this directory:  snakemake --configfile {out} --dry-run\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=110))
    # what was written is a valid campaign, sheet and models included (builds each model: imports JAX)
    from vlbicore.survey.campaign import validate_campaign

    validate_campaign(out)
    return InitResult(config=out, sheet=sheet_file, epochs=rows, skipped=skipped)
