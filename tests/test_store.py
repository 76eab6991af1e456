"""Fit store: round trip, readers without vlbicore, atomic writes (kill, disk full, overwrite), summaries."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from vlbicore import SCHEMA_VERSION
from vlbicore.errors import VlbiError
from vlbicore.statistics import draw_statistics, hdi
from vlbicore.store import format_summary, open_fit_store, summary_table, write_fit_store
from vlbicore.testing import synthetic_fit_inputs

PYTHON = sys.executable


@pytest.fixture(scope="module")
def fit_inputs():
    return synthetic_fit_inputs(1, n_draws=300)


@pytest.fixture(scope="module")
def store(tmp_path_factory, fit_inputs):
    return write_fit_store(tmp_path_factory.mktemp("store") / "fit.zarr", **fit_inputs)


def test_round_trip_keeps_groups_dims_values_and_attrs(store, fit_inputs):
    tree = open_fit_store(store)
    assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data", "diagnostics"} <= set(tree.children)
    post = tree["posterior"].dataset
    assert post["d"].dims == ("chain", "draw")
    np.testing.assert_array_equal(post["offset"].values, fit_inputs["posterior"]["offset"])
    ll = tree["log_likelihood"].dataset
    assert ll["cphase"].dims == ("chain", "draw", "cphase_dim")
    np.testing.assert_array_equal(ll["lcamp"].values, fit_inputs["log_likelihood"]["lcamp"])
    obs = tree["observed_data"].dataset
    assert list(obs["cphase_label"].values) == fit_inputs["observed_data"]["cphase"]["label"]
    np.testing.assert_array_equal(obs["uv_u"].values, fit_inputs["uv"][0])
    diag = tree["diagnostics"].dataset
    assert list(diag["parameter"].values) == ["d", "alpha", "offset"]
    assert diag["mode_chains"].values.tolist() == [4]
    assert tree.attrs["vlbicore_schema"] == SCHEMA_VERSION
    assert json.loads(tree.attrs["model_spec"]) == {"type": "ring"}  # dicts stored as JSON strings
    assert json.loads(tree.attrs["products"]) == ["cphase", "lcamp"]
    assert tree.attrs["converged"] is True


def test_readable_by_xarray_and_arviz_without_vlbicore(store, fit_inputs):
    script = textwrap.dedent(
        f"""
        import sys, json, xarray as xr, arviz_base
        tree = xr.open_datatree({str(store)!r}, engine="zarr")
        via_arviz = arviz_base.convert_to_datatree({str(store)!r}, engine="zarr")
        assert "vlbicore" not in sys.modules
        print(json.dumps({{
            "groups": sorted(via_arviz.children),
            "mean_offset": float(via_arviz["posterior"]["offset"].mean()),
            "ll_shape": list(tree["log_likelihood"]["cphase"].shape),
        }}))
        """
    )
    out = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"posterior", "log_likelihood", "observed_data", "sample_stats"} <= set(seen["groups"])
    assert seen["mean_offset"] == pytest.approx(fit_inputs["posterior"]["offset"].mean(), rel=1e-12)
    assert seen["ll_shape"] == [4, 300, 30]


def test_summary_table_matches_numpy(store, fit_inputs):
    table = summary_table(store)
    d = fit_inputs["posterior"]["d"].ravel()
    assert table.loc["d", "mean"] == pytest.approx(d.mean(), rel=1e-12)
    assert table.loc["d", "sd"] == pytest.approx(d.std(ddof=1), rel=1e-12)
    assert table.loc["d", "median"] == pytest.approx(np.median(d), rel=1e-12)
    inside = np.mean((d >= table.loc["d", "hdi_low"]) & (d <= table.loc["d", "hdi_high"]))
    assert 0.935 <= inside <= 0.95
    assert table.loc["offset", "rhat"] == 1.0 and table.loc["offset", "ess_bulk"] == pytest.approx(960)
    assert table.attrs["converged"] is True
    assert set(table.attrs["reduced_chi2"]) == {"cphase", "lcamp"}
    assert table.attrs["divergences"] == 0


def test_hdi_of_a_normal_sample_is_narrowest_94_percent():
    x = np.random.default_rng(3).normal(2.0, 1.5, 200_000)
    low, high = hdi(x)
    # the length is flat to first order around the optimum, so its width is sharp and its position is not
    assert high - low == pytest.approx(2 * 1.8808 * 1.5, rel=5e-3)
    assert (low + high) / 2 == pytest.approx(2.0, abs=0.1)
    assert np.mean((x >= low) & (x <= high)) == pytest.approx(0.94, abs=1e-4)
    skewed = np.random.default_rng(4).exponential(1.0, 200_000)
    assert hdi(skewed)[0] == pytest.approx(0.0, abs=1e-3)  # a narrowest interval hugs the mode at 0


@pytest.mark.parametrize("centre, period", [(np.pi, 2 * np.pi), (-np.pi + 0.05, 2 * np.pi), (0.02, np.pi), (4.7, 2 * np.pi)])
def test_angles_straddling_the_wrap_get_one_contiguous_interval(centre, period):
    """A brightness PA near ±π (or an axis PA near 0/π) is one narrow posterior, not one spanning the circle."""
    rng = np.random.default_rng(5)
    raw = centre + rng.normal(0.0, 0.1, 100_000)
    low_edge = -np.pi if period == 2 * np.pi and centre < 4 else 0.0
    wrapped = (raw - low_edge) % period + low_edge  # as the sampler / arctan2 report them
    stats = draw_statistics(wrapped, period=period)
    assert stats["sd"] == pytest.approx(0.1, rel=0.02)
    assert stats["hdi_high"] - stats["hdi_low"] == pytest.approx(2 * 1.8808 * 0.1, rel=0.02)
    # the same angle as the truth, on the branch of the draws' own range
    assert np.cos(2 * np.pi * (stats["median"] - centre) / period) == pytest.approx(1.0, abs=1e-3)
    assert wrapped.min() <= stats["median"] <= wrapped.min() + period
    linear = draw_statistics(wrapped)
    if np.ptp(wrapped) > period / 2:  # the wrap really split the draws: linear summaries are wrong there
        assert linear["sd"] > 1.0


def test_format_summary_reports_verdict_chi2_and_modes(tmp_path):
    path = write_fit_store(tmp_path / "bad.zarr", **synthetic_fit_inputs(2, converged=False, n_draws=50))
    text = format_summary(path)
    assert "converged: NO - R-hat 1.200 > 1.01 (worst: d)" in text
    assert "chi2 cphase n=30: chi2/N" in text and "chi2/(N-p)" in text and "at the best draw" in text
    assert "modes found: 1" in text
    assert "hdi_low" in text and "offset" in text


def test_existing_store_is_refused_then_replaced_with_overwrite(tmp_path):
    path = write_fit_store(tmp_path / "fit.zarr", **synthetic_fit_inputs(1, n_draws=20))
    with pytest.raises(VlbiError, match="already exists"):
        write_fit_store(path, **synthetic_fit_inputs(2, n_draws=20))
    replacement = synthetic_fit_inputs(2, n_draws=30)
    write_fit_store(path, **replacement, overwrite=True)
    np.testing.assert_array_equal(open_fit_store(path)["posterior"]["d"].values, replacement["posterior"]["d"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.zarr"]  # nothing left aside


def test_corrupt_missing_and_foreign_stores_raise_naming_the_path(tmp_path, store):
    with pytest.raises(VlbiError, match="not found"):
        open_fit_store(tmp_path / "absent.zarr")
    junk = tmp_path / "junk.zarr"
    junk.mkdir()
    (junk / ".zgroup").write_text("{not json")
    with pytest.raises(VlbiError, match=r"junk\.zarr: not a readable Zarr fit store"):
        open_fit_store(junk)
    old = write_fit_store(tmp_path / "old.zarr", **{**synthetic_fit_inputs(1, n_draws=10)})
    _set_root_attr(old, "vlbicore_schema", 0)
    with pytest.raises(VlbiError, match=r"old\.zarr: store schema 0 is not the supported version"):
        open_fit_store(old)


def _set_root_attr(path: pathlib.Path, key, value):
    """Edit a root attribute in place (both .zattrs and the consolidated copy), as an older writer would have."""
    for name in (".zattrs", ".zmetadata"):
        meta = json.loads((path / name).read_text())
        target = meta if name == ".zattrs" else meta["metadata"][".zattrs"]
        target[key] = value
        (path / name).write_text(json.dumps(meta))


KILL_WRITER = """
import sys
from vlbicore.store import write_fit_store
from vlbicore.testing import synthetic_fit_inputs
inputs = synthetic_fit_inputs(0, n_draws=2000, n_cphase=500, n_lcamp=500)  # 128 MB: writing takes a while
print("ready", flush=True)
write_fit_store(sys.argv[1], **inputs)
"""


def test_killed_writer_leaves_no_store_and_next_write_cleans_up(tmp_path):
    path = tmp_path / "fit.zarr"
    proc = subprocess.Popen([PYTHON, "-c", KILL_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    temp = tmp_path / f".fit.zarr.tmp-{socket.gethostname()}-{proc.pid}"
    deadline = time.monotonic() + 60
    while not (temp.exists() and any(temp.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)  # mid-write: the temp tree exists, the store is not finished
    proc.wait(timeout=30)
    assert temp.exists(), "the writer was killed before it started writing"
    assert not path.exists()
    write_fit_store(path, **synthetic_fit_inputs(1, n_draws=10))  # dead writer's temp is removed
    assert not temp.exists()
    assert open_fit_store(path)["posterior"].sizes["draw"] == 10


DISK_FULL_WRITER = """
import resource, signal, sys
from vlbicore.errors import VlbiError
from vlbicore.store import write_fit_store
from vlbicore.testing import synthetic_fit_inputs
inputs = synthetic_fit_inputs(0, n_draws=500, n_cphase=200)
if sys.argv[2] == "fsize":  # the kernel refuses any file beyond 64 kB (EFBIG), like a full quota
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    write_fit_store(sys.argv[1], **inputs)
except VlbiError as exc:
    print("VlbiError:", exc)
"""


def _assert_clean_disk_full(out: str, path: pathlib.Path):
    assert f"VlbiError: {path}: no space left to write the fit store" in out
    assert "nothing was written" in out
    assert not path.exists()
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".fit.zarr")] == []


def test_disk_full_raises_naming_the_path_and_leaves_nothing(tmp_path):
    path = tmp_path / "fit.zarr"
    out = subprocess.run([PYTHON, "-c", DISK_FULL_WRITER, str(path), "fsize"], capture_output=True, text=True, timeout=120)
    _assert_clean_disk_full(out.stdout, path)


def test_enospc_on_a_tiny_tmpfs(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    path = mount / "fit.zarr"
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unprivileged mount namespaces unavailable; EFBIG variant covers disk-full handling")
    script = tmp_path / "writer.py"
    script.write_text(DISK_FULL_WRITER)
    command = f"mount -t tmpfs -o size=200k tmpfs {mount} && {PYTHON} {script} {path} tmpfs; ls -a {mount}"
    out = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, timeout=120)
    assert "No space left on device" in out.stdout
    assert f"VlbiError: {path}: no space left" in out.stdout
    assert out.stdout.split()[-2:] == [".", ".."]  # the tmpfs holds nothing afterwards
