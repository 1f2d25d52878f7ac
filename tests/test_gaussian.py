"""Tests for the predictive Student-t maths in skbayesmix._gaussian."""

import tracemalloc
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from scipy.special import logsumexp
from sklearn.mixture._gaussian_mixture import (
    _compute_precision_cholesky as sklearn_compute_precision_cholesky,
)

from skbayesmix import _gaussian
from skbayesmix._gaussian import (
    _compute_precision_cholesky,
    _compute_precisions,
    _estimate_log_prob_resp,
    _estimate_log_student_t_prob,
    _sample_student_t_mixture,
)


def _make_posterior(
    rng, n_components, n_features, covariance_type, nu_excess=(0.2, 5.0)
):
    """Random posterior parameters, with nu - (D - 1) drawn in `nu_excess`."""
    means = 3.0 * rng.randn(n_components, n_features)
    if covariance_type in ("full", "tied"):
        n_matrices = n_components if covariance_type == "full" else 1
        factors = rng.randn(n_matrices, n_features, n_features)
        covariances = factors @ factors.transpose(0, 2, 1) / n_features
        covariances += 0.3 * np.eye(n_features)
        if covariance_type == "tied":
            covariances = covariances[0]
    elif covariance_type == "diag":
        covariances = rng.uniform(0.3, 2.0, size=(n_components, n_features))
    else:
        covariances = rng.uniform(0.3, 2.0, size=n_components)
    nu = n_features - 1 + rng.uniform(*nu_excess, size=n_components)
    if covariance_type == "tied":
        # scikit-learn stores a single degrees_of_freedom_ for 'tied'.
        nu = float(nu[0])
    return {
        "weights": rng.dirichlet(np.ones(n_components)),
        "means": means,
        "covariances": covariances,
        "mean_precision": rng.uniform(0.5, 10.0, size=n_components),
        "degrees_of_freedom": nu,
    }


def _scipy_student_t(posterior, covariance_type, k):
    """Frozen SciPy distribution(s) of component k's predictive Student-t."""
    n_features = posterior["means"].shape[1]
    mean = posterior["means"][k]
    beta = posterior["mean_precision"][k]
    nu = np.broadcast_to(posterior["degrees_of_freedom"], (len(posterior["means"]),))
    nu = nu[k]
    covariances = posterior["covariances"]
    covariance = covariances if covariance_type == "tied" else covariances[k]
    if covariance_type in ("full", "tied"):
        df = nu + 1 - n_features
        shape = nu * (1 + beta) / (beta * df) * covariance
        return stats.multivariate_t(loc=mean, shape=shape, df=df)
    scale2 = covariance * (1 + beta) / beta
    if covariance_type == "diag":
        return stats.t(df=nu, loc=mean, scale=np.sqrt(scale2))
    return stats.multivariate_t(
        loc=mean, shape=scale2 * np.eye(n_features), df=n_features * nu
    )


def _scipy_log_prob(X, posterior, covariance_type):
    n_components = posterior["means"].shape[0]
    log_prob = np.empty((X.shape[0], n_components))
    for k in range(n_components):
        dist = _scipy_student_t(posterior, covariance_type, k)
        if covariance_type == "diag":
            log_prob[:, k] = dist.logpdf(X).sum(axis=1)
        else:
            log_prob[:, k] = dist.logpdf(X)
    return log_prob


def _log_prob(X, posterior, covariance_type):
    precisions_cholesky = _compute_precision_cholesky(
        posterior["covariances"], covariance_type
    )
    return _estimate_log_student_t_prob(
        X,
        posterior["means"],
        precisions_cholesky,
        covariance_type,
        posterior["mean_precision"],
        posterior["degrees_of_freedom"],
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_student_t_prob_matches_scipy(covariance_type):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 4, 3, covariance_type)
    X = 4.0 * rng.randn(50, 3)

    log_prob = _log_prob(X, posterior, covariance_type)

    assert log_prob.shape == (50, 4)
    assert_allclose(log_prob, _scipy_log_prob(X, posterior, covariance_type))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_student_t_prob_chunked_equals_unchunked(
    covariance_type, monkeypatch
):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 3, 2, covariance_type)
    X = 4.0 * rng.randn(103, 2)
    # 26 rows so far out that they are recomputed, themselves in chunks.
    X[::4] *= 1e300
    unchunked = _log_prob(X, posterior, covariance_type)

    # 7 rows per chunk leaves a ragged last chunk.
    monkeypatch.setattr(_gaussian, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(_gaussian, "_MIN_CHUNK_ROWS", 7)
    assert _gaussian._chunk_n_rows(3, 2, 8) == 7
    chunked = _log_prob(X, posterior, covariance_type)

    assert_allclose(chunked, unchunked, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_student_t_prob_bounded_memory(covariance_type):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 10, 2, covariance_type)
    X = rng.randn(200_000, 2)

    tracemalloc.start()
    try:
        log_prob = _log_prob(X, posterior, covariance_type)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Unchunked, one (n_samples, n_components, n_features) temporary is 32 MB.
    assert peak - log_prob.nbytes < 4 * _gaussian._CHUNK_BYTES + 2**20


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_student_t_prob_keeps_float32(covariance_type):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 3, 2, covariance_type)
    X = 4.0 * rng.randn(20, 2)
    posterior_32 = {
        name: np.asarray(value, dtype=np.float32) for name, value in posterior.items()
    }

    log_prob_32 = _log_prob(X.astype(np.float32), posterior_32, covariance_type)

    assert log_prob_32.dtype == np.float32
    assert_allclose(log_prob_32, _log_prob(X, posterior, covariance_type), rtol=1e-4)


def _tail_exponent(posterior, covariance_type):
    """a_k with log p_k(t * x) = const - a_k * log(t) + o(1) as t -> inf."""
    n_components, n_features = posterior["means"].shape
    nu = np.broadcast_to(posterior["degrees_of_freedom"], (n_components,))
    # -(df + D) / 2 * log(q / df) with q growing as t^2; 'diag' sums D
    # univariate tails with df = nu.
    if covariance_type in ("full", "tied"):
        return nu + 1.0
    return n_features * (nu + 1.0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_student_t_prob_finite_far_from_means(covariance_type):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 3, 2, covariance_type)
    X = 4.0 * rng.randn(20, 2)
    # q stays finite at 1e100 but overflows by 1e300.
    scales = np.array([1e100, 1e150, 1e200, 1e300])

    log_prob = np.stack([_log_prob(s * X, posterior, covariance_type) for s in scales])

    assert np.all(np.isfinite(log_prob))
    assert np.all(np.diff(log_prob, axis=0) < 0)
    expected_step = (
        -_tail_exponent(posterior, covariance_type)
        * np.log(scales[1:] / scales[:-1])[:, None, None]
    )  # [n_scales - 1, 1, n_components]
    assert_allclose(
        np.diff(log_prob, axis=0),
        np.broadcast_to(expected_step, (3, 20, 3)),
        rtol=1e-10,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_student_t_prob_finite_far_from_means_float32(covariance_type):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 3, 2, covariance_type)
    posterior_32 = {
        name: np.asarray(value, dtype=np.float32) for name, value in posterior.items()
    }
    X = 4.0 * rng.randn(20, 2).astype(np.float32)
    # In float32, q overflows from about 1e20 on.
    scales = [np.float32(1e10), np.float32(1e20), np.float32(1e30)]

    log_prob = np.stack(
        [_log_prob(s * X, posterior_32, covariance_type) for s in scales]
    )

    assert log_prob.dtype == np.float32
    assert np.all(np.isfinite(log_prob))
    assert np.all(np.diff(log_prob, axis=0) < 0)
    posterior_64 = {
        name: np.asarray(value, dtype=np.float64)
        for name, value in posterior_32.items()
    }
    log_prob_64 = np.stack(
        [
            _log_prob((s * X).astype(np.float64), posterior_64, covariance_type)
            for s in scales
        ]
    )
    assert_allclose(log_prob, log_prob_64, rtol=1e-5)


@pytest.mark.parametrize(
    "scale, dtype",
    [(1e150, np.float64), (1e300, np.float64), (1e30, np.float32)],
)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_prob_resp_finite_far_from_means(covariance_type, scale, dtype):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 3, 2, covariance_type)
    posterior = {
        name: np.asarray(value, dtype=dtype) for name, value in posterior.items()
    }
    X = dtype(scale) * (4.0 * rng.randn(20, 2)).astype(dtype)

    weighted_log_prob = np.log(posterior["weights"]) + _log_prob(
        X, posterior, covariance_type
    )
    log_prob_norm, log_resp = _estimate_log_prob_resp(weighted_log_prob)

    assert np.all(np.isfinite(log_prob_norm))
    assert np.all(np.isfinite(log_resp))
    assert_allclose(
        np.exp(log_resp).sum(axis=1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_student_t_kernel_far_matches_kernel(
    covariance_type, dtype, monkeypatch
):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 3, 2, covariance_type)
    posterior = {
        name: np.asarray(value, dtype=dtype) for name, value in posterior.items()
    }
    # Rows at the means make q exactly 0 on the log-space path.
    X = np.vstack([4.0 * rng.randn(50, 2), posterior["means"]]).astype(dtype)
    log_prob = _log_prob(X, posterior, covariance_type)

    def non_finite_kernel(X, *args):
        return np.full((X.shape[0], 3), np.nan, dtype=X.dtype)

    # Every row now looks overflowed, so every row takes the log-space path.
    monkeypatch.setattr(_gaussian, "_estimate_log_student_t_kernel", non_finite_kernel)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_prob_far = _log_prob(X, posterior, covariance_type)

    assert log_prob_far.dtype == dtype
    assert_allclose(log_prob_far, log_prob, rtol=1e-5 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_student_t_prob_far_rows_leave_other_rows_unchanged(
    covariance_type,
):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 3, 2, covariance_type)
    X = 4.0 * rng.randn(30, 2)
    is_far = np.arange(30) % 3 == 0
    X_mixed = np.where(is_far[:, None], 1e300 * X, X)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_prob_mixed = _log_prob(X_mixed, posterior, covariance_type)

    assert np.all(np.isfinite(log_prob_mixed))
    assert_array_equal(
        log_prob_mixed[~is_far], _log_prob(X, posterior, covariance_type)[~is_far]
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_log_student_t_prob_leaves_infinite_rows_alone(covariance_type):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 3, 2, covariance_type)
    X = 4.0 * rng.randn(10, 2)
    X_bad = X.copy()
    X_bad[2, 0] = np.inf
    # A NaN is a missing feature (tests/test_missing_prediction.py), but not
    # next to an inf.
    X_bad[5, 0] = -np.inf
    X_bad[5, 1] = np.nan

    # Only rows with an inf fail the fast path, so none is recomputed.
    log_prob = _log_prob(X_bad, posterior, covariance_type)

    is_bad = np.isin(np.arange(10), [2, 5])
    assert not np.any(np.isfinite(log_prob[is_bad]).all(axis=1))
    assert_array_equal(
        log_prob[~is_bad], _log_prob(X, posterior, covariance_type)[~is_bad]
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mixture_density_integrates_to_one(covariance_type):
    rng = np.random.RandomState(0)
    # df >= 3 keeps the tail mass outside the box well below 1%.
    posterior = _make_posterior(rng, 3, 2, covariance_type, nu_excess=(3.0, 6.0))
    grid = np.linspace(-60.0, 60.0, 400)
    cell_area = (grid[1] - grid[0]) ** 2
    X = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)

    log_prob = _log_prob(X, posterior, covariance_type)
    log_density = logsumexp(np.log(posterior["weights"]) + log_prob, axis=1)

    assert np.exp(log_density).sum() * cell_area == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_compute_precision_cholesky_matches_sklearn(covariance_type, dtype):
    rng = np.random.RandomState(0)
    covariances = _make_posterior(rng, 3, 4, covariance_type)["covariances"]
    covariances = covariances.astype(dtype)

    precisions_cholesky = _compute_precision_cholesky(covariances, covariance_type)

    assert precisions_cholesky.dtype == dtype
    assert_allclose(
        precisions_cholesky,
        sklearn_compute_precision_cholesky(covariances, covariance_type),
        rtol=1e-5 if dtype == np.float32 else 1e-12,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_compute_precision_cholesky_rejects_non_positive_definite(covariance_type):
    rng = np.random.RandomState(0)
    covariances = _make_posterior(rng, 3, 2, covariance_type)["covariances"]
    if covariance_type == "full":
        covariances[1] = [[1.0, 2.0], [2.0, 1.0]]
        match = "component 1 is not positive definite"
    elif covariance_type == "tied":
        covariances = np.zeros((2, 2))
        match = "not positive definite"
    else:
        covariances[1] = 0.0
        match = "not strictly positive"

    with pytest.raises(ValueError, match=match):
        _compute_precision_cholesky(covariances, covariance_type)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_compute_precisions_inverts_covariances(covariance_type):
    rng = np.random.RandomState(0)
    covariances = _make_posterior(rng, 3, 4, covariance_type)["covariances"]

    precisions = _compute_precisions(
        _compute_precision_cholesky(covariances, covariance_type), covariance_type
    )

    if covariance_type in ("full", "tied"):
        assert_allclose(precisions, np.linalg.inv(covariances))
    else:
        assert_allclose(precisions, 1.0 / covariances)


def test_estimate_log_prob_resp_normalises_very_negative_rows():
    rng = np.random.RandomState(0)
    weighted_log_prob = rng.uniform(-5.0, 0.0, size=(30, 4))
    shifted = weighted_log_prob.copy()
    # exp(-1e4) underflows to 0, so a naive normalisation would give 0 / 0.
    shifted[:10] -= 1e4

    log_prob_norm, log_resp = _estimate_log_prob_resp(shifted)

    assert log_prob_norm.shape == (30,)
    assert log_resp.shape == (30, 4)
    assert np.all(np.isfinite(log_resp))
    assert_allclose(np.exp(log_resp).sum(axis=1), 1.0)
    unshifted_norm = np.log(np.exp(weighted_log_prob).sum(axis=1))
    assert_allclose(
        log_prob_norm, unshifted_norm - np.where(np.arange(30) < 10, 1e4, 0)
    )
    assert_allclose(log_resp, weighted_log_prob - unshifted_norm[:, None])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_student_t_mixture_shapes_and_labels(covariance_type):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 3, 2, covariance_type)

    X, y = _sample_student_t_mixture(
        np.random.RandomState(0), 500, covariance_type=covariance_type, **posterior
    )
    X_again, y_again = _sample_student_t_mixture(
        np.random.RandomState(0), 500, covariance_type=covariance_type, **posterior
    )

    assert X.shape == (500, 2)
    assert X.dtype == np.float64
    assert y.shape == (500,)
    assert y.dtype == np.int64
    assert np.bincount(y, minlength=3).sum() == 500
    assert np.all(np.diff(y) >= 0)
    assert_array_equal(X, X_again)
    assert_array_equal(y, y_again)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_student_t_mixture_moments_match_student_t(covariance_type):
    rng = np.random.RandomState(0)
    # df >= 10 so that the sample variance converges quickly.
    posterior = _make_posterior(rng, 1, 2, covariance_type, nu_excess=(11.0, 12.0))

    X, y = _sample_student_t_mixture(
        rng, 100_000, covariance_type=covariance_type, **posterior
    )

    assert_array_equal(y, 0)
    dist = _scipy_student_t(posterior, covariance_type, 0)
    if covariance_type == "diag":
        mean, variance = dist.mean(), np.diag(dist.var())
    else:
        mean, variance = dist.loc, dist.shape * dist.df / (dist.df - 2)
    scale = np.sqrt(np.diag(variance))
    assert_allclose(X.mean(axis=0), mean, atol=0.02 * scale.max())
    assert_allclose(np.cov(X.T), variance, rtol=0.05, atol=0.02 * scale.max() ** 2)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_student_t_mixture_marginals_match_student_t(covariance_type):
    rng = np.random.RandomState(0)
    posterior = _make_posterior(rng, 1, 2, covariance_type, nu_excess=(0.2, 0.5))

    X, _ = _sample_student_t_mixture(
        rng, 20_000, covariance_type=covariance_type, **posterior
    )

    # Each coordinate of a multivariate t is a univariate t with the same df.
    dist = _scipy_student_t(posterior, covariance_type, 0)
    for d in range(2):
        if covariance_type == "diag":
            marginal = stats.t(
                df=dist.kwds["df"],
                loc=dist.kwds["loc"][d],
                scale=dist.kwds["scale"][d],
            )
        else:
            marginal = stats.t(
                df=dist.df, loc=dist.loc[d], scale=np.sqrt(dist.shape[d, d])
            )
        assert stats.kstest(X[:, d], marginal.cdf).pvalue > 1e-3
