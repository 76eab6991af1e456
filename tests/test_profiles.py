"""`vlbicore profile install`: the shipped profile where `snakemake --profile gpu-cluster` looks for it.

Installs go into a temporary ``XDG_CONFIG_HOME`` (never the real home). Snakemake itself then resolves
the name, from a campaign directory outside the repository, in a dry run; the real SLURM run by name is
tests/test_workflow_slurm.py.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, m87_file
from vlbicore import cli
from vlbicore.errors import VlbiError
from vlbicore.survey.profiles import PROFILE_ROOT, install_profile, shipped_profiles, snakemake_profile_dirs


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_the_repository_profile_is_the_shipped_one():
    assert shipped_profiles() == ["gpu-cluster"]
    assert (REPO / "profiles" / "gpu-cluster").resolve() == (PROFILE_ROOT / "gpu-cluster").resolve()


def test_install_links_into_snakemakes_user_directory_and_is_idempotent(xdg, capsys):
    assert snakemake_profile_dirs()[0] == xdg / "snakemake"  # the directory Snakemake searches second
    assert cli.main(["profile", "install"]) == 0
    target = xdg / "snakemake" / "gpu-cluster"
    assert target.is_symlink() and (target / "config.yaml").read_text() == (PROFILE_ROOT / "gpu-cluster" / "config.yaml").read_text()
    assert "linked to" in capsys.readouterr().out
    assert install_profile().action == "unchanged"


def test_an_existing_profile_is_kept_unless_forced_then_moved_aside(xdg):
    target = xdg / "snakemake" / "gpu-cluster"
    target.mkdir(parents=True)
    (target / "config.yaml").write_text("jobs: 3\n")
    with pytest.raises(VlbiError, match="already holds a profile; pass --force"):
        install_profile()
    installed = install_profile(force=True, copy=True)
    assert installed.action == "copied" and not target.is_symlink()
    assert (installed.backup / "config.yaml").read_text() == "jobs: 3\n"  # the site's edit survives
    with pytest.raises(VlbiError, match="not shipped with vlbicore"):
        install_profile("gpu-clustre")


def test_snakemake_finds_the_installed_profile_by_name_from_a_campaign_directory(xdg, tmp_path):
    install_profile()
    campaign = yaml.safe_load((REPO / "config" / "test-campaign.yaml").read_text())
    campaign["epochs"] = [dict(campaign["epochs"][0], uvfits=str(m87_file(100, "lo")))]
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(campaign))
    env = {**os.environ, "XDG_CONFIG_HOME": str(xdg)}
    result = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "gpu-cluster", "--snakefile",
                             str(REPO / "Snakefile"), "--configfile", "campaign.yaml", "--dry-run"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Using profiles gpu-cluster and workflow specific profile" in output
    fit_jobs = [block for block in output.split("\n\n") if "rule fit:" in block]
    assert fit_jobs and all("gpu=1" in job and "cpus_per_gpu=4" in job for job in fit_jobs)  # the profile's fit resources
