"""The persistent XLA compilation cache that `vlbicore fit` and `vlbicore summary` switch on really serves
a second process (it did not while `filelock` was missing: every read failed with a warning)."""
import os
import subprocess
import sys

PROGRAM = """
import jax, jax.numpy as jnp
from vlbicore.cli import enable_compilation_cache
enable_compilation_cache()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # cache even this small program
hits = []
jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
print(float(jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T)(jnp.ones((8, 8))).sum()))
print("hits", len(hits))
"""


def cache_hits(proc):
    return int(proc.stdout.split("hits")[-1])


def run_program(cache_dir):
    env = {**os.environ, "VLBICORE_JAX_CACHE": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_second_process_reads_the_cache(tmp_path):
    cache = tmp_path / "jax-cache"
    first = run_program(cache)
    assert cache_hits(first) == 0
    assert any(cache.iterdir()), "the first process wrote nothing to the cache"
    second = run_program(cache)
    assert first.stdout.splitlines()[0] == second.stdout.splitlines()[0]
    assert cache_hits(second) >= 1, second.stderr[-2000:]
    assert "Error reading persistent compilation cache" not in second.stderr


def test_cache_off(tmp_path):
    proc = run_program("off")
    assert cache_hits(proc) == 0


def test_files_of_similar_size_share_the_fit_programs(tmp_path):
    """The fit's programs take the data as an argument, padded to shared sizes: fitting a second file of
    similar size (2017-04-05 hi after lo: 152 rows each, 84 closure phases, 63/64 log closure amplitudes)
    compiles nothing new; a file of another size adds its own programs."""
    from conftest import m87_file

    cache = tmp_path / "jax-cache"
    env = {**os.environ, "VLBICORE_JAX_CACHE": str(cache)}
    env.pop("XLA_FLAGS", None)

    def fit(day, band):
        out = tmp_path / f"{day}-{band}.zarr"
        proc = subprocess.run(
            [sys.executable, "-m", "vlbicore", "fit", str(m87_file(day, band)), "--out", str(out), "--model", "mring",
             "--order", "1", "--chains", "2", "--warmup", "100", "--samples", "100", "--starts", "8",
             "--host-devices", "1", "--quiet"], capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return sorted(path.name for path in cache.iterdir())

    first = fit(95, "lo")
    assert len(first) >= 2  # at least the batch program and the NUTS segment program
    assert fit(95, "hi") == first
    assert len(fit(100, "lo")) > len(first)
