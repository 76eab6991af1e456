"""``vlbicore status RESULTS_DIR``: one screen of where a campaign stands, from its stores and Snakemake's records.

What it reads, and nothing else (no DAG is built, so it answers in seconds for thousands of fits):

* the fit stores ``RESULTS_DIR/fits/<epoch>/<model>.zarr`` — only their root attributes: converged,
  adequate and multimodal (each shown as n/a where a store predates it), and the reasons;
* Snakemake's records in the working directory's ``.snakemake/``: ``metadata/`` (for each finished
  output, its inputs with their checksums and the job's end time: an output is **stale** when an input
  has changed since, directly or through the inputs' own records, the way Snakemake's own rerun check
  compares checksums of inputs newer than the output), ``incomplete/`` (jobs started and not finished:
  running now, or killed) and ``log/*.snakemake.log`` (``Error in rule ...`` blocks: a job **failed**
  when its output is still missing; the message is the last error line of the job's own log);
* with ``configfile``, the campaign's epochs × models, so fits never run are counted too.

Only the ``file`` persistence backend (Snakemake's default) is read; with another one the stale and
started columns say so. Parameter or code changes (``--rerun-triggers params code``) are not tracked
here: ``snakemake --dry-run`` lists those.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from vlbicore.errors import VlbiError

STORE_PATTERN = "fits/*/*.zarr"  # the workflow's layout: RESULTS/fits/<epoch>/<model>.zarr
MAX_RECORD_NAME = 255  # NAME_MAX; Snakemake splits longer base64 record names into directories


@dataclasses.dataclass
class FitState:
    """One fit store: its verdicts (None = not recorded by the store) and whether it is stale."""

    epoch: str
    model: str
    path: Path
    converged: bool | None
    adequate: bool | None
    multimodal: bool | None
    reasons: str = ""
    adequacy_reasons: str = ""
    stale: str = ""  # why, when an input changed since the fit
    incomplete: bool = False  # Snakemake's incomplete marker is set: killed mid-write or running


@dataclasses.dataclass
class FailedJob:
    rule: str
    output: str
    log: str
    message: str


@dataclasses.dataclass
class CampaignStatus:
    results_dir: Path
    workdir: Path
    fits: list[FitState]
    unreadable: list[tuple[Path, str]]
    failed: list[FailedJob]
    started: list[str]  # outputs with Snakemake's incomplete marker and no output yet
    not_run: list[tuple[str, str]] | None  # expected (epoch, model) without store or record; None: unknown
    records_readable: bool  # Snakemake's file-backend records were found
    running: bool  # Snakemake holds locks in the working directory now

    def counts(self) -> dict[str, int]:
        return {
            "done": len(self.fits),
            "failed": len(self.failed),
            "not converged": sum(f.converged is False for f in self.fits),
            "not adequate": sum(f.adequate is False for f in self.fits),
            "multimodal": sum(bool(f.multimodal) for f in self.fits),
            "stale": sum(bool(f.stale) for f in self.fits),
            "unreadable": len(self.unreadable),
            "started": len(self.started) + sum(f.incomplete for f in self.fits),
            "not run": len(self.not_run) if self.not_run is not None else 0,
        }


# --------------------------------------------------------------------------------------------------
# the stores


def _json(value: Any, default: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return default
    return default if value is None else value


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def read_fit_state(path: Path) -> FitState:
    """A store's verdicts from its root attributes alone (Zarr metadata, not the arrays)."""
    import zarr

    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception as exc:  # zarr raises several types for a damaged or foreign directory
        raise VlbiError(f"{path}: not a readable fit store ({type(exc).__name__}); rerun the fit") from None
    if "vlbicore_schema" not in attrs:
        raise VlbiError(f"{path}: no vlbicore_schema attribute, not a vlbicore fit store")
    convergence = _json(attrs.get("convergence"), {}) or {}
    adequacy = _json(attrs.get("adequacy"), {}) or {}
    return FitState(
        epoch=str(attrs.get("epoch") or path.parent.name),
        model=str(attrs.get("model_name") or path.stem),
        path=path,
        converged=_optional_bool(attrs.get("converged")),
        adequate=_optional_bool(attrs.get("adequate")),
        multimodal=_optional_bool(attrs.get("multimodal")),
        reasons="; ".join(map(str, convergence.get("reasons", []))) if isinstance(convergence, dict) else "",
        adequacy_reasons="; ".join(map(str, adequacy.get("reasons", []))) if isinstance(adequacy, dict) else "",
    )


# --------------------------------------------------------------------------------------------------
# Snakemake's records (file persistence backend)


def record_path(root: Path, key: str) -> Path:
    """Where Snakemake's file backend keeps the record of ``key`` (``persistence/file.py``, ``_record_path``)."""
    name = base64.urlsafe_b64encode(key.encode()).decode()
    parts = [name[i: i + MAX_RECORD_NAME - 1] for i in range(0, len(name), MAX_RECORD_NAME - 1)]
    return root.joinpath(*(["@" + part for part in parts[:-1]] + [parts[-1]]))


class SnakemakeRecords:
    """The metadata records of finished outputs and the incomplete markers, keyed as Snakemake keys them
    (paths relative to the working directory, as the rules wrote them)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.metadata = workdir / ".snakemake" / "metadata"
        self.incomplete_dir = workdir / ".snakemake" / "incomplete"
        self.readable = self.metadata.is_dir()
        self._stale: dict[str, str] = {}

    def key(self, path: Path) -> str:
        """Snakemake's key of an output: its path as the rule wrote it, relative to the working directory
        (or absolute, for a `results:` directory given as an absolute path)."""
        relative = os.path.relpath(path, self.workdir)
        if relative.startswith("..") or (not self.record(relative) and self.record(str(path))):
            return str(path)
        return relative

    def record(self, key: str) -> dict | None:
        path = record_path(self.metadata, key)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def incomplete(self, key: str) -> bool:
        return record_path(self.incomplete_dir, key).exists()

    def incomplete_keys(self) -> list[str]:
        if not self.incomplete_dir.is_dir():
            return []
        keys = []
        for path in self.incomplete_dir.rglob("*"):
            if path.is_file() and path.name != "migration_underway":
                relative = path.relative_to(self.incomplete_dir).parts
                encoded = "".join(part.lstrip("@") for part in relative)
                try:
                    keys.append(base64.urlsafe_b64decode(encoded.encode()).decode())
                except (ValueError, UnicodeDecodeError):
                    continue
        return keys

    def why_stale(self, key: str) -> str:
        """Why the output ``key`` is out of date with its inputs ('' when it is not, or is not recorded)."""
        if key not in self._stale:
            self._stale[key] = ""  # a cycle cannot occur in a DAG, but never recurse forever
            self._stale[key] = self._why_stale(key)
        return self._stale[key]

    def _why_stale(self, key: str) -> str:
        record = self.record(key)
        if not record:
            return ""
        ended = float(record.get("endtime") or 0.0)
        checksums = record.get("input_checksums") or {}
        for name in record.get("input") or []:
            path = self.workdir / name
            if not path.exists():
                return f"input {name} is gone"
            if path.stat().st_mtime > ended:  # newer: changed unless its bytes are the recorded ones
                recorded = checksums.get(name)
                if recorded is None or str(recorded).split(":")[-1] != _sha256(path):
                    return f"{name} changed since {key} was made"
            upstream = self.why_stale(name)  # e.g. the uvfits file behind a prepared observation
            if upstream:
                return upstream
        return ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():
        return ""  # Snakemake records no checksum of a directory either
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_ERROR_BLOCK = re.compile(r"^Error in rule (\S+?):\n((?:[ \t]+.*\n?)*)", re.MULTILINE)


def _job_log_message(workdir: Path, logs: list[str]) -> str:
    """The last error line of a job's own log, else its last line ('' without a log)."""
    for name in logs:
        path = Path(name) if os.path.isabs(name) else workdir / name
        try:
            lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            continue
        errors = [line for line in lines if re.search(r"error|exception|killed|cancelled", line, re.IGNORECASE)]
        if errors or lines:
            return (errors or lines)[-1][:200]
    return ""


def failed_jobs(workdir: Path) -> list[FailedJob]:
    """Jobs a Snakemake run reported as failed whose output is still missing (one per output, latest run)."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    failed: dict[str, FailedJob] = {}
    for log in logs:
        text = log.read_text(errors="replace")
        for match in _ERROR_BLOCK.finditer(text):
            fields = dict(re.findall(r"^[ \t]+(\w+): (.*)$", match.group(2), re.MULTILINE))
            outputs = [o.strip() for o in fields.get("output", "").split(",") if o.strip()]
            job_logs = [entry.strip() for entry in fields.get("log", "").split("(")[0].split(",") if entry.strip()]
            # Snakemake's own message (e.g. the SLURM state) where the job's log says nothing
            message = fields.get("message", "").strip()
            for output in outputs:
                failed[output] = FailedJob(match.group(1), output, ", ".join(job_logs), "" if message == "None" else message)
    still = []
    for output, job in failed.items():
        if not (workdir / output).exists():
            job.message = _job_log_message(workdir, job.log.split(", ") if job.log else []) or job.message[:200]
            still.append(job)
    return still


# --------------------------------------------------------------------------------------------------
# putting it together


def _find_workdir(results_dir: Path) -> Path:
    """The Snakemake working directory: the current one if it has .snakemake/, else the nearest parent of
    the results directory that has one, else the current one."""
    candidates = [Path.cwd(), *results_dir.resolve().parents]
    return next((c for c in candidates if (c / ".snakemake").is_dir()), Path.cwd())


def _expected_fits(configfile: Path, workdir: Path) -> list[tuple[str, str]]:
    import yaml

    from vlbicore.survey.sheet import campaign_epochs, is_sheet

    try:
        config = yaml.safe_load(configfile.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise VlbiError(f"--configfile: cannot read {configfile} ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(config, dict) or not config.get("epochs") or not config.get("models"):
        raise VlbiError(f"--configfile: {configfile} has no epochs and models; give the campaign's config")
    if is_sheet(config["epochs"]) and not os.path.isabs(config["epochs"]):
        config = {**config, "epochs": str(workdir / config["epochs"])}  # relative to Snakemake's directory
    return [(e["id"], str(m)) for e in campaign_epochs(config, str(configfile)) for m in config["models"]]


def campaign_status(results_dir, *, workdir=None, configfile=None) -> CampaignStatus:
    """Read the stores under ``results_dir`` and Snakemake's records of the working directory."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise VlbiError(f"{results_dir}: no such results directory; give the campaign's `results:` directory")
    workdir = Path(workdir).resolve() if workdir else _find_workdir(results_dir)
    records = SnakemakeRecords(workdir)
    fits, unreadable = [], []
    for store in sorted(results_dir.glob(STORE_PATTERN)):
        try:
            state = read_fit_state(store)
        except VlbiError as exc:
            unreadable.append((store, str(exc)))
            continue
        key = records.key(store.resolve())
        state.stale = records.why_stale(key) if records.readable else ""
        state.incomplete = records.readable and records.incomplete(key)
        fits.append(state)
    seen_paths = {records.key(f.path.resolve()) for f in fits} | {records.key(p.resolve()) for p, _ in unreadable}
    started = [key for key in records.incomplete_keys() if key not in seen_paths and not (workdir / key).exists()]
    failed = failed_jobs(workdir)
    not_run = None
    if configfile:
        have = {(f.epoch, f.model) for f in fits}
        failed_outputs = {job.output for job in failed}
        not_run = []
        for epoch, model in _expected_fits(Path(configfile), workdir):
            store_key = records.key((results_dir / "fits" / epoch / f"{model}.zarr").resolve())
            if (epoch, model) not in have and store_key not in failed_outputs and store_key not in started:
                not_run.append((epoch, model))
    running = any((workdir / ".snakemake" / "locks").glob("*.lock"))
    return CampaignStatus(results_dir, workdir, fits, unreadable, failed, started, not_run, records.readable,
                          running)


def _verdict_note(fits: list[FitState], attribute: str) -> str:
    unknown = sum(getattr(f, attribute) is None for f in fits)
    return f"({unknown} store(s) without this verdict: n/a)" if unknown else ""


def format_status(status: CampaignStatus, *, limit: int | None = 5) -> str:
    """The one-screen text: a count per state, then the first ``limit`` fits of each problem state."""
    counts = status.counts()
    fits = status.fits
    notes = {
        "done": f"stores in {status.results_dir}",
        "failed": "jobs whose last run failed (message from their log)",
        "not converged": _verdict_note(fits, "converged"),
        "not adequate": _verdict_note(fits, "adequate"),
        "multimodal": _verdict_note(fits, "multimodal"),
        "stale": "an input changed since the fit: `snakemake` reruns it" if status.records_readable
                 else "unknown: no Snakemake file records in " + str(status.workdir / ".snakemake"),
        "unreadable": "damaged or foreign stores",
        "started": "started, not finished: " + ("Snakemake is running" if status.running else "killed (rerun `snakemake`)"),
        "not run": "expected by the config, never run" if status.not_run is not None else "(give --configfile to count)",
    }
    lines = [f"vlbicore status: {status.results_dir} (Snakemake directory {status.workdir})"]
    lines += [f"{name:<14}{count:>6}   {notes[name]}".rstrip() for name, count in counts.items()]

    def section(title: str, items: list[str]) -> None:
        if not items:
            return
        shown = items if limit is None else items[:limit]
        lines.append(f"{title}:")
        lines.extend(f"  {item}" for item in shown)
        if len(items) > len(shown):
            lines.append(f"  ... and {len(items) - len(shown)} more (--all lists every one)")

    section("failed", [f"{job.rule} {job.output}: {job.message or 'no message'}" + (f" [{job.log}]" if job.log else "")
                       for job in status.failed])
    section("not converged", [f"{f.epoch}/{f.model}: {f.reasons or 'no reason stored'}" for f in fits if f.converged is False])
    section("not adequate", [f"{f.epoch}/{f.model}: {f.adequacy_reasons or 'no reason stored'}" for f in fits if f.adequate is False])
    section("multimodal", [f"{f.epoch}/{f.model}" for f in fits if f.multimodal])
    section("stale", [f"{f.epoch}/{f.model}: {f.stale}" for f in fits if f.stale])
    section("unreadable", [message for _, message in status.unreadable])
    section("started", status.started + [str(f.path) for f in fits if f.incomplete])
    section("not run", [f"{epoch}/{model}" for epoch, model in status.not_run or []])
    return "\n".join(lines)
