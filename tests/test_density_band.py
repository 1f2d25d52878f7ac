"""Tests for the density band: draws from q(theta) and quantiles of p(x | theta)."""

import itertools
import tracemalloc

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import NotFittedError

from skbayesmix import VariationalGaussianMixture
from skbayesmix._density_band import (
    _log_density_under_draws,
    draw_parameters,
    fitted_posterior,
    quadratic_log_density,
)

MODEL_TYPES = list(itertools.product(COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES))

TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])
TRUE_MEANS = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 2.0]])
TRUE_COVARIANCES = np.array(
    [[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 1.5]], [[1.0, -0.6], [-0.6, 0.8]]]
)


def _sample_true_mixture(rng, n_samples):
    counts = rng.multinomial(n_samples, TRUE_WEIGHTS)
    return np.vstack(
        [
            rng.multivariate_normal(mean, cov, size=count)
            for mean, cov, count in zip(TRUE_MEANS, TRUE_COVARIANCES, counts)
        ]
    )


def _true_log_density(X):
    return logsumexp(
        [
            np.log(w) + multivariate_normal(mean, cov).logpdf(X)
            for w, mean, cov in zip(TRUE_WEIGHTS, TRUE_MEANS, TRUE_COVARIANCES)
        ],
        axis=0,
    )


def _fit(X, covariance_type="full", weight_prior_type="dirichlet_process", **params):
    return VariationalGaussianMixture(
        n_components=3,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_prior_type,
        random_state=0,
        **params,
    ).fit(X)


@pytest.fixture(scope="module")
def data():
    return _sample_true_mixture(np.random.RandomState(0), 300)


@pytest.mark.parametrize("covariance_type, weight_prior_type", MODEL_TYPES)
def test_score_samples_interval_ordered_and_nested(
    data, covariance_type, weight_prior_type
):
    model = _fit(data, covariance_type, weight_prior_type)
    points = np.random.RandomState(1).uniform(-6, 6, size=(200, 2))
    lower_90, upper_90 = model.score_samples_interval(points, level=0.9, random_state=0)
    lower_50, upper_50 = model.score_samples_interval(points, level=0.5, random_state=0)
    assert lower_90.shape == upper_90.shape == (200,)
    assert np.all(lower_90 < upper_90)
    assert np.all(lower_50 < upper_50)
    # Same seed, same draws: the 0.5 quantiles lie between the 0.9 ones.
    assert np.all(lower_90 <= lower_50) and np.all(upper_50 <= upper_90)
    # The band is around the posterior predictive, a mixture of the draws.
    log_density = model.score_samples(points)
    assert np.mean((lower_90 < log_density) & (log_density < upper_90)) > 0.9


@pytest.mark.parametrize("covariance_type, weight_prior_type", MODEL_TYPES)
def test_draws_average_to_posterior_predictive(
    data, covariance_type, weight_prior_type
):
    # E_q[p(x | theta)] is the Student-t mixture of score_samples, so the
    # Monte-Carlo average of the draws' densities must converge to it. This
    # checks every draw's distribution (Wishart / Gamma degrees of freedom,
    # the mean's precision, the weights) against the closed form.
    model = _fit(data, covariance_type, weight_prior_type)
    posterior = fitted_posterior(model)
    draws = draw_parameters(posterior, 4000, np.random.RandomState(0))
    points = data[:40]
    log_density = _log_density_under_draws(
        points, quadratic_log_density(draws, posterior.means)
    )
    average = logsumexp(log_density, axis=1) - np.log(4000)
    assert_allclose(average, model.score_samples(points), atol=0.02)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_draw_parameters_precision_moments(data, covariance_type):
    # E[Lambda] = inv(covariances_), and a diagonal entry of the Wishart or
    # Gamma posterior has Var = 2 E^2 / nu, with nu -> D nu for 'spherical'.
    model = _fit(data, covariance_type, max_iter=300)
    posterior = fitted_posterior(model)
    draws = draw_parameters(posterior, 20000, np.random.RandomState(0))
    factors = draws.precision_factors
    if factors.ndim == 4:
        precision_diagonal = np.einsum("skij,skij->ski", factors, factors)
    else:
        precision_diagonal = np.square(factors)
    expected = np.broadcast_to(
        np.diagonal(model.precisions_, axis1=-2, axis2=-1)
        if covariance_type in ("full", "tied")
        else model.precisions_.reshape(3, -1),
        (3, 2),
    )
    nu = np.broadcast_to(model.degrees_of_freedom_, (3,))[:, None]
    if covariance_type == "spherical":
        nu = 2 * nu
    assert_allclose(precision_diagonal.mean(axis=0), expected, rtol=0.03)
    assert_allclose(precision_diagonal.var(axis=0), 2 * expected**2 / nu, rtol=0.1)
    assert_allclose(draws.means.mean(axis=0), model.means_, atol=0.02)


@pytest.mark.parametrize("weight_prior_type", WEIGHT_PRIOR_TYPES)
def test_draw_parameters_weights_average_to_weights(data, weight_prior_type):
    model = _fit(data, "diag", weight_prior_type)
    draws = draw_parameters(fitted_posterior(model), 20000, np.random.RandomState(0))
    weights = np.exp(draws.log_weights)
    assert_allclose(weights.sum(axis=1), 1.0)
    assert_allclose(weights.mean(axis=0), model.weights_, atol=0.005)


def test_score_samples_interval_narrows_with_more_data():
    rng = np.random.RandomState(0)
    points = _sample_true_mixture(rng, 200)
    widths = []
    for n_samples in [100, 3000]:
        model = _fit(_sample_true_mixture(rng, n_samples))
        lower, upper = model.score_samples_interval(points, random_state=0)
        widths.append(np.median(upper - lower))
    # Posterior spread shrinks like 1 / sqrt(n): about 5.5 times here.
    assert widths[1] < widths[0] / 3


def test_score_samples_interval_covers_true_density():
    # Mean-field VB is overconfident, so the 0.9 band covers less than 90%
    # (0.84 on average over 20 data sets in benchmarks/bench_density_band.py);
    # the floor only guards against a band that has lost touch with the truth.
    rng = np.random.RandomState(0)
    model = _fit(_sample_true_mixture(rng, 1000), max_iter=300)
    points = _sample_true_mixture(rng, 500)
    lower, upper = model.score_samples_interval(points, level=0.9, random_state=0)
    truth = _true_log_density(points)
    coverage = np.mean((lower <= truth) & (truth <= upper))
    assert coverage > 0.6


def test_score_samples_interval_reproducible_with_int_seed(data):
    model = _fit(data)
    first = model.score_samples_interval(data[:50], random_state=3)
    second = model.score_samples_interval(data[:50], random_state=3)
    other = model.score_samples_interval(data[:50], random_state=4)
    assert_array_equal(first[0], second[0])
    assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_score_samples_interval_float32(data):
    model = _fit(data.astype(np.float32))
    lower, upper = model.score_samples_interval(
        data[:20].astype(np.float32), random_state=0
    )
    assert lower.dtype == upper.dtype == np.float32
    lower_64, upper_64 = _fit(data).score_samples_interval(data[:20], random_state=0)
    assert_allclose(lower, lower_64, rtol=1e-3)
    assert_allclose(upper, upper_64, rtol=1e-3)


def test_score_samples_interval_far_points_finite(data):
    model = _fit(data)
    far = np.array([[1e3, -1e3], [1e6, 0.0], [0.0, 0.0]])
    lower, upper = model.score_samples_interval(far, random_state=0)
    assert np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))
    assert np.all(lower < upper)


def test_score_samples_interval_memory_bounded(data):
    model = _fit(data)
    points = np.random.RandomState(0).uniform(-6, 6, size=(40000, 2))
    tracemalloc.start()
    model.score_samples_interval(points, n_draws=200, random_state=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Two float64 outputs are 0.64 MB; without chunks the (K, n, S) log
    # densities alone would be 192 MB.
    assert peak < 16 * 2**20


@pytest.mark.parametrize(
    "params, message",
    [
        ({"level": 1.0}, "level must be a float in"),
        ({"level": 0.0}, "level must be a float in"),
        ({"level": "high"}, "level must be a float in"),
        ({"n_draws": 1}, "n_draws must be an int >= 2"),
        ({"n_draws": 10.5}, "n_draws must be an int >= 2"),
    ],
)
def test_score_samples_interval_rejects_bad_parameters(data, params, message):
    model = _fit(data)
    with pytest.raises(ValueError, match=message):
        model.score_samples_interval(data, **params)


def test_score_samples_interval_validates_input(data):
    with pytest.raises(NotFittedError):
        VariationalGaussianMixture().score_samples_interval(data)
    model = _fit(data)
    with pytest.raises(ValueError, match="X has 3 features"):
        model.score_samples_interval(np.ones((5, 3)))
