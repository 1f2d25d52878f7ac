"""scikit-learn's estimator checks, on every covariance and weight prior type."""

import itertools

from conftest import COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbayesmix import VariationalGaussianMixture

ESTIMATORS = [
    VariationalGaussianMixture(),
    VariationalGaussianMixture(learning_method="online"),
] + [
    VariationalGaussianMixture(
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_prior_type,
    )
    for covariance_type, weight_prior_type in itertools.product(
        COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES
    )
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
