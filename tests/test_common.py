"""scikit-learn's estimator checks, on every covariance and weight prior type."""

import itertools

from conftest import COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbayesmix import VariationalGaussianMixture

# At the default n_components=1, predict_proba is 1 whatever the fit, which hides
# most fitting bugs (the sample-weight checks among them): every structure is
# checked at n_components=2 too.
ESTIMATORS = [
    VariationalGaussianMixture(learning_method="online"),
    VariationalGaussianMixture(learning_method="online", n_components=2),
] + [
    VariationalGaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_prior_type,
    )
    for n_components, covariance_type, weight_prior_type in itertools.product(
        [1, 2], COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES
    )
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
