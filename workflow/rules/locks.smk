"""Recovery from a killed run's stale locks, so that the next plain ``snakemake`` run just continues.

A Snakemake run killed with SIGKILL (OOM killer, ``scancel``, power loss) cannot remove its lock files
from ``.snakemake/locks/``, and the next run stops with "Directory cannot be locked" until someone runs
``snakemake --unlock`` (Snakemake records no owner in its locks). Here each run, once it holds its locks,
records them (path, inode, mtime) with its host, pid and process start time; a later run started on the
same host removes exactly those lock files when that process no longer exists. Locks of a live run, of
another host, or lock files re-created since (other inode or mtime) are never touched.

Which lock files are this run's is found with public means only: the lock directory is listed when the
Snakefile is parsed (before Snakemake locks) and again in ``onstart`` (after); the files that appeared in
between, written since this process started, are ours. (A second run started in the same directory
within the same second could have its locks recorded too; it would then lose them only if this run is
killed while it still runs, and Snakemake refuses overlapping runs anyway.)

Outputs of the killed job need nothing from us: the fit store is written to a temporary path and renamed
when complete, and Snakemake's own incomplete markers cover outputs that do exist.
"""
import contextlib
import json
import os
import pathlib
import socket
import sys

import psutil
from snakemake_interface_executor_plugins.settings import ExecMode

LOCK_OWNERS = pathlib.Path(".snakemake") / "vlbicore-lock-owners"
LOCK_DIR = pathlib.Path(".snakemake") / "locks"


def current_lockfiles() -> set:
    """The lock files Snakemake has written in this directory (``<n>.input.lock``, ``<n>.output.lock``)."""
    return {str(path) for path in LOCK_DIR.glob("*.lock")} if LOCK_DIR.is_dir() else set()


def lockfiles_written_since(before: set, started: float) -> list:
    """Lock files that were not there ``before`` and were written after ``started`` (epoch seconds)."""
    out = []
    for path in sorted(current_lockfiles() - before):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_mtime >= started - 1.0:
                out.append(path)
    return out


def _same_process_alive(pid: int, create_time: float) -> bool:
    """True when ``pid`` runs and is the process that started at ``create_time`` (pids are reused).

    A zombie (killed, not yet reaped by its parent) counts as gone.
    """
    try:
        process = psutil.Process(pid)
        same = abs(process.create_time() - create_time) < 1.0
        return same and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _lockfile_identity(path: str):
    stat = os.stat(path)
    return [stat.st_ino, stat.st_mtime_ns]


def record_own_locks(owner_dir: pathlib.Path, lockfiles: list) -> pathlib.Path:
    """Write this run's owner record; returns its path (removed again when the run ends)."""
    owner_dir.mkdir(parents=True, exist_ok=True)
    me = psutil.Process()
    record = {
        "host": socket.gethostname(),
        "pid": me.pid,
        "create_time": me.create_time(),
        "locks": {str(path): _lockfile_identity(path) for path in lockfiles if os.path.exists(path)},
    }
    path = owner_dir / f"{socket.gethostname()}-{me.pid}.json"
    path.write_text(json.dumps(record))
    return path


def remove_stale_locks(owner_dir: pathlib.Path) -> list:
    """Remove the lock files of recorded runs on this host whose process is gone; returns them."""
    removed = []
    for record_path in sorted(owner_dir.glob("*.json")):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("host") != socket.gethostname():
            continue
        if _same_process_alive(record["pid"], record["create_time"]):
            continue
        for lockfile, identity in record["locks"].items():
            with contextlib.suppress(FileNotFoundError):
                if _lockfile_identity(lockfile) == identity:
                    os.remove(lockfile)
                    removed.append(lockfile)
        record_path.unlink(missing_ok=True)
    return removed


# Only the main Snakemake process manages locks (cluster jobs and subprocesses re-parse this file).
_MAIN_PROCESS = workflow.exec_mode == ExecMode.DEFAULT

if _MAIN_PROCESS:
    for _lockfile in remove_stale_locks(LOCK_OWNERS):
        print(f"vlbicore: removed stale lock {_lockfile} of a killed run", file=sys.stderr)

_OWN_RECORD = []
_LOCKS_BEFORE = current_lockfiles() if _MAIN_PROCESS else set()


onstart:
    # runs once the locks are held (never in dry runs)
    if _MAIN_PROCESS:
        _lockfiles = lockfiles_written_since(_LOCKS_BEFORE, psutil.Process().create_time())
        _OWN_RECORD.append(record_own_locks(LOCK_OWNERS, _lockfiles))


def _forget_own_locks():
    for path in _OWN_RECORD:
        path.unlink(missing_ok=True)


onsuccess:
    _forget_own_locks()


onerror:
    _forget_own_locks()
