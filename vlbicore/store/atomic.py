"""Atomic directory writes: a store appears complete at its path, or not at all.

The directory is written to ``<parent>/.<name>.tmp-<host>-<pid>`` and renamed onto the path only when
complete, so a job killed mid-write never leaves a store that looks finished; an old directory being
replaced is moved aside first and restored if the rename fails. Later writes on the same host remove
temp directories whose writer process is gone. A full disk or quota is one line naming the path.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable

from vlbicore.errors import VlbiError

_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_directory_atomically(path, write: Callable[[Path], None], *, overwrite: bool, what: str) -> Path:
    """Run ``write(temp)`` to fill a fresh temp directory, then rename it onto ``path``; returns ``path``.

    An existing ``path`` is refused unless ``overwrite``; ``what`` names the directory in errors
    (e.g. "fit store"). Nothing is left behind when ``write`` fails."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise VlbiError(f"{path}: {what} already exists; pass --overwrite (overwrite=True) or choose another path")
    if not path.parent.is_dir():
        raise VlbiError(f"{path}: parent directory {path.parent} does not exist; create it first")
    remove_stale_temps(path)
    temp = _temp_path(path, "tmp")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        write(temp)
        _commit(temp, path, overwrite=overwrite)
    except OSError as exc:
        _remove_settled(temp)
        if exc.errno in _NO_SPACE_ERRNOS:
            raise VlbiError(
                f"{path}: no space left to write the {what} ({os.strerror(exc.errno)}); free disk space or "
                "quota and rerun; nothing was written"
            ) from exc
        raise VlbiError(f"{path}: cannot write the {what} ({exc.strerror or exc}); check the directory") from exc
    except BaseException:
        _remove_settled(temp)
        raise
    return path


def _temp_path(path: Path, tag: str) -> Path:
    # host in the name: on a shared file system a pid says nothing about another node's processes
    return path.parent / f".{path.name}.{tag}-{socket.gethostname()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete ``.<name>.tmp-<host>-<pid>`` / ``.old-...`` leftovers of writers on this host that no longer run."""
    removed = []
    host = socket.gethostname()
    for tag in ("tmp", "old"):
        prefix = f".{path.name}.{tag}-{host}-"
        for leftover in path.parent.glob(prefix + "*"):
            pid = leftover.name[len(prefix):]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
    return removed


def _remove_settled(directory: Path, quiet_s: float = 0.1, timeout_s: float = 5.0) -> None:
    """Remove a directory that zarr's I/O thread may still be writing into after a failed write.

    zarr reports the first failed chunk write while sibling writes are still in flight; they can recreate
    files right after a first ``rmtree``. Remove until the directory has stayed absent for ``quiet_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        shutil.rmtree(directory, ignore_errors=True)
        time.sleep(quiet_s)
        if not directory.exists() or time.monotonic() > deadline:
            return


def _commit(temp: Path, path: Path, *, overwrite: bool) -> None:
    """Rename the finished temp store onto ``path``; an old store is moved aside first and restored on failure."""
    if not (overwrite and path.exists()):
        os.rename(temp, path)
        return
    aside = _temp_path(path, "old")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(path, aside)
    try:
        os.rename(temp, path)
    except OSError:
        os.rename(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def write_file_atomically(path, content: bytes, *, overwrite: bool, what: str) -> Path:
    """Write ``content`` to ``<parent>/.<name>.tmp-<host>-<pid>``, flush it to disk and rename it onto
    ``path`` (one file: a table, a summary); returns ``path``. An existing ``path`` is refused unless
    ``overwrite``; ``what`` names the file in errors."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise VlbiError(f"{path}: {what} already exists; pass --overwrite (overwrite=True) or choose another path")
    if not path.parent.is_dir():
        raise VlbiError(f"{path}: parent directory {path.parent} does not exist; create it first")
    host = socket.gethostname()
    for leftover in path.parent.glob(f".{path.name}.tmp-{host}-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)) and leftover.is_file():
            leftover.unlink(missing_ok=True)
    temp = _temp_path(path, "tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        if exc.errno in _NO_SPACE_ERRNOS:
            raise VlbiError(f"{path}: no space left to write the {what} ({os.strerror(exc.errno)}); free disk "
                            "space or quota and rerun; nothing was written") from exc
        raise VlbiError(f"{path}: cannot write the {what} ({exc.strerror or exc}); check the directory") from exc
    return path
