"""Tests for prediction with missing features (NaN): exact marginals, batched."""

import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, blobs
from numpy.testing import assert_allclose, assert_array_equal
from scipy import integrate, stats
from scipy.special import logsumexp

from skbayesmix import VariationalGaussianMixture
from skbayesmix._density_band import draw_parameters, fitted_posterior

_FITTED = {}


def _fitted(covariance_type, n_features, dtype=np.float64):
    """A model fit on complete data, cached: few points keep the t's tails heavy.

    About 10 points per component give df near 10, where a wrong df of the
    marginal would show.
    """
    key = (covariance_type, n_features, np.dtype(dtype).name)
    if key not in _FITTED:
        rng = np.random.RandomState(0)
        X = blobs(rng, n_per_blob=10, n_features=min(n_features, 3))
        if n_features > 3:
            X = np.hstack([X, rng.randn(X.shape[0], n_features - 3)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITTED[key] = VariationalGaussianMixture(
                n_components=3, covariance_type=covariance_type, random_state=0
            ).fit(X.astype(dtype))
    return _FITTED[key]


def _scipy_component_log_prob(estimator, x):
    """log of each component's marginal Student-t at the observed entries of x.

    Built from the fitted attributes with scipy.stats, one row at a time.

    Returns
    -------
    log_prob : ndarray of shape (n_components,)
    """
    covariance_type = estimator.covariance_type
    n_components, n_features = estimator.means_.shape
    observed = ~np.isnan(x)
    nu = np.broadcast_to(estimator.degrees_of_freedom_, (n_components,))
    log_prob = np.zeros(n_components)
    if not observed.any():
        return log_prob
    for k in range(n_components):
        beta = estimator.mean_precision_[k]
        mean = estimator.means_[k][observed]
        covariances = estimator.covariances_
        if covariance_type == "full":
            df = nu[k] + 1 - n_features
            shape = nu[k] * (1 + beta) / (beta * df) * covariances[k]
        elif covariance_type == "tied":
            df = nu[k] + 1 - n_features
            shape = nu[k] * (1 + beta) / (beta * df) * covariances
        elif covariance_type == "diag":
            scale = np.sqrt(covariances[k] * (1 + beta) / beta)[observed]
            log_prob[k] = (
                stats.t(df=nu[k], loc=mean, scale=scale).logpdf(x[observed]).sum()
            )
            continue
        else:
            df = n_features * nu[k]
            shape = covariances[k] * (1 + beta) / beta * np.eye(n_features)
        log_prob[k] = stats.multivariate_t(
            loc=mean, shape=shape[np.ix_(observed, observed)], df=df
        ).logpdf(x[observed])
    return log_prob


def _scipy_weighted_log_prob(estimator, X):
    """log weights_ + the marginal log densities, row by row with SciPy.

    Returns
    -------
    weighted_log_prob : ndarray of shape (n_samples, n_components)
    """
    log_prob = np.array([_scipy_component_log_prob(estimator, x) for x in X])
    return log_prob + np.log(estimator.weights_)


def _log_integral_over(estimator, x, feature):
    """log of the integral of exp(score_samples) over x[feature] on the real line."""

    def density(value):
        completed = x.copy()
        completed[feature] = value
        return np.exp(estimator.score_samples(completed[None])[0])

    integral, _ = integrate.quad(
        density, -np.inf, np.inf, epsabs=0.0, epsrel=1e-10, limit=200
    )
    return np.log(integral)


@pytest.mark.parametrize("n_features", [2, 3])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_one_missing_equals_integral(covariance_type, n_features):
    estimator = _fitted(covariance_type, n_features)
    rng = np.random.RandomState(0)
    x = estimator.means_[1] + rng.randn(n_features)

    for feature in range(n_features):
        x_missing = x.copy()
        x_missing[feature] = np.nan

        score = estimator.score_samples(x_missing[None])[0]

        assert abs(score - _log_integral_over(estimator, x, feature)) < 1e-4


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_two_missing_equals_integral_of_one_missing(covariance_type):
    # The integral of the one-NaN marginal (checked against the joint above)
    # over a second feature: one quad rather than a dblquad of the joint.
    estimator = _fitted(covariance_type, 3)
    rng = np.random.RandomState(1)
    x = estimator.means_[0] + rng.randn(3)
    x_one_missing = x.copy()
    x_one_missing[2] = np.nan
    x_two_missing = x_one_missing.copy()
    x_two_missing[0] = np.nan

    score = estimator.score_samples(x_two_missing[None])[0]

    expected = _log_integral_over(estimator, x_one_missing, 0)
    assert abs(score - expected) < 1e-4
    assert_allclose(
        score, logsumexp(_scipy_weighted_log_prob(estimator, x_two_missing[None]))
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_predict_proba_missing_uses_marginal_densities(covariance_type):
    estimator = _fitted(covariance_type, 3)
    rng = np.random.RandomState(0)
    X = estimator.means_[rng.randint(3, size=12)] + 1.5 * rng.randn(12, 3)
    X[rng.rand(12, 3) < 0.4] = np.nan
    X[0, 1] = np.nan

    weighted_log_prob = _scipy_weighted_log_prob(estimator, X)
    expected = np.exp(weighted_log_prob - logsumexp(weighted_log_prob, axis=1)[:, None])

    assert_allclose(estimator.predict_proba(X), expected, rtol=1e-10, atol=1e-12)
    assert_array_equal(estimator.predict(X), np.argmax(weighted_log_prob, axis=1))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_all_missing_row_is_zero_with_weights(covariance_type):
    estimator = _fitted(covariance_type, 3)
    X = np.full((2, 3), np.nan)
    X[1] = estimator.means_[0]

    score = estimator.score_samples(X)
    resp = estimator.predict_proba(X)

    assert_allclose(score[0], 0.0, atol=1e-12)
    assert_allclose(resp[0], estimator.weights_, rtol=1e-12)
    assert np.isfinite(score[1])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_missing_leaves_complete_rows_unchanged(covariance_type):
    estimator = _fitted(covariance_type, 3)
    rng = np.random.RandomState(0)
    X = 3.0 * rng.randn(500, 3)
    # A far row, recomputed in log space, must stay as it was too.
    X[7] = 1e200
    X_missing = X.copy()
    incomplete = rng.rand(500) < 0.3
    X_missing[incomplete, rng.randint(3, size=incomplete.sum())] = np.nan
    X_missing[3] = np.nan
    incomplete[3] = True
    X_missing[8, 0] = 1e200
    X_missing[8, 1] = np.nan
    incomplete[8] = True

    for method in ["score_samples", "predict_proba", "predict"]:
        today = getattr(estimator, method)(X)[~incomplete]
        result = getattr(estimator, method)(X_missing)
        assert np.array_equal(result[~incomplete], today)
        assert np.isfinite(result).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_missing_rejects_inf(covariance_type):
    estimator = _fitted(covariance_type, 2)
    X = np.array([[0.0, np.nan], [np.inf, 1.0]])

    for method in ["score_samples", "score", "predict", "predict_proba"]:
        with pytest.raises(ValueError, match="infinity"):
            getattr(estimator, method)(X)
    with pytest.raises(ValueError, match="infinity"):
        estimator.score_samples_interval(X, n_draws=10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_missing_keeps_float32(covariance_type):
    rng = np.random.RandomState(0)
    X = 3.0 * rng.randn(50, 3)
    X[rng.rand(50, 3) < 0.3] = np.nan
    estimator_32 = _fitted(covariance_type, 3, np.float32)
    estimator_64 = _fitted(covariance_type, 3)

    score_32 = estimator_32.score_samples(X.astype(np.float32))
    resp_32 = estimator_32.predict_proba(X.astype(np.float32))

    assert score_32.dtype == np.float32
    assert resp_32.dtype == np.float32
    assert estimator_64.score_samples(X.astype(np.float32)).dtype == np.float64
    reference = _scipy_weighted_log_prob(estimator_32, X.astype(np.float32))
    assert_allclose(score_32, logsumexp(reference, axis=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_many_patterns_match_per_row_reference(covariance_type):
    estimator = _fitted(covariance_type, 8)
    rng = np.random.RandomState(0)
    X = estimator.means_[rng.randint(3, size=2000)] + 2.0 * rng.randn(2000, 8)
    X[rng.rand(2000, 8) < 0.2] = np.nan
    # Several hundred patterns, some rows with one feature left, one with none.
    X[:5, 1:] = np.nan
    X[5] = np.nan

    weighted_log_prob = _scipy_weighted_log_prob(estimator, X)
    expected_score = logsumexp(weighted_log_prob, axis=1)

    assert len(np.unique(np.isnan(X), axis=0)) > 100
    assert_allclose(estimator.score_samples(X), expected_score, rtol=1e-8, atol=1e-8)
    assert_allclose(
        estimator.predict_proba(X),
        np.exp(weighted_log_prob - expected_score[:, None]),
        rtol=1e-8,
        atol=1e-10,
    )
    assert_allclose(estimator.score(X), expected_score.mean(), rtol=1e-10)


def _brute_force_band(estimator, X, level, n_draws, seed):
    """The band from the same draws, each marginal Gaussian through SciPy."""
    draws = draw_parameters(
        fitted_posterior(estimator), n_draws, np.random.RandomState(seed)
    )
    factors = draws.precision_factors
    if factors.ndim == 3:
        precisions = np.einsum("skd,kde->skde", factors**2, np.eye(X.shape[1])[None])
    else:
        precisions = factors @ np.swapaxes(factors, 2, 3)
    covariances = np.linalg.inv(precisions)  # [S, K, D, D]
    lower, upper = [], []
    for x in X:
        observed = ~np.isnan(x)
        log_density = np.zeros(n_draws)
        if observed.any():
            log_prob = np.array(
                [
                    [
                        stats.multivariate_normal(
                            draws.means[s, k, observed],
                            covariances[s, k][np.ix_(observed, observed)],
                        ).logpdf(x[observed])
                        for k in range(factors.shape[1])
                    ]
                    for s in range(n_draws)
                ]
            )  # [S, K]
            log_density = logsumexp(log_prob + draws.log_weights, axis=1)
        quantiles = np.quantile(log_density, [(1 - level) / 2, (1 + level) / 2])
        lower.append(quantiles[0])
        upper.append(quantiles[1])
    return np.array(lower), np.array(upper)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_interval_missing_matches_marginal_per_draw(covariance_type):
    estimator = _fitted(covariance_type, 3)
    rng = np.random.RandomState(0)
    X = estimator.means_[rng.randint(3, size=8)] + rng.randn(8, 3)
    X[[0, 1, 2], [0, 1, 2]] = np.nan
    X[3, :2] = np.nan
    X[4, 1:] = np.nan
    X[5] = np.nan

    lower, upper = estimator.score_samples_interval(
        X, level=0.8, n_draws=30, random_state=3
    )

    expected_lower, expected_upper = _brute_force_band(estimator, X, 0.8, 30, 3)
    assert_allclose(lower, expected_lower, rtol=1e-10, atol=1e-10)
    assert_allclose(upper, expected_upper, rtol=1e-10, atol=1e-10)
    assert lower[5] == upper[5] == 0.0


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_interval_missing_leaves_complete_rows_unchanged(
    covariance_type,
):
    estimator = _fitted(covariance_type, 3)
    rng = np.random.RandomState(0)
    X = 2.0 * rng.randn(300, 3)
    X_missing = X.copy()
    incomplete = rng.rand(300) < 0.3
    X_missing[incomplete, rng.randint(3, size=incomplete.sum())] = np.nan

    today = estimator.score_samples_interval(X, n_draws=20, random_state=0)
    result = estimator.score_samples_interval(X_missing, n_draws=20, random_state=0)

    for end_today, end in zip(today, result):
        assert np.array_equal(end[~incomplete], end_today[~incomplete])
        assert np.isfinite(end).all()


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_dask_prediction_missing_equals_in_memory(covariance_type):
    da = pytest.importorskip("dask.array")
    estimator = _fitted(covariance_type, 3)
    rng = np.random.RandomState(0)
    X = 3.0 * rng.randn(200, 3)
    X[rng.rand(200, 3) < 0.3] = np.nan
    X[10] = np.nan
    X_dask = da.from_array(X, chunks=(64, 3))

    for method in ["score_samples", "predict_proba", "predict"]:
        lazy = getattr(estimator, method)(X_dask)
        assert_array_equal(lazy.compute(), getattr(estimator, method)(X))
    assert_allclose(estimator.score(X_dask), estimator.score(X), rtol=1e-12)
