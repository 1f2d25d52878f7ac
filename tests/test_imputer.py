"""GaussianMixtureImputer: conditional expectations and draws of the predictive."""

import numpy as np
import pandas as pd
import pytest
from conftest import COVARIANCE_TYPES
from scipy import stats
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbayesmix import GaussianMixtureImputer, VariationalGaussianMixture
from skbayesmix._conditional import _predictive_constants


@parametrize_with_checks(
    [
        GaussianMixtureImputer(),
        GaussianMixtureImputer(VariationalGaussianMixture(n_components=2)),
        GaussianMixtureImputer(sample_posterior=True),
    ]
)
def test_sklearn_compatible_imputer(estimator, check):
    check(estimator)


def _two_clusters(n=400, n_features=3, fraction=0.3, seed=0):
    """Two correlated clusters, and the same rows with entries missing at random."""
    rng = np.random.RandomState(seed)
    mixing = rng.randn(n_features, n_features)
    X = np.vstack(
        [
            rng.randn(n // 2, n_features) @ mixing + 3.0,
            rng.randn(n - n // 2, n_features) * 0.5 - 3.0,
        ]
    )
    holes = X.copy()
    holes[rng.rand(*X.shape) < fraction] = np.nan
    holes[0] = np.nan  # one row with every feature missing
    return X, holes


def _dense_scale(fitted, k):
    """Component k's Student-t scale c_k * covariances_[k], as a dense matrix."""
    scale_factor = _predictive_constants(fitted)[1]
    n_features = fitted.means_.shape[1]
    covariance = {
        "full": lambda: fitted.covariances_[k],
        "tied": lambda: fitted.covariances_,
        "diag": lambda: np.diag(fitted.covariances_[k]),
        "spherical": lambda: fitted.covariances_[k] * np.eye(n_features),
    }[fitted.covariance_type]()
    return scale_factor[k] * covariance


def _reference_expectation(fitted, x):
    """E[x_m | x_o] of one row by the textbook formula, component by component."""
    missing = np.isnan(x)
    observed = ~missing
    resp = fitted.predict_proba(x[None])[0]
    expectation = np.zeros(missing.sum())
    for k, mean in enumerate(fitted.means_):
        location = mean[missing].copy()
        if fitted.covariance_type != "diag" and observed.any():
            S = _dense_scale(fitted, k)
            location += S[np.ix_(missing, observed)] @ np.linalg.solve(
                S[np.ix_(observed, observed)], x[observed] - mean[observed]
            )
        expectation += resp[k] * location
    return expectation


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_transform_is_the_conditional_expectation(covariance_type):
    _, holes = _two_clusters()
    imputer = GaussianMixtureImputer(
        VariationalGaussianMixture(n_components=2, covariance_type=covariance_type),
        random_state=0,
    ).fit(holes)
    filled = imputer.transform(holes)
    assert not np.isnan(filled).any()
    np.testing.assert_array_equal(filled[~np.isnan(holes)], holes[~np.isnan(holes)])
    fitted = imputer.estimator_
    for i in np.flatnonzero(np.isnan(holes).any(axis=1))[:60]:
        np.testing.assert_allclose(
            filled[i, np.isnan(holes[i])],
            _reference_expectation(fitted, holes[i]),
            rtol=1e-10,
            atol=1e-10,
        )
    # A row with nothing observed gets the predictive mean.
    np.testing.assert_allclose(filled[0], fitted.weights_ @ fitted.means_, rtol=1e-10)


def test_one_component_is_the_regression_on_the_observed_features():
    # A single Gaussian's conditional mean is linear in x_o: with one component
    # fitted to complete data, the imputation of x_2 from (x_0, x_1) matches the
    # least-squares regression up to the posterior's prior shrinkage.
    rng = np.random.RandomState(0)
    X = rng.randn(5000, 3) @ rng.randn(3, 3)
    imputer = GaussianMixtureImputer().fit(X)
    query = X[:50].copy()
    query[:, 2] = np.nan
    regression = LinearRegression().fit(X[:, :2], X[:, 2])
    np.testing.assert_allclose(
        imputer.transform(query)[:, 2],
        regression.predict(X[:50, :2]),
        atol=0.02 * X[:, 2].std(),
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_draws_follow_the_conditional_student_t(covariance_type):
    # One component, 2-D: x_1 | x_0 is a univariate t with df + 1 degrees of
    # freedom, location mu_1|0 and scale (df + q_0) / (df + 1) * S_1|0 (the
    # 'diag' components are independent t's with df of their own).
    rng = np.random.RandomState(0)
    X = rng.randn(60, 2) @ np.array([[1.0, 0.8], [0.0, 0.6]])
    fitted = VariationalGaussianMixture(covariance_type=covariance_type).fit(X)
    imputer = GaussianMixtureImputer(fitted, sample_posterior=True, random_state=0).fit(
        X
    )
    x_0 = 1.5
    query = np.tile([x_0, np.nan], (20000, 1))
    draws = imputer.transform(query)[:, 1]
    student_df = _predictive_constants(imputer.estimator_)[0][0]
    mean = imputer.estimator_.means_[0]
    S = _dense_scale(imputer.estimator_, 0)
    if covariance_type == "diag":
        df, location, scale2 = student_df, mean[1], S[1, 1]
    else:
        q_0 = (x_0 - mean[0]) ** 2 / S[0, 0]
        df = student_df + 1
        location = mean[1] + S[1, 0] / S[0, 0] * (x_0 - mean[0])
        scale2 = (student_df + q_0) / df * (S[1, 1] - S[1, 0] ** 2 / S[0, 0])
    expected = stats.t(df, loc=location, scale=np.sqrt(scale2))
    assert stats.kstest(draws, expected.cdf).pvalue > 1e-3
    # and the expectation is the mean of the draws' distribution
    expectation = GaussianMixtureImputer(fitted).fit(X).transform(query[:1])[0, 1]
    np.testing.assert_allclose(expectation, location, rtol=1e-10)


def test_draws_are_reproducible_and_keep_observed_entries():
    _, holes = _two_clusters(fraction=0.2)

    def draws():
        imputer = GaussianMixtureImputer(
            VariationalGaussianMixture(n_components=2),
            sample_posterior=True,
            random_state=3,
        )
        return imputer.fit_transform(holes)

    first, second = draws(), draws()
    np.testing.assert_array_equal(first, second)
    observed = ~np.isnan(holes)
    np.testing.assert_array_equal(first[observed], holes[observed])
    assert not np.isnan(first).any()


def test_clustered_data_are_imputed_better_than_by_the_mean():
    X, holes = _two_clusters(n=600, fraction=0.2, seed=1)
    missing = np.isnan(holes)
    ours = GaussianMixtureImputer(
        VariationalGaussianMixture(n_components=2), random_state=0
    ).fit_transform(holes)
    mean = SimpleImputer().fit_transform(holes)

    def rmse(filled):
        return np.sqrt(np.mean((filled[missing] - X[missing]) ** 2))

    assert rmse(ours) < 0.6 * rmse(mean)


def test_pipeline_with_feature_names_and_pandas_output():
    X, holes = _two_clusters()
    frame = pd.DataFrame(holes, columns=["a", "b", "c"])
    pipe = make_pipeline(
        GaussianMixtureImputer(VariationalGaussianMixture(n_components=2)),
        LinearRegression(),
    )
    pipe.fit(frame[["a", "b"]], X[:, 2])
    assert pipe.predict(frame[["a", "b"]]).shape == (len(frame),)
    imputer = GaussianMixtureImputer().set_output(transform="pandas")
    out = imputer.fit_transform(frame)
    assert list(out.columns) == ["a", "b", "c"]
    assert not out.isna().any().any()
    np.testing.assert_array_equal(
        imputer.get_feature_names_out(), np.array(["a", "b", "c"], dtype=object)
    )


@pytest.mark.parametrize("keep_empty_features", [False, True])
def test_features_without_an_observed_value(keep_empty_features):
    _, holes = _two_clusters()
    holes[:, 1] = np.nan
    frame = pd.DataFrame(holes, columns=["a", "b", "c"])
    imputer = GaussianMixtureImputer(keep_empty_features=keep_empty_features)
    out = imputer.fit_transform(frame)
    assert imputer.estimator_.n_features_in_ == 2
    if keep_empty_features:
        assert out.shape == (len(frame), 3)
        np.testing.assert_array_equal(out[:, 1], 0.0)
        assert list(imputer.get_feature_names_out()) == ["a", "b", "c"]
    else:
        assert out.shape == (len(frame), 2)
        assert list(imputer.get_feature_names_out()) == ["a", "c"]
    assert not np.isnan(out).any()
    with pytest.raises(ValueError, match="Every feature of X is missing"):
        GaussianMixtureImputer().fit(np.full((5, 2), np.nan))


def test_float32_stays_float32():
    _, holes = _two_clusters()
    out = GaussianMixtureImputer().fit_transform(holes.astype(np.float32))
    assert out.dtype == np.float32
    assert not np.isnan(out).any()
