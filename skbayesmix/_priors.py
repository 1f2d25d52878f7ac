"""The prior of a fit, from the estimator's parameters and the data's moments."""

# scikit-learn fills the `*_prior_` attributes from the parameters and, where a
# parameter is None, from the data. Here the data enter only through their
# `DataMoments`, which every driver reduces the same way, so the priors of an
# in-memory fit, a stream and a Dask array of the same rows are the same. The
# backend receives the prior in standardised units (see _standardisation).

from typing import Any, NamedTuple

import numpy as np
from sklearn.utils import check_array

from skbayesmix._standardisation import Standardisation
from skbayesmix._state import COVARIANCE_STRUCTURES, Prior

__all__ = ["ModelPrior", "PriorAttributes", "check_n_samples", "model_prior"]


class PriorAttributes(NamedTuple):
    """The values of scikit-learn's fitted prior attributes, in data units.

    weight_concentration_prior, mean_precision_prior : float
    mean_prior : ndarray of shape (n_features,)
    degrees_of_freedom_prior : float
    covariance_prior : float or ndarray
        Of shape `CovarianceStructure.prior_scale_shape(n_features)`.
    """

    weight_concentration_prior: Any
    mean_precision_prior: Any
    mean_prior: Any
    degrees_of_freedom_prior: Any
    covariance_prior: Any


class ModelPrior(NamedTuple):
    """Everything a driver needs to know of the model and of the data's units.

    attributes : PriorAttributes
        What the estimator stores.
    standardisation : Standardisation
        The map of X into the backend's units.
    prior : Prior
        The prior in standardised units, float64, with reg_covar added to Psi0.
    reg_covar : float
        reg_covar in standardised units.
    log_jacobian : float
        log p(X) - log p(X_s) for the weight that the lower bounds stand for:
        what a standardised lower bound lacks.
    covariance_type, weight_type : str
    """

    attributes: PriorAttributes
    standardisation: Standardisation
    prior: Prior
    reg_covar: float
    log_jacobian: float
    covariance_type: str
    weight_type: str


def check_n_samples(n_samples, n_components):
    """scikit-learn's error when there are fewer samples than components.

    `n_samples` counts the rows of positive weight: zero weights drop rows.
    """
    if n_samples < n_components:
        raise ValueError(
            "Expected n_samples >= n_components "
            f"but got n_components = {n_components}, n_samples = {n_samples}"
        )


def _check_shape(param, param_shape, name):
    """Raise sklearn's error when a prior array has the wrong shape."""
    if param.shape != param_shape:
        raise ValueError(
            "The parameter '%s' should have the shape of %s, but got %s"
            % (name, param_shape, param.shape)
        )


def _check_precision_matrix(matrix, covariance_type):
    """Raise sklearn's error unless `matrix` is symmetric positive definite."""
    if not (np.allclose(matrix, matrix.T) and np.all(np.linalg.eigvalsh(matrix) > 0.0)):
        raise ValueError(
            "'%s precision' should be symmetric, positive-definite" % covariance_type
        )


def _check_precision_positivity(vector, covariance_type):
    """Raise sklearn's error unless every entry of `vector` is positive."""
    if np.any(np.less_equal(vector, 0.0)):
        raise ValueError("'%s precision' should be positive" % covariance_type)


def _degrees_of_freedom_prior(value, n_features):
    """nu0: D by default; it must exceed D - 1, as scikit-learn checks."""
    if value is None:
        return n_features
    if value > n_features - 1.0:
        return value
    raise ValueError(
        "The parameter 'degrees_of_freedom_prior' "
        "should be greater than %d, but got %.3f." % (n_features - 1, value)
    )


def _given_covariance_prior(value, covariance_type, n_features):
    """The user's `covariance_prior`, checked as scikit-learn checks it."""
    structure = COVARIANCE_STRUCTURES[covariance_type]
    if structure.scale_inverse_rank == 0:
        value = np.asarray(value, dtype=np.float64)
        if value.size != 1:
            raise ValueError(
                "The parameter 'spherical covariance_prior' should be a float, "
                "but got an array of shape %s" % (value.shape,)
            )
        _check_precision_positivity(value, covariance_type)
        return float(value.reshape(()))
    value = check_array(value, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(
        value,
        structure.prior_scale_shape(n_features),
        "%s covariance_prior" % covariance_type,
    )
    if structure.scale_inverse_rank == 2:
        _check_precision_matrix(value, covariance_type)
    else:
        _check_precision_positivity(value, covariance_type)
    return value


def check_observed_features(moments, feature_names=None):
    """Raise if a feature has no observed (non-NaN) entry of positive weight."""
    if moments.missing is None or moments.total_weight <= 0:
        return
    empty = np.flatnonzero(moments.missing.observed_weight <= 0)
    if empty.size:
        names = [
            repr(str(feature_names[j])) if feature_names is not None else str(j)
            for j in empty
        ]
        raise ValueError(
            f"Feature {', '.join(names)} of X has no observed value: every entry "
            "is NaN (or has zero weight). Drop the column, or impute it, before "
            "fitting."
        )


def observed_per_row(moments):
    """The mean number of observed features of a row (n_features if complete)."""
    n_features = moments.shift.shape[0]
    if moments.missing is None or moments.total_weight <= 0:
        return n_features
    return float(np.sum(moments.missing.observed_weight) / moments.total_weight)


def model_prior(params, moments, dtype, total_weight=None):
    """The fitted prior attributes, the standardisation and the backend's prior.

    Where a prior parameter is None it defaults from the data as in
    scikit-learn: `mean_prior_` is the weighted mean of X and
    `covariance_prior_` its weighted empirical covariance (weights count as
    repetitions), both from `moments`.

    Parameters
    ----------
    params : dict
        The estimator's parameters (`get_params(deep=False)`).
    moments : DataMoments
        The data's moments, with the scatter of the covariance type's rank.
    dtype : numpy dtype
        X's dtype, which the data-dependent attributes take.
    total_weight : float, default=None
        The weight that the lower bounds stand for; None for the moments' total.

    Returns
    -------
    model : ModelPrior
    """
    n_features = moments.shift.shape[0]
    check_observed_features(moments)
    covariance_type = params["covariance_type"]
    structure = COVARIANCE_STRUCTURES[covariance_type]
    dtype = np.dtype(dtype).type
    weight_concentration = params["weight_concentration_prior"]
    if weight_concentration is None:
        weight_concentration = 1.0 / params["n_components"]
    mean_precision = params["mean_precision_prior"]
    if mean_precision is None:
        mean_precision = 1.0
    if params["mean_prior"] is None:
        mean = np.asarray(moments.shift).astype(dtype)
    else:
        mean = check_array(
            params["mean_prior"], dtype=[np.float64, np.float32], ensure_2d=False
        )
        _check_shape(mean, (n_features,), "means")
    degrees_of_freedom = _degrees_of_freedom_prior(
        params["degrees_of_freedom_prior"], n_features
    )

    standardisation = Standardisation.from_data_moments(moments, params["reg_covar"])
    if params["covariance_prior"] is None:
        # Reduced in standardised units, where it cannot overflow.
        scaled_covariance = standardisation.covariance_to(moments, structure)
        with np.errstate(over="ignore"):
            covariance = standardisation.scale_matrix_from(scaled_covariance).astype(
                dtype
            )
    else:
        covariance = _given_covariance_prior(
            params["covariance_prior"], covariance_type, n_features
        )
        scaled_covariance = standardisation.scale_matrix_to(covariance)
    if not np.all(np.isfinite(covariance)):
        raise ValueError(
            "The covariance of X overflows the floating point range. "
            "Rescale X, for example with StandardScaler."
        )
    reg_covar = standardisation.reg_covar_to(params["reg_covar"])
    identity = np.eye(n_features) if structure.scale_inverse_rank == 2 else 1.0
    prior = Prior(
        np.float64(weight_concentration),
        np.float64(mean_precision),
        standardisation.mean_to(mean),
        np.float64(degrees_of_freedom),
        scaled_covariance + reg_covar * identity,
    )
    attributes = PriorAttributes(
        weight_concentration, mean_precision, mean, degrees_of_freedom, covariance
    )
    if total_weight is None:
        total_weight = moments.total_weight
    return ModelPrior(
        attributes,
        standardisation,
        prior,
        reg_covar,
        standardisation.log_jacobian(total_weight, observed_per_row(moments)),
        covariance_type,
        params["weight_concentration_prior_type"],
    )
