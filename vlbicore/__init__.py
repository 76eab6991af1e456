"""vlbicore: fast, trustworthy geometric model fitting of VLBI data across observing campaigns.

Packages by concern, in pipeline order (each package's ``__init__`` says what it owns and may import;
``tests/test_architecture.py`` checks the rules):

``data``        uvfits I/O, the ``Observation``, scan averaging, synthetic observations
``products``    data-product kinds (vis, amp, cphase, lcamp), closure sets
``models``      sky-model components, modifiers, Bessel functions, ``build_model``
``likelihood``  the data pytree, per-datum log-likelihood, error terms, goodness of fit
``inference``   transforms, mode search, chain-parallel NUTS, diagnostics, ``fit``
``store``       one Zarr store per fit: layout, atomic write, reading, summary
``survey``      campaign configs, gather, model comparison, plots, report

and the modules ``config`` (the typed fit configuration), ``pipeline`` (one fit end to end),
``statistics`` (posterior statistics shared by fitter, store and gather), ``cli``, ``testing``
(synthetic stores for tests and benchmarks), ``errors`` and ``units``.
"""
__version__ = "0.1.0"
SCHEMA_VERSION = 2  # 2: weighted chains (multimodal fits), mode masses, noise terms, adequacy
