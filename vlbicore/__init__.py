"""vlbicore: fast, trustworthy geometric model fitting of VLBI data across observing campaigns.

Sub-modules, one concern each: ``data`` (uvfits I/O, Observation), ``products`` (amplitudes, closure
phases, log closure amplitudes), ``models`` (JAX sky models), ``likelihood``, ``inference`` (multi-start
optimisation + chain-parallel NUTS), ``store`` (one Zarr store per fit), ``gather`` (cross-epoch tables
on xarray + Dask), ``compare`` (LOO model comparison), ``plots``, ``simulate``, ``cli``.
"""
__version__ = "0.1.0"
SCHEMA_VERSION = 1
