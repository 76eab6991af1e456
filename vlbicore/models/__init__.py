"""Geometric sky models as pure JAX visibility functions, and the ``SkyModel`` objects the fitter uses.

Layers, in dependency order: ``params`` (every parameter's unit, meaning and default prior), ``uv``
(NaN-free numerical helpers), ``bessel`` (J_n, jinc), ``components`` (primitives centred on the
origin), ``modifiers`` (shift, stretch, rotation, blur, sums), ``ehtim_types`` (ehtim's type names and
the functional ``visibility``), ``sky_model`` (``build_model(spec) -> SkyModel``, ``describe_models``).

May import ``vlbicore.errors`` and ``vlbicore.units`` only: models never import data, products,
likelihood, inference, store, survey or cli.
"""
from vlbicore.models.components import (BlurredDisk, CircularGaussian, Component, Crescent, Disk, Gaussian, MRing,
                                        Point, Ring, ThickMRing, ThickRing)
from vlbicore.models.ehtim_types import (MAX_MRING_ORDER, MODEL_TYPES, MODIFIERS, MRING_TYPES, component_for_type,
                                         visibility)
from vlbicore.models.modifiers import Convolved, Rotated, Shifted, Stretched, Sum
from vlbicore.models.params import Param
from vlbicore.models.sky_model import SkyModel, build_model, describe_models, is_flux_scale

__all__ = [
    "MAX_MRING_ORDER", "MODEL_TYPES", "MODIFIERS", "MRING_TYPES", "BlurredDisk", "CircularGaussian", "Component",
    "Convolved", "Crescent", "Disk", "Gaussian", "MRing", "Param", "Point", "Ring", "Rotated", "Shifted",
    "SkyModel", "Stretched", "Sum", "ThickMRing", "ThickRing", "build_model", "component_for_type", "is_flux_scale",
    "describe_models", "visibility",
]
