"""Likelihood of data products given a sky model: the data pytree the compiled programs take, the
per-datum log-likelihood of every kind, the error terms, and goodness of fit.

May import ``vlbicore.products`` and ``vlbicore.models``; never store, survey or cli.
"""
from vlbicore.likelihood.evaluate import (common_sizes, likelihood_data, make_log_likelihood, pointwise_log_likelihood,
                                          pointwise_terms, predicted_products, total_variance, unpad)
from vlbicore.likelihood.goodness_of_fit import (chi_squared, chi_squared_of, predictions, reduced_chi_squared,
                                                 reduced_chi_squared_of)
from vlbicore.likelihood.noise import NoiseModel, with_systematic
from vlbicore.products import padded_size

__all__ = [
    "NoiseModel", "common_sizes", "pointwise_terms", "total_variance",
    "chi_squared", "chi_squared_of", "likelihood_data", "make_log_likelihood", "padded_size",
    "pointwise_log_likelihood", "predicted_products", "predictions", "reduced_chi_squared",
    "reduced_chi_squared_of", "unpad", "with_systematic",
]
