"""Bayesian Gaussian mixtures for scikit-learn, fitted with TensorFlow Probability."""

from skbayesmix._imputer import GaussianMixtureImputer
from skbayesmix._transformed import TransformedDensity
from skbayesmix._variational_mixture import VariationalGaussianMixture

__version__ = "0.1.0"

__all__ = [
    "GaussianMixtureImputer",
    "TransformedDensity",
    "VariationalGaussianMixture",
]

# The public classes name the public module: new pickles and skops files then
# record `skbayesmix.VariationalGaussianMixture`, the type string a user trusts,
# and the API reference shows the import path. Old pickles still load, because
# the private modules keep the same class objects.
for _public in (GaussianMixtureImputer, TransformedDensity, VariationalGaussianMixture):
    _public.__module__ = __name__
del _public
