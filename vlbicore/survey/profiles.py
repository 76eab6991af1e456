"""The Snakemake profiles vlbicore ships, and ``vlbicore profile install``: a profile under its name.

``snakemake --profile NAME`` looks for a directory ``NAME`` (holding ``config.yaml``) in the current
directory, then in ``$XDG_CONFIG_HOME/snakemake/`` (default ``~/.config/snakemake/``), then in
``/etc/xdg/snakemake/`` (``snakemake/cli.py``, ``get_profile_dir``; the directories come from
``platformdirs.AppDirs("snakemake", "snakemake")``, asked here the same way). Installing links (or
copies) the shipped profile into the user's (or, with ``site``, the machine's) directory, so that
``snakemake --profile gpu-cluster`` works from the repository root, or any campaign directory, as
written.

The profiles are package data (``vlbicore/profiles/<name>/config.yaml``; ``profiles/gpu-cluster`` in the
repository links there), so an installed vlbicore installs them too. A link follows the package: an
upgrade or an edit of the checkout reaches the installed profile at once; a copy (``copy=True``) stays
as it was, to be edited for one site.
"""
from __future__ import annotations

import datetime
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vlbicore.errors import VlbiError

PROFILE_ROOT = Path(__file__).resolve().parents[1] / "profiles"
DEFAULT_PROFILE = "gpu-cluster"


@dataclass(frozen=True)
class InstalledProfile:
    """Where a profile was installed, from where, and what was done (``linked``, ``copied``, ``unchanged``),
    with the path an existing profile was moved to first (None when nothing was there)."""

    name: str
    path: Path
    source: Path
    action: str
    backup: Path | None = None


def shipped_profiles() -> list[str]:
    return sorted(p.name for p in PROFILE_ROOT.iterdir() if (p / "config.yaml").is_file())


def shipped_profile(name: str) -> Path:
    path = PROFILE_ROOT / name
    if not (path / "config.yaml").is_file():
        raise VlbiError(f"profile {name!r}: not shipped with vlbicore; choose one of {', '.join(shipped_profiles())}")
    return path


def snakemake_profile_dirs() -> tuple[Path, Path]:
    """(user, site) directories where ``snakemake --profile NAME`` looks for NAME after the current one."""
    from platformdirs import AppDirs

    dirs = AppDirs("snakemake", "snakemake")
    return Path(dirs.user_config_dir), Path(dirs.site_config_dir)


def _same_link(path: Path, source: Path) -> bool:
    return path.is_symlink() and Path(os.path.realpath(path)) == Path(os.path.realpath(source))


def install_profile(name: str = DEFAULT_PROFILE, *, directory=None, site: bool = False, copy: bool = False,
                    force: bool = False) -> InstalledProfile:
    """Make ``snakemake --profile <name>`` find the shipped profile: a link (or a copy) named ``name`` in
    ``directory`` (default: Snakemake's user profile directory; ``site``: the machine-wide one).

    An existing profile of that name is left alone unless ``force``; then it is moved aside to
    ``<name>.bak-<time>`` (never deleted), so a site's edited copy is not lost.
    """
    source = shipped_profile(name)
    user_dir, site_dir = snakemake_profile_dirs()
    root = Path(directory) if directory else (site_dir if site else user_dir)
    target = root / name
    if _same_link(target, source) and not copy:
        return InstalledProfile(name, target, source, "unchanged")
    backup = None
    if target.exists() or target.is_symlink():
        if not force:
            what = f"a link to {os.readlink(target)}" if target.is_symlink() else "a profile"
            raise VlbiError(f"{target}: already holds {what}; pass --force to move it aside and install "
                            f"vlbicore's {name}, or --dir to install elsewhere")
        backup = target.with_name(f"{name}.bak-{datetime.datetime.now():%Y%m%d%H%M%S}")
        target.rename(backup)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copytree(source, target, symlinks=False)
        else:
            target.symlink_to(source, target_is_directory=True)
    except OSError as exc:
        hint = " (a machine-wide install needs root)" if site else ""
        raise VlbiError(f"{target}: cannot install the profile ({exc.strerror}){hint}; choose a writable --dir") from None
    return InstalledProfile(name, target, source, "copied" if copy else "linked", backup)
