"""A small synthetic campaign for the report tests: two sources, ids pandas would parse, every verdict.

Sources M87 (epochs "nan" and "2017-04-06-hi") and 3C279 (epoch "NA"), models "1e5" (a ring) and
"crescent", from :func:`vlbicore.testing.synthetic_fit_inputs` with units on every posterior variable
and a derived ``brightness_PA`` whose posterior straddles ±180° (medians near +178° on one epoch and
−178° on the next). Verdicts: one fit not converged, one not adequate and multimodal (with reasons),
one store written before the adequacy verdict existed (no ``adequate``/``multimodal`` attributes).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vlbicore.store import write_fit_store
from vlbicore.survey.gather import gather_stores
from vlbicore.testing import synthetic_fit_inputs

EPOCHS = [("nan", "M87", "2017-04-05", "lo", math.pi - 0.03),
          ("2017-04-06-hi", "M87", "2017-04-06", "hi", -math.pi + 0.03),
          ("NA", "3C279", "2017-04-05", "lo", 1.0)]
MODELS = {"1e5": {"type": "ring"}, "crescent": {"type": "crescent"}}
UNITS = {"d": {"units": "µas"}, "alpha": {"units": "µas"}, "offset": {"units": "1"},
         "brightness_PA": {"units": "rad", "period": 2 * math.pi}}
VERDICTS = {  # (epoch, model) -> root attributes; absent: converged, adequate, unimodal
    ("nan", "crescent"): {"converged": False},
    ("2017-04-06-hi", "1e5"): {"adequate": False, "multimodal": True,
                               "adequacy": {"statistics": {"reduced_chi2_cphase": 3.2}, "thresholds": {"reduced_chi2": 2.0},
                                            "reasons": ["reduced chi2 of cphase 3.20 > 2.0"]}},
    ("2017-04-06-hi", "crescent"): {"adequate": None, "multimodal": None},  # an older store
}


def write_campaign(root: Path, n_draws: int = 100) -> tuple[list[Path], Path]:
    """Write the stores under ``root`` and gather them into ``root/gather``; returns (stores, gather dir)."""
    root.mkdir(parents=True, exist_ok=True)
    paths, seed = [], 0
    for e, (epoch, source, date, band, pa) in enumerate(EPOCHS):
        for model, spec in MODELS.items():
            seed += 1
            verdict = {"converged": True, "adequate": True, "multimodal": False,
                       "adequacy": {"reasons": []}, **VERDICTS.get((epoch, model), {})}
            inputs = synthetic_fit_inputs(seed, epoch=epoch, model=model, date=date, band=band, n_draws=n_draws,
                                          converged=verdict.pop("converged"), data_seed=e,
                                          offset_bias=0.0 if model == "1e5" else 0.1)
            rng = np.random.default_rng(seed)
            draws = rng.normal(pa, 0.05, inputs["posterior"]["d"].shape)
            inputs["posterior"]["brightness_PA"] = np.angle(np.exp(1j * draws))  # in (-π, π]: wraps at ±π
            inputs["attrs"].update({"source": source, "model_spec": spec, "campaign": "synthetic survey",
                                    **{k: v for k, v in verdict.items() if v is not None}})
            if verdict.get("adequate") is None:
                inputs["attrs"].pop("adequacy", None)
            paths.append(write_fit_store(root / f"{e}_{model}.zarr", **inputs, variable_attrs=UNITS))
    gather_stores(paths, root / "gather", n_workers=1)
    return paths, root / "gather"
