"""Run ehtim 1.3.2's own model code (``sample_1model_uv``) in a separate, cached environment.

ehtim 1.3.2's model code breaks on numpy 2 (``np.complex_``), while vlbicore needs numpy 2 (jax >= 0.10).
So the reference values come from a second virtual environment with ``ehtim==1.3.2`` and ``numpy<2``,
built once under ``<repo>/.cache/ehtim-ref-venv`` and reused; ehtim runs there in a subprocess with JSON
in and out. numpy is never patched.

Parameter convention (same as ``tests/data/ehtim_reference.json``): sizes and offsets in µas, F0 in Jy,
angles in radians, ``beta_list`` as ``[re, im]`` pairs.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
VENV = REPO / ".cache" / "ehtim-ref-venv"
READY_STAMP = VENV / "vlbicore-ready"
REQUIREMENTS = ("ehtim==1.3.2", "numpy<2")


class EhtimEnvUnavailable(RuntimeError):
    """The reference environment could not be built (e.g. no network); the message says why."""


def venv_python() -> pathlib.Path:
    return VENV / "bin" / "python"


def ensure_venv(timeout_s: float = 900.0) -> pathlib.Path:
    """Return the reference environment's python, building the environment first if it is not there."""
    if READY_STAMP.exists() and venv_python().exists():
        return venv_python()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
        [str(venv_python()), "-c", "import warnings, contextlib, io; warnings.simplefilter('ignore');"
         "f = io.StringIO();\nwith contextlib.redirect_stdout(f): import ehtim, numpy\n"
         "assert numpy.__version__ < '2', numpy.__version__"],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EhtimEnvUnavailable(f"building {VENV} failed at {cmd[:3]}: {exc}") from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise EhtimEnvUnavailable(f"building {VENV} failed at {' '.join(cmd[:4])}: {' | '.join(tail)}")
    READY_STAMP.write_text(" ".join(REQUIREMENTS) + "\n")
    return venv_python()


# Runs inside the reference environment: reads {"u", "v", "cases"} JSON, writes [{"re", "im"}, ...].
_RUNNER = r'''
import contextlib, io, json, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[3])  # tests/data: the reference generator's conversion and sampling
with contextlib.redirect_stdout(io.StringIO()):
    import numpy as np
    from make_ehtim_reference import sample
job = json.load(open(sys.argv[1]))
u, v = np.asarray(job["u"], float), np.asarray(job["v"], float)
out = []
for case in job["cases"]:
    with contextlib.redirect_stdout(io.StringIO()):
        vis = sample(case["type"], case["params"], u, v)
    out.append({"re": vis.real.tolist(), "im": vis.imag.tolist()})
json.dump(out, open(sys.argv[2], "w"))
'''


def ehtim_sample_uv(cases, u, v, timeout_s: float = 300.0) -> list[np.ndarray]:
    """ehtim ``sample_1model_uv`` for each case ``{"type": ehtim name, "params": {...}}`` at (u, v) in λ.

    Returns one complex128 array per case. Raises EhtimEnvUnavailable if the environment can't be built.
    """
    python = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "runner.py").write_text(_RUNNER)
        job = {"u": np.asarray(u, float).tolist(), "v": np.asarray(v, float).tolist(), "cases": list(cases)}
        (tmp / "job.json").write_text(json.dumps(job))
        proc = subprocess.run([str(python), str(tmp / "runner.py"), str(tmp / "job.json"), str(tmp / "out.json"),
                               str(REPO / "tests" / "data")],
                              capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"ehtim reference run failed: {proc.stderr.strip()[-2000:]}")
        result = json.loads((tmp / "out.json").read_text())
    return [np.asarray(r["re"]) + 1j * np.asarray(r["im"]) for r in result]


if __name__ == "__main__":  # build the environment ahead of the tests: python tests/ehtim_reference_env.py
    print(ensure_venv())
