"""One typed fit configuration: the defaults, the merging of its layers, the pinning of what the chosen
products cannot see, and validation with one-line errors.

Layers, later ones winning (``sampler``, ``priors`` and ``fixed`` merge key by key):

    FitConfig defaults  <-  campaign defaults  <-  the campaign's model  <-  --config FILE  <-  --fit-json
    <-  command-line flags

:func:`FitConfig.from_layers` does the merge; ``vlbicore fit``, the workflow (through
``vlbicore.survey.campaign``) and :func:`vlbicore.pipeline.run_fit` all consume the result, and the model
is built from it once (:attr:`FitConfig.sky_model`). The campaign JSON schema
(``vlbicore/schemas/config.schema.yaml``) describes the same keys; ``tests/test_config.py`` proves that
its model types, orders, products and sampler keys agree with the code.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any, Mapping

from vlbicore.data.windows import parse_spec
from vlbicore.errors import VlbiError
from vlbicore.inference.settings import SamplerSettings
from vlbicore.likelihood.gains import DEFAULT_AMP_SNR_CUT, GainModel
from vlbicore.likelihood.noise import TERMS, NoiseModel
from vlbicore.models import SkyModel, build_model, is_flux_scale
from vlbicore.products import AMP_LIKELIHOODS, PRODUCT_KINDS, check_product_set

# keys of one fit configuration (what --config / --fit-json hold, and what a campaign model may set)
FIT_KEYS = ("model", "products", "sampler", "priors", "fixed", "noise", "systematic", "amp_likelihood",
            "covariance", "snr_cut", "gains", "snapshots")
# keys a campaign sets for every model and a model may override
CAMPAIGN_DEFAULT_KEYS = ("products", "sampler", "noise", "systematic", "amp_likelihood", "covariance", "snr_cut",
                         "gains")
_MERGED_BY_KEY = ("sampler", "priors", "fixed")
NOISE_PREFIX = "noise."


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """The whole configuration of one fit; every field has its default here and nowhere else.

    ``model``: the model spec (a type with options, or named components; see ``vlbicore models``);
    ``products``: data products fitted (an independent set: vis; amp+cphase; cphase+lcamp; or one
    alone); ``sampler``: :class:`~vlbicore.inference.settings.SamplerSettings`; ``priors``/``fixed``: per
    parameter priors and pinned values on top of the model's own (``noise.*`` names address the error
    terms); ``noise``: the error terms fitted with the model (``default``: the non-closing term for
    closure products and the fractional term for amplitudes/visibilities; ``none``; or a mapping of
    terms to true/false, see :mod:`vlbicore.likelihood.noise`); ``systematic``: a fixed fractional error
    added to every visibility σ before products are formed; ``amp_likelihood``: ``gauss`` (debiased
    amplitudes) or ``rice``; ``covariance``: closure products with their full per-time-stamp
    covariance; ``snr_cut``: rows with |V|/σ below it are left out (a number: of every product; a
    mapping: per kind; default: log closure amplitudes below SNR 3, where they are biased; with gains
    also amplitudes below SNR 3); ``gains``: station gains (false: none; true: the EHT 2017 defaults; a
    mapping of ``method`` (marginal | sampled), ``segment`` (scan | integration | track), ``sigma`` and
    per-station ``stations`` overrides, see :mod:`vlbicore.likelihood.gains`);
    ``snapshots``: fit one posterior per time window instead of the whole track (``scan``, a window
    length such as ``10min``, or a list of ``[start, end]`` hours UTC; see :mod:`vlbicore.data.windows`);
    default none (one fit of the whole observation).
    """

    model: Mapping[str, Any]
    products: tuple[str, ...] = ("cphase", "lcamp")
    sampler: SamplerSettings = SamplerSettings()
    priors: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fixed: Mapping[str, float] = dataclasses.field(default_factory=dict)
    noise: Any = "default"
    systematic: float = 0.0
    amp_likelihood: str = "gauss"
    covariance: bool = True
    snr_cut: Any = dataclasses.field(default_factory=lambda: {"lcamp": 3.0})
    gains: Any = False
    snapshots: Any = None

    def __post_init__(self):
        if not isinstance(self.model, Mapping) or not self.model:
            raise VlbiError("fit: no model given; use --model NAME (see `vlbicore models`) or a model in --config")
        products = tuple(self.products)
        unknown = [p for p in products if p not in PRODUCT_KINDS]
        if unknown or not products or len(set(products)) != len(products):
            raise VlbiError(f"products: {', '.join(unknown) or list(products)} is not a list of distinct products; "
                            f"use a comma list of {', '.join(PRODUCT_KINDS)}")
        object.__setattr__(self, "products", products)
        check_product_set(products)
        if not isinstance(self.systematic, (int, float)) or not math.isfinite(self.systematic) or self.systematic < 0:
            raise VlbiError(f"systematic: {self.systematic!r} is not a fraction >= 0; use e.g. 0.02 for 2 %")
        if self.amp_likelihood not in AMP_LIKELIHOODS:
            raise VlbiError(f"amp_likelihood: {self.amp_likelihood!r} is unknown; use one of {', '.join(AMP_LIKELIHOODS)}")
        if not isinstance(self.covariance, bool):
            raise VlbiError(f"covariance: {self.covariance!r} is not true or false")
        cuts = self.snr_cut if isinstance(self.snr_cut, Mapping) else {"all products": self.snr_cut}
        for kind, cut in cuts.items():
            if kind != "all products" and kind not in PRODUCT_KINDS:
                raise VlbiError(f"snr_cut.{kind}: not a product; use {', '.join(PRODUCT_KINDS)}")
            if not isinstance(cut, (int, float)) or isinstance(cut, bool) or not cut >= 0:
                raise VlbiError(f"snr_cut: {cut!r} is not a number >= 0; use e.g. 3 (SNR below which data are dropped)")
        if self.snapshots is not None:
            parsed = parse_spec(self.snapshots, "snapshots")
            object.__setattr__(self, "snapshots", [list(p) for p in parsed] if isinstance(parsed, tuple) else self.snapshots)
        if not (self.noise in ("default", "none") or isinstance(self.noise, Mapping)):
            raise VlbiError(f"noise: {self.noise!r} is not 'default', 'none' or a mapping of "
                            f"{', '.join(TERMS)} to true/false")
        self.gain_model  # noqa: B018  (validates the gains setting)

    # ----------------------------------------------------------------------------------------------
    # merging

    @classmethod
    def from_layers(cls, *layers: tuple[Mapping[str, Any], str]) -> "FitConfig":
        """The configuration from ``(mapping, where)`` layers, later layers winning; ``where`` names the
        layer in errors (e.g. ``"--config fit.yaml"``, ``"models.mring1"``)."""
        merged: dict[str, Any] = {}
        for values, where in layers:
            if not isinstance(values, Mapping):
                raise VlbiError(f"{where}: expected a mapping of fit settings, got {type(values).__name__}")
            unknown = sorted(set(values) - set(FIT_KEYS))
            if unknown:
                raise VlbiError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(FIT_KEYS)}")
            for key, value in values.items():
                if key in _MERGED_BY_KEY:
                    if not isinstance(value, Mapping):
                        raise VlbiError(f"{where}.{key}: expected a mapping, got {value!r}")
                    merged[key] = {**merged.get(key, {}), **value}
                elif key == "model":
                    merged[key] = {"type": value} if isinstance(value, str) else dict(value)
                else:
                    merged[key] = value
        if "model" not in merged:
            raise VlbiError("fit: no model given; use --model NAME (see `vlbicore models`) or a model in --config")
        sampler = SamplerSettings.from_dict(merged.pop("sampler", {}))
        if "products" in merged:
            merged["products"] = tuple(merged["products"])
        config = cls(sampler=sampler, **merged)
        config.sky_model, config.noise_model  # unknown types or parameter names fail here, before any data are read
        return config

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "fit configuration") -> "FitConfig":
        """A configuration from one mapping (e.g. a store's ``fit_config`` attribute)."""
        return cls.from_layers((values, where))

    def replace(self, **changes) -> "FitConfig":
        """A copy with some fields changed (``sampler`` may be a mapping of sampler keys to change)."""
        if isinstance(changes.get("sampler"), Mapping):
            changes["sampler"] = SamplerSettings.from_dict({**dataclasses.asdict(self.sampler), **changes["sampler"]})
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-able values (round-trips through :meth:`from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["sampler"] = dataclasses.asdict(self.sampler)
        out["products"] = list(self.products)
        if out["snapshots"] is None:  # a whole-track fit records what it recorded before snapshots existed
            del out["snapshots"]
        return json.loads(json.dumps(out))

    # ----------------------------------------------------------------------------------------------
    # the model

    @functools.cached_property
    def model_spec(self) -> dict:
        """Model spec with the fit-level ``priors``/``fixed`` folded in, and the parameters the data products
        cannot see pinned: the absolute position (x0, y0 -> 0 µas) unless complex visibilities are fitted
        without gain phases per scan or integration (amplitudes and closure phases are blind to a shift, and
        such gain phases absorb it: a shift is a phase 2π(u_i x0 + v_i y0) per station and time), and the
        total flux (F0, or a sum's total_flux, -> 1 Jy) when only closures are fitted. A flat direction would
        otherwise send NUTS on long, useless trajectories."""
        spec = dict(self.model)
        priors = {k: v for k, v in self.priors.items() if not k.startswith(NOISE_PREFIX)}
        if priors:
            spec["priors"] = {**spec.get("priors", {}), **priors}
        fixed = {**spec.get("fixed", {}), **{k: v for k, v in self.fixed.items() if not k.startswith(NOISE_PREFIX)}}
        products = set(self.products)
        sees_position = "vis" in products and not self.gain_phases_per_time
        for name in build_model({**spec, "fixed": fixed}).closure_invariant_params():
            is_flux = is_flux_scale(name)
            sees_it = bool(products & {"amp", "vis"}) if is_flux else sees_position
            if not sees_it:
                fixed.setdefault(name, 1.0 if is_flux else 0.0)
        if fixed:
            spec["fixed"] = fixed
        return spec

    @functools.cached_property
    def sky_model(self) -> SkyModel:
        """The sky model of this fit (with the pinned parameters of :attr:`model_spec`), built once."""
        return build_model(self.model_spec)

    @functools.cached_property
    def noise_model(self) -> NoiseModel:
        """The error terms fitted with the model, for this fit's products (with the ``noise.*`` priors and
        fixed values)."""
        priors = {k: v for k, v in self.priors.items() if k.startswith(NOISE_PREFIX)}
        fixed = {k: v for k, v in self.fixed.items() if k.startswith(NOISE_PREFIX)}
        return NoiseModel.of(self.noise, self.products, priors, fixed)

    @functools.cached_property
    def gain_model(self) -> GainModel | None:
        """The station gains of this fit (None: no gains, or products immune to them: closures only)."""
        return GainModel.of(self.gains, self.products)

    @property
    def gain_phases_per_time(self) -> bool:
        """Visibilities are fitted with a gain phase per station and scan (or integration): such phases
        absorb the data's per-scan phase errors and any shift of the image."""
        gains = self.gain_model
        return "vis" in self.products and gains is not None and gains.segment in ("scan", "integration")

    @property
    def snr_cuts(self) -> dict[str, float]:
        """``snr_cut`` per product kind of this fit (with marginalised gains, amplitudes default to SNR 3:
        their logs are fitted)."""
        if isinstance(self.snr_cut, Mapping):
            cuts = {k: float(v) for k, v in self.snr_cut.items() if k in self.products}
            gains = self.gain_model
            if gains is not None and gains.method == "marginal" and "amp" in self.products:
                cuts.setdefault("amp", DEFAULT_AMP_SNR_CUT)
            return cuts
        return dict.fromkeys(self.products, float(self.snr_cut))
