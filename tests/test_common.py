"""scikit-learn's estimator checks, on every covariance and weight prior type."""

import itertools

from sklearn.utils.estimator_checks import parametrize_with_checks

from skbayesmix import VariationalGaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
WEIGHT_PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]

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
