"""Bayesian Gaussian mixtures for scikit-learn, fitted with TensorFlow Probability."""

from skbayesmix._transformed import TransformedDensity
from skbayesmix._variational_mixture import VariationalGaussianMixture

__version__ = "0.1.0"

__all__ = ["TransformedDensity", "VariationalGaussianMixture"]
