"""A non-editable install works on its own: package data (station tables, schema) ship inside the wheel,
and nothing reads the repository tree. vlbicore is built and installed (``pip install --target``, no
dependencies: the test environment has them) and run from a folder outside the repository."""
import os
import subprocess
import sys

import pytest
import xarray as xr

from conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO)], check=True, capture_output=True, timeout=300)
    return target


def run(installed, cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(installed), "VLBICORE_JAX_CACHE": "off"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "vlbicore", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_simulate_and_fit_from_a_non_editable_install(installed, tmp_path):
    where = subprocess.run([sys.executable, "-c", "import vlbicore; print(vlbicore.__file__)"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(installed)), where.stdout  # not the repository's copy
    sim = run(installed, tmp_path, "simulate", "--model", "ring", "--param", "F0=0.6", "--param", "d=42",
              "--array", "EHT2017_m87", "--out", "ring.uvfits")
    assert sim.returncode == 0, sim.stderr
    fit = run(installed, tmp_path, "fit", "ring.uvfits", "--model", "ring", "--products", "amp,cphase", "--chains", 2,
              "--warmup", 100, "--samples", 100, "--starts", 16, "--out", "ring.zarr", "--quiet")
    assert fit.returncode == 0, fit.stderr
    d = xr.open_datatree(tmp_path / "ring.zarr", engine="zarr")["posterior"].ds["d"]
    assert 30 < float(d.median()) < 55


def test_the_cluster_profile_ships_with_a_non_editable_install(installed, tmp_path):
    # `vlbicore profile install` needs no repository: the profile is package data
    done = run(installed, tmp_path, "profile", "install", "--dir", tmp_path / "profiles")
    assert done.returncode == 0, done.stderr
    linked = tmp_path / "profiles" / "gpu-cluster" / "config.yaml"
    assert linked.is_file() and str(linked.resolve()).startswith(str(installed))
    assert "executor: slurm" in linked.read_text()
