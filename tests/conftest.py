"""Test-suite set-up: 4 forced CPU host devices (multi-device code paths) and float64 JAX.

XLA_FLAGS must be set before JAX initialises its backend, hence at import time of this file.
"""
import os
import pathlib

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "eht-m87-2017"
ARRAYS = REPO / "vlbicore" / "data" / "arrays"  # EHT station tables, shipped as package data


def m87_file(day: int, band: str) -> pathlib.Path:
    """Path of a shipped EHT M87* 2017 uvfits file (day of year 95, 96, 100, 101; band 'lo'/'hi')."""
    return DATA / f"SR1_M87_2017_{day:03d}_{band}_hops_netcal_StokesI.uvfits"


@pytest.fixture(scope="session")
def repo() -> pathlib.Path:
    return REPO
