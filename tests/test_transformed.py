"""Tests for TransformedDensity: the change of variables through a transformer."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    PolynomialFeatures,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbayesmix import TransformedDensity, VariationalGaussianMixture

# Small fits of skewed data stop at max_iter; the density is still normalised.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _skewed_data(n_samples=300):
    """Correlated, skewed 2-D data on all of R^2, with very different scales."""
    rng = np.random.RandomState(0)
    Z = rng.randn(n_samples, 2) @ np.array([[1.0, 0.6], [0.0, 0.8]])
    return np.exp(0.5 * Z) * [3.0, 0.5] + [1.0, -2.0]


def _positive_data(n_samples=300):
    """Skewed positive 2-D data, on which Box-Cox and Yeo-Johnson both find
    lambdas in (0, 2), so that the power transforms map onto all of R^2."""
    return np.random.RandomState(0).gamma(4.0, size=(n_samples, 2)) * [1.0, 5.0]


def _log_abs_det_log(X):
    return -np.log(X).sum(axis=1)


def _mixture(n_components=3):
    return VariationalGaussianMixture(n_components=n_components, random_state=0)


def _midpoint_integral(score_samples, X, n_points=300, lower_bound=None):
    """Midpoint rule for the integral of exp(score_samples) over a wide box.

    The box spans the data's range extended by one range on each side,
    clipped at `lower_bound` for densities on the positive quadrant.
    """
    low, high = X.min(axis=0), X.max(axis=0)
    low, high = low - (high - low), high + (high - low)
    if lower_bound is not None:
        low = np.maximum(low, lower_bound)
    step = (high - low) / n_points
    axes = [low[d] + (np.arange(n_points) + 0.5) * step[d] for d in range(2)]
    grid = np.stack(np.meshgrid(*axes), axis=-1).reshape(-1, 2)
    return np.exp(score_samples(grid)).sum() * np.prod(step)


# (transformer, data, lower bound of the integration box, log-derivative)
TRANSFORMERS = {
    "StandardScaler": (StandardScaler(), _skewed_data, None, None),
    "MinMaxScaler": (MinMaxScaler(), _skewed_data, None, None),
    "MaxAbsScaler": (MaxAbsScaler(), _skewed_data, None, None),
    "RobustScaler": (RobustScaler(), _skewed_data, None, None),
    "PCA": (PCA(), _skewed_data, None, None),
    "PCA-whiten": (PCA(whiten=True), _skewed_data, None, None),
    "yeo-johnson": (PowerTransformer(), _positive_data, None, None),
    "yeo-johnson-raw": (
        PowerTransformer(standardize=False),
        _positive_data,
        None,
        None,
    ),
    "box-cox": (PowerTransformer(method="box-cox"), _positive_data, 0.0, None),
    "log": (
        FunctionTransformer(np.log, np.exp),
        _positive_data,
        0.0,
        _log_abs_det_log,
    ),
    "scaler-pca-whiten": (
        make_pipeline(StandardScaler(), PCA(whiten=True)),
        _skewed_data,
        None,
        None,
    ),
    "log-scaler-pca": (
        make_pipeline(
            FunctionTransformer(np.log, np.exp), StandardScaler(), PCA(whiten=True)
        ),
        _positive_data,
        0.0,
        _log_abs_det_log,
    ),
}


@parametrize_with_checks(
    [
        TransformedDensity(
            VariationalGaussianMixture(n_components=2, max_iter=20, random_state=0),
            StandardScaler(),
        ),
        TransformedDensity(
            VariationalGaussianMixture(n_components=2, max_iter=20, random_state=0),
            make_pipeline(StandardScaler(), PCA(whiten=True)),
        ),
    ]
)
def test_transformed_density_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_transformed_density_integrates_to_one(name):
    transformer, make_data, lower_bound, log_abs_det = TRANSFORMERS[name]
    X = make_data()
    density = TransformedDensity(
        _mixture(), transformer, log_abs_det_jacobian=log_abs_det
    ).fit(X)
    integral = _midpoint_integral(density.score_samples, X, lower_bound=lower_bound)
    assert integral == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name", ["MaxAbsScaler", "PCA-whiten", "log"])
def test_pipeline_score_samples_does_not_integrate_to_one(name):
    # The reason TransformedDensity exists: the same model without the
    # change of variables is a density of T(X), not of X.
    transformer, make_data, lower_bound, _ = TRANSFORMERS[name]
    X = make_data()
    pipeline = make_pipeline(clone(transformer), _mixture()).fit(X)
    integral = _midpoint_integral(pipeline.score_samples, X, lower_bound=lower_bound)
    assert abs(integral - 1.0) > 0.3


@pytest.mark.parametrize("name", ["StandardScaler", "yeo-johnson", "box-cox"])
def test_transformed_density_log_abs_det_matches_finite_differences(name):
    transformer, make_data, _, _ = TRANSFORMERS[name]
    X = make_data(50)
    density = TransformedDensity(_mixture(1), transformer).fit(X)
    Xt = density.transformer_.transform(X)
    # Central differences of T, column by column: J is diagonal here.
    eps = 1e-6
    jacobian_diagonal = np.column_stack(
        [
            (
                density.transformer_.transform(X + eps * np.eye(2)[d])[:, d]
                - density.transformer_.transform(X - eps * np.eye(2)[d])[:, d]
            )
            / (2 * eps)
            for d in range(2)
        ]
    )
    expected = density.estimator_.score_samples(Xt) + np.log(
        np.abs(jacobian_diagonal)
    ).sum(axis=1)
    assert_allclose(density.score_samples(X), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["StandardScaler", "PCA-whiten", "log-scaler-pca"])
def test_transformed_density_samples_follow_data(name):
    transformer, make_data, _, log_abs_det = TRANSFORMERS[name]
    X = make_data(1000)
    density = TransformedDensity(
        _mixture(), transformer, log_abs_det_jacobian=log_abs_det
    ).fit(X)
    samples, labels = density.sample(20000)
    assert samples.shape == (20000, 2) and labels.shape == (20000,)
    spread = X.std(axis=0)
    assert_allclose(samples.mean(axis=0), X.mean(axis=0), atol=0.05 * spread.max())
    correlation = np.corrcoef(X.T)[0, 1]
    assert np.corrcoef(samples.T)[0, 1] == pytest.approx(correlation, abs=0.05)
    assert_allclose(samples.std(axis=0), spread, rtol=0.1)


def test_transformed_density_predict_matches_estimator_on_transformed_data():
    X = _skewed_data()
    density = TransformedDensity(_mixture(), StandardScaler()).fit(X)
    Xt = density.transformer_.transform(X)
    np.testing.assert_array_equal(density.predict(X), density.estimator_.predict(Xt))
    assert_allclose(density.predict_proba(X), density.estimator_.predict_proba(Xt))
    assert density.score(X) == pytest.approx(np.mean(density.score_samples(X)))


def test_transformed_density_interval_is_shifted_by_log_jacobian():
    X = _skewed_data()
    density = TransformedDensity(_mixture(), StandardScaler()).fit(X)
    Xt = density.transformer_.transform(X)
    log_jacobian = -np.log(density.transformer_.scale_).sum()
    lower, upper = density.score_samples_interval(X, level=0.8, random_state=0)
    lower_t, upper_t = density.estimator_.score_samples_interval(
        Xt, level=0.8, random_state=0
    )
    assert_allclose(lower, lower_t + log_jacobian)
    assert_allclose(upper, upper_t + log_jacobian)


def test_transformed_density_interval_hidden_without_estimator_support():
    from sklearn.neighbors import KernelDensity

    density = TransformedDensity(KernelDensity(), StandardScaler())
    assert not hasattr(density, "score_samples_interval")
    assert not hasattr(density.fit(_skewed_data()), "predict")
    assert hasattr(TransformedDensity(_mixture()), "score_samples_interval")


def test_transformed_density_grid_search_over_n_components():
    X = _skewed_data(150)
    search = GridSearchCV(
        TransformedDensity(
            VariationalGaussianMixture(max_iter=30, random_state=0), StandardScaler()
        ),
        {"estimator__n_components": [1, 2, 3]},
        cv=3,
    )
    search.fit(X)
    assert search.best_params_["estimator__n_components"] in (1, 2, 3)
    assert np.isfinite(search.best_score_)
    assert (
        search.best_estimator_.estimator_.n_components
        == (search.best_params_["estimator__n_components"])
    )


def test_transformed_density_defaults_are_mixture_and_identity():
    X = _skewed_data()
    density = TransformedDensity().fit(X)
    mixture = VariationalGaussianMixture().fit(X)
    assert_allclose(density.score_samples(X), mixture.score_samples(X))


@pytest.mark.parametrize(
    "transformer",
    [
        QuantileTransformer(n_quantiles=10),
        PolynomialFeatures(),
        make_pipeline(StandardScaler(), QuantileTransformer(n_quantiles=10)),
    ],
)
def test_transformed_density_rejects_unsupported_transformer(transformer):
    density = TransformedDensity(_mixture(), transformer)
    with pytest.raises(ValueError, match="Supported transformers: StandardScaler"):
        density.fit(_skewed_data())


def test_transformed_density_rejects_pca_dropping_components():
    density = TransformedDensity(_mixture(), PCA(n_components=1))
    with pytest.raises(ValueError, match="PCA kept 1 of 2 components"):
        density.fit(_skewed_data())


def test_transformed_density_rejects_clipping_min_max_scaler():
    density = TransformedDensity(_mixture(), MinMaxScaler(clip=True))
    with pytest.raises(ValueError, match="clip=True"):
        density.fit(_skewed_data())


def test_transformed_density_function_transformer_needs_log_derivative():
    density = TransformedDensity(_mixture(), FunctionTransformer(np.log, np.exp))
    with pytest.raises(ValueError, match="pass log_abs_det_jacobian"):
        density.fit(_positive_data())


def test_transformed_density_rejects_two_function_transformers():
    transformer = make_pipeline(
        FunctionTransformer(np.log, np.exp), FunctionTransformer(np.sqrt, np.square)
    )
    density = TransformedDensity(
        _mixture(), transformer, log_abs_det_jacobian=_log_abs_det_log
    )
    with pytest.raises(ValueError, match="at most one FunctionTransformer"):
        density.fit(_positive_data())
