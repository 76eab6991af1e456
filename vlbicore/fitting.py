"""One fit end to end: observation -> data products -> model -> inference -> Zarr store.

This is what ``vlbicore fit`` and the workflow's fit rule run; the numerical work lives in
:mod:`vlbicore.inference`, the layout of the store in :mod:`vlbicore.store`.
"""
from __future__ import annotations

import datetime as _dt
import json
import pathlib

from . import SCHEMA_VERSION, __version__
from .errors import VlbiError


def load_observation(path: str | pathlib.Path):
    """A uvfits file, or a prepared ``.npz`` written by ``vlbicore prepare``."""
    from . import data

    path = str(path)
    return data.load_prepared(path) if path.endswith(".npz") else data.load_uvfits(path)


def model_spec_for(settings: dict) -> dict:
    """Model spec with the fit-level ``priors``/``fixed`` folded in, and the parameters the data products
    cannot see pinned: the absolute position (x0, y0 -> 0 µas) unless complex visibilities are fitted
    (amplitudes and closure phases are blind to a shift), and the total flux (F0 -> 1 Jy) when only
    closures are fitted. A flat direction would otherwise send NUTS on long, useless trajectories."""
    from .models import build_model

    spec = dict(settings["model"])
    if settings.get("priors"):
        spec["priors"] = {**spec.get("priors", {}), **settings["priors"]}
    fixed = {**spec.get("fixed", {}), **settings.get("fixed", {})}
    products = set(settings["products"])
    for name in build_model({**spec, "fixed": fixed}).closure_invariant_params():
        is_flux = name.split(".")[-1] == "F0"
        sees_it = bool(products & {"amp", "vis"}) if is_flux else "vis" in products
        if not sees_it:
            fixed.setdefault(name, 1.0 if is_flux else 0.0)
    if fixed:
        spec["fixed"] = fixed
    return spec


def _observed_data(products) -> dict:
    observed = {}
    for kind, product in products.items():
        observed[kind] = {
            "values": product.values,
            "sigma": product.sigma,
            "time": product.time,
            "label": product.labels,
            "uvdist": product.uvdist,
        }
    return observed


def run_fit(data_path, settings: dict, out, *, epoch: str | None = None, overwrite: bool = False,
            sampler_values: dict | None = None) -> pathlib.Path:
    """Fit ``settings['model']`` to the data at ``data_path`` and write the store at ``out``."""
    import time

    from .inference import SamplerSettings, fit
    from .likelihood import with_systematic
    from .models import build_model
    from .products import build_products
    from .store import write_fit_store

    t0 = time.perf_counter()
    sampler = SamplerSettings.from_dict(sampler_values if sampler_values is not None else settings.get("sampler", {}))
    obs = load_observation(data_path)
    obs = with_systematic(obs, float(settings.get("systematic", 0.0)))
    products = build_products(obs, tuple(settings["products"]), covariance=bool(settings.get("covariance", False)))
    if sum(p.n for p in products.values()) == 0:
        raise VlbiError(f"{data_path}: no usable {', '.join(settings['products'])} data; check flags or choose other products")
    spec = model_spec_for(settings)
    model = build_model(spec)
    load_time = time.perf_counter() - t0

    result = fit(products, model, sampler, amp_likelihood=settings.get("amp_likelihood", "gauss"))
    result.timings["load"] = load_time

    attrs = {
        "vlbicore_version": __version__,
        "vlbicore_schema": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data_path": str(getattr(obs, "path", data_path)),
        "data_sha256": obs.sha256,
        "source": obs.source,
        "date": obs.date,
        "band": obs.band,
        "frequency_hz": float(obs.frequency),
        "epoch": epoch or pathlib.Path(str(data_path)).stem,
        "model_name": model.name,
        "model_spec": json.dumps(spec),
        "priors": json.dumps({p.name: [p.low, p.high] for p in model.params}),
        "fixed": json.dumps(model.fixed),
        "sampler": json.dumps(vars(sampler)),
        "products": json.dumps(list(settings["products"])),
        "systematic": float(settings.get("systematic", 0.0)),
        "covariance": bool(settings.get("covariance", False)),
        "seed": sampler.seed,
        "chain_method": result.chain_method,
        "devices": json.dumps(result.devices),
        "converged": bool(result.convergence["converged"]),
        "convergence": json.dumps(result.convergence),
        "flag_counts": json.dumps(obs.flag_counts),
        "timings": json.dumps(result.timings),
    }
    diagnostics = {
        **result.diagnostics,
        "reduced_chi2": {k: v[0] for k, v in result.reduced_chi2.items()},
        "n_data": {k: v[1] for k, v in result.reduced_chi2.items()},
        "modes": result.modes,
    }
    path = write_fit_store(
        out,
        posterior=result.posterior,
        sample_stats=result.sample_stats,
        log_likelihood=result.log_likelihood,
        observed_data=_observed_data(products),
        posterior_predictive=result.posterior_predictive,
        diagnostics=diagnostics,
        attrs=attrs,
        uv=(obs.u, obs.v),
        overwrite=overwrite,
        variable_attrs=model.variable_attrs(),
    )
    return pathlib.Path(path)
