"""What every data-product kind shares: the product record, the ``Product`` contract, padding.

A product kind is one class (``VisibilityProduct``, ``AmplitudeProduct``, ...): its instances hold the
data of one observation (NumPy arrays: ``rows`` index the observation rows a datum is made of), and the
class owns everything the rest of vlbicore needs to know about the kind:

* ``build(obs, rows, options)``: the product from an observation (``rows``: the usable rows);
* ``predict_values(V, rows, signs)``: the model values from model visibilities (pure JAX);
* ``likelihood_arrays(obs, options, size)``: ``(variant, arrays)``, every number its density needs,
  padded to ``size`` data (``variant`` is static and picks the density). Among them the thermal errors and
  the observed amplitudes and baseline lengths the error terms of :mod:`vlbicore.likelihood.noise` need:
  ``sigma``/``amplitude``/``uvdist`` per datum for single-baseline kinds, ``leg_rel_var``/
  ``leg_amplitude``/``leg_uvdist`` per closure leg for closure kinds (``variance_kind``);
* ``log_density(variant, arrays, predicted, variance)``: per-datum ``(log-likelihood, z²)`` (pure JAX),
  with ``variance`` the total variance the likelihood computed from those inputs (σ² per datum, or the
  relative variance per closure leg); z² is the squared normalised residual χ² sums over;
* ``chi_squared(predicted)``: ``(χ², n)`` against the thermal errors, in NumPy.

The likelihood iterates over the kinds of a product set; adding a kind is one module (a subclass of
:class:`Product`) registered in :mod:`vlbicore.products`, plus its tests.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class ProductOptions:
    """How products are built and modelled (the data-product part of a fit configuration).

    ``covariance``: closure products carry their full per-time-stamp covariance; ``snr_cut``: (kind, cut)
    pairs, rows with |V|/σ below the cut are left out of that kind; ``lcamp_debias``: debiased amplitudes
    inside the log closure amplitudes; ``amp_likelihood``: ``"gauss"`` (debiased amplitudes) or ``"rice"``
    (raw amplitudes).
    """

    covariance: bool = False
    snr_cut: tuple = ()
    # what the error terms add to closure legs: "common" (one relative variance f² for every leg, the
    # default noise model, which allows a precomputed whitening) or "general" (per leg); set by the
    # likelihood from the noise model
    leg_noise: str = "general"
    lcamp_debias: bool = False
    amp_likelihood: str = "gauss"


def debiased_amplitude(amplitude, sigma):
    """sqrt(|A|^2 - sigma^2), and 0 where |A| < sigma (the ehtim convention)."""
    amplitude, sigma = np.abs(amplitude), np.asarray(sigma)
    return np.sqrt(np.clip(amplitude**2 - sigma**2, 0.0, None))


def wrap_phase(phase):
    """Map angles (radians) to (-pi, pi] (JAX; differentiable)."""
    return jnp.angle(jnp.exp(1j * phase))


def wrap_phase_np(phase: np.ndarray) -> np.ndarray:
    """:func:`wrap_phase` in NumPy."""
    return np.angle(np.exp(1j * np.asarray(phase)))


def relative_sigma(obs) -> np.ndarray:
    """sigma/|V| per row: the high-SNR error of the phase (rad) and of log|V|; inf where V = 0."""
    amplitude = np.abs(obs.vis)
    return np.divide(obs.sigma, amplitude, out=np.full(len(obs), np.inf), where=amplitude > 0)


def row_meta(obs, rows: np.ndarray) -> dict:
    """time, labels and uv distance of single-baseline data at ``rows``."""
    return dict(time=obs.time[rows], labels=obs.baseline_labels[rows], uvdist=obs.uvdist[rows])


# --------------------------------------------------------------------------------------------------
# Padding: the data are an argument of the compiled programs and their lengths are rounded up to a few
# sizes, so files of similar size run the same programs. Padded entries repeat a real datum's indices
# with zero weight and are masked out of every sum.


def padded_size(n: int) -> int:
    """The smallest m·2^k (m = 4…7) that holds ``n`` entries, at least 8: at most 25 % padding, and about
    four sizes per doubling, so files of similar size share their compiled programs."""
    if n <= 8:
        return 8
    eighth = 1 << ((n - 1).bit_length() - 3)  # n lies in (4, 8] eighths of the next power of two
    return next(m * eighth for m in (5, 6, 7, 8) if m * eighth >= n)


def pad(array: np.ndarray, size: int, fill) -> np.ndarray:
    """``array`` extended along axis 0 to ``size`` entries with ``fill`` (a scalar or one entry)."""
    array = np.asarray(array)
    extra = size - array.shape[0]
    if extra <= 0:
        return array
    block = np.broadcast_to(np.asarray(fill, dtype=array.dtype), (extra, *array.shape[1:]))
    return np.concatenate([array, block])


def round_up(n: int, multiple: int = 4) -> int:
    """``n`` rounded up to a multiple (small array dimensions: legs of a closure, closures per time)."""
    return max(multiple, -(-int(n) // multiple) * multiple)


def padded_sizes(natural: dict) -> dict:
    """Padded array sizes: lengths to :func:`padded_size`, small dimensions to a multiple of 4."""
    return {k: padded_size(v) if k in ("n", "blocks") else round_up(v) for k, v in natural.items()}


def index_arrays(product, size: int, width: int | None = None) -> dict:
    """rows (and signs) of a product, padded with copies of its first datum's rows and zero signs, so a
    padded entry reads real visibilities (no log of an empty baseline) and contributes nothing; closure
    rows are also widened to ``width`` legs (extra legs: row 0, sign 0)."""
    rows = np.asarray(product.rows)
    if width is not None and rows.ndim == 2 and rows.shape[1] < width:
        rows = np.concatenate([rows, np.zeros((len(rows), width - rows.shape[1]), rows.dtype)], axis=1)
    fill = rows[0] if len(rows) else np.zeros(rows.shape[1:], dtype=rows.dtype)
    arrays = {"rows": pad(rows, size, fill), "mask": pad(np.ones(len(rows), bool), size, False)}
    if hasattr(product, "signs"):
        signs = np.asarray(product.signs, dtype=np.float64)
        if signs.shape[1] < rows.shape[1]:
            signs = np.concatenate([signs, np.zeros((len(signs), rows.shape[1] - signs.shape[1]))], axis=1)
        arrays["signs"] = pad(signs, size, 0.0)
    return arrays


# --------------------------------------------------------------------------------------------------
# Densities shared by several kinds


def gaussian_pointwise(residual, variance):
    """(log density, z²) of Gaussian residuals with the given variance."""
    z2 = residual**2 / variance
    return -0.5 * z2 - 0.5 * jnp.log(variance) - 0.5 * LOG_2PI, z2


def whitener(cov):
    """Inverse Cholesky factor and log-determinant term of a covariance (NumPy)."""
    chol = np.linalg.cholesky(np.asarray(cov, dtype=np.float64))
    return np.linalg.inv(chol), np.log(np.diag(chol))


# --------------------------------------------------------------------------------------------------
# The product record and the kind contract


@dataclasses.dataclass(frozen=True, eq=False)
class Product:
    """Fields shared by every product: ``rows`` index the observation rows the product is made of.

    Subclasses set ``kind`` (the registry name) and implement the kind contract (module docstring).
    """

    rows: np.ndarray
    values: np.ndarray
    sigma: np.ndarray
    time: np.ndarray
    labels: np.ndarray
    uvdist: np.ndarray  # λ; baseline length, or the longest baseline of a closure

    kind: ClassVar[str] = ""
    variance_kind: ClassVar[str] = "visibility"  # the likelihood supplies σ² per datum
    degrees_of_freedom: ClassVar[int] = 1  # Gaussian terms per datum in z² (a complex visibility: 2)
    cov = None  # independent data; closure products carry a covariance field instead

    @property
    def n(self) -> int:
        return len(self.values)

    def sizes(self) -> dict[str, int]:
        """The natural (unpadded) sizes of this product's likelihood arrays; a batch pads every posterior
        to the largest of each."""
        return {"n": self.n}

    @classmethod
    def build(cls, obs, rows: np.ndarray, options: ProductOptions) -> "Product":  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def predict_values(V, rows, signs=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, V):
        """Model values of this product from model visibilities ``V`` at the observation rows (JAX)."""
        return self.predict_values(jnp.asarray(V), self.rows, getattr(self, "signs", None))

    def likelihood_arrays(self, obs, options: ProductOptions, sizes: dict) -> tuple[str, dict]:
        """(variant, arrays) of the density, padded to ``sizes`` (:meth:`sizes`, padded by the likelihood;
        default density: a Gaussian with ``sigma``)."""
        size = sizes["n"]
        arrays = self.error_inputs(obs, size)
        arrays["values"] = pad(np.asarray(self.values), size, 0.0)
        return "gauss", arrays

    def error_inputs(self, obs, size: int) -> dict:
        """Index arrays plus what the error terms need per datum: thermal σ, observed |V|, |uv| (padded)."""
        arrays = index_arrays(self, size)
        arrays["sigma"] = pad(np.asarray(self.sigma, dtype=np.float64), size, 1.0)
        arrays["amplitude"] = pad(np.abs(obs.vis)[self.rows].astype(np.float64), size, 1.0)
        arrays["uvdist"] = pad(obs.uvdist[self.rows].astype(np.float64), size, 1.0)
        return arrays

    @staticmethod
    def log_density(variant: str, arrays: dict, predicted, variance):
        """Per-datum (log-likelihood, z²) (padded entries are masked by the caller)."""
        return gaussian_pointwise(predicted - arrays["values"], variance)

    def residuals(self, predicted) -> np.ndarray:
        """data − model (NumPy), the quantity χ² sums over."""
        return np.asarray(self.values) - np.asarray(predicted)

    def chi_squared(self, predicted) -> tuple[float, int]:
        """χ² and the number of data, from the model's ``predicted`` values (NumPy)."""
        resid = self.residuals(predicted)
        return float(np.sum((resid / self.sigma) ** 2)), len(self.values)
