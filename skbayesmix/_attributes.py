"""scikit-learn's fitted attributes from a Posterior in data units, and back."""

from typing import Any, NamedTuple

import numpy as np

from skbayesmix._gaussian import _compute_precision_cholesky, _compute_precisions
from skbayesmix._state import COVARIANCE_STRUCTURES, Posterior

__all__ = ["PosteriorAttributes", "posterior_attributes", "posterior_of_attributes"]


class PosteriorAttributes(NamedTuple):
    """The values of scikit-learn's fitted posterior attributes, in X's dtype.

    weight_concentration : ndarray or tuple of two ndarrays
    weights, mean_precision : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    degrees_of_freedom : ndarray of shape (n_components,) or float ('tied')
    covariances, precisions_cholesky, precisions : ndarray
        Of `CovarianceStructure.covariances_shape`.
    """

    weight_concentration: Any
    weights: Any
    mean_precision: Any
    means: Any
    degrees_of_freedom: Any
    covariances: Any
    precisions_cholesky: Any
    precisions: Any


def _dirichlet_process_weights(concentration_a, concentration_b):
    """E[pi_k] of the stick-breaking posterior, renormalised over the K sticks.

    Returns
    -------
    weights : ndarray of shape (n_components,)
    """
    stick_total = concentration_a + concentration_b
    rest = concentration_b / stick_total
    weights = concentration_a / stick_total
    weights[1:] *= np.cumprod(rest[:-1])
    return weights / np.sum(weights)


def posterior_attributes(posterior, covariance_type, weight_type, dtype):
    """The fitted attributes of a Posterior in data units (float64).

    Everything is derived in float64, then cast to X's dtype: a float32
    covariance can be too ill-conditioned to factorise, while the cast of its
    float64 precision Cholesky factor is accurate.

    Parameters
    ----------
    posterior : Posterior
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weight_type : {'dirichlet_process', 'dirichlet_distribution'}
    dtype : numpy dtype

    Returns
    -------
    attributes : PosteriorAttributes
    """
    structure = COVARIANCE_STRUCTURES[covariance_type]
    dtype = np.dtype(dtype).type
    if weight_type == "dirichlet_process":
        weight_concentration = (posterior.concentration_a, posterior.concentration_b)
        weights = _dirichlet_process_weights(*weight_concentration)
    else:
        weight_concentration = posterior.concentration_a
        weights = weight_concentration / np.sum(weight_concentration)
    covariances64 = structure.covariances(
        posterior.degrees_of_freedom, posterior.scale_inverse
    )
    with np.errstate(over="ignore"):
        covariances = covariances64.astype(dtype)
    if not np.all(np.isfinite(covariances)):
        raise ValueError(
            "The covariance of X overflows the floating point range. "
            "Rescale X, for example with StandardScaler."
        )
    precisions_cholesky = _compute_precision_cholesky(covariances64, covariance_type)
    nu = posterior.degrees_of_freedom
    precisions_cholesky = precisions_cholesky.astype(dtype)
    return PosteriorAttributes(
        (
            tuple(v.astype(dtype) for v in weight_concentration)
            if isinstance(weight_concentration, tuple)
            else weight_concentration.astype(dtype)
        ),
        weights.astype(dtype),
        posterior.mean_precision.astype(dtype),
        posterior.means.astype(dtype),
        dtype(nu[0]) if structure.shared else nu.astype(dtype),
        covariances,
        precisions_cholesky,
        _compute_precisions(precisions_cholesky, covariance_type),
    )


def posterior_of_attributes(attributes, covariance_type, weight_type):
    """The Posterior in data units that `posterior_attributes` came from.

    Exact for float64 attributes; from float32 ones, up to their rounding.

    Parameters
    ----------
    attributes : PosteriorAttributes

    Returns
    -------
    posterior : Posterior of float64 ndarray
    """
    structure = COVARIANCE_STRUCTURES[covariance_type]
    if weight_type == "dirichlet_process":
        concentration_a, concentration_b = attributes.weight_concentration
    else:
        concentration_a = attributes.weight_concentration
        concentration_b = np.zeros_like(concentration_a)
    nu = np.atleast_1d(np.asarray(attributes.degrees_of_freedom, dtype=np.float64))
    return Posterior(
        np.asarray(concentration_a, dtype=np.float64),
        np.asarray(concentration_b, dtype=np.float64),
        np.asarray(attributes.mean_precision, dtype=np.float64),
        np.asarray(attributes.means, dtype=np.float64),
        nu,
        structure.scale_inverse(
            nu, np.asarray(attributes.covariances, dtype=np.float64)
        ),
    )
