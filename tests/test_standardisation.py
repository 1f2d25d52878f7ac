"""Tests of the standardisation map and how the model's parameters follow it."""

import numpy as np

from skbayesmix._standardisation import Standardisation
from skbayesmix._state import Posterior, Prior


def test_standardisation_gives_zero_mean_and_unit_spread():
    rng = np.random.RandomState(0)
    X = rng.randn(200, 3) * [1.0, 10.0, 0.1] + 1e6
    standardisation = Standardisation.from_data(X)
    Xs = standardisation.transform(X)
    np.testing.assert_allclose(Xs.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.mean(Xs**2)), 1.0, rtol=1e-9)


def test_standardisation_weights_act_as_repetitions():
    rng = np.random.RandomState(0)
    X = rng.randn(50, 2) * 3.0 + 7.0
    weights = rng.randint(0, 4, size=50)
    weighted = Standardisation.from_data(X, weights.astype(float))
    repeated = Standardisation.from_data(np.repeat(X, weights, axis=0))
    np.testing.assert_allclose(weighted.shift, repeated.shift, rtol=1e-12)
    assert weighted.max_abs == repeated.max_abs
    np.testing.assert_allclose(weighted.spread, repeated.spread, rtol=1e-12)


def test_standardisation_spread_floors_at_reg_covar():
    # A spread of 1e-6, below sqrt(reg_covar) = 1e-3: measure in units of 1e-3.
    X = 3.0 + 1e-6 * np.random.RandomState(0).randn(10, 2)
    standardisation = Standardisation.from_data(X, reg_covar=1e-6)
    np.testing.assert_allclose(
        standardisation.max_abs * standardisation.spread, 1e-3, rtol=1e-12
    )


def test_standardisation_maps_posterior_and_prior_both_ways():
    rng = np.random.RandomState(0)
    standardisation = Standardisation(rng.randn(2), 5.0, 0.3)
    posterior = Posterior(
        rng.rand(3),
        rng.rand(3),
        rng.rand(3),
        rng.randn(3, 2),
        rng.rand(3) + 2,
        rng.rand(3, 2),
    )
    back = standardisation.posterior_from(standardisation.posterior_to(posterior))
    for got, want in zip(back, posterior):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    prior = standardisation.prior_to(Prior(0.5, 1.0, np.zeros(2), 2.0, np.eye(2)))
    np.testing.assert_allclose(prior.scale_inverse, np.eye(2) / (5.0 * 0.3) ** 2)
    np.testing.assert_allclose(
        standardisation.mean_from(prior.mean), np.zeros(2), atol=1e-12
    )


def test_standardisation_log_jacobian():
    standardisation = Standardisation(np.zeros(3), 2.0, 0.5)
    # Each of 10 samples has 3 coordinates divided by the scale 1.
    assert standardisation.log_jacobian(10, 3) == 0.0
    standardisation = Standardisation(np.zeros(3), 4.0, 0.5)
    np.testing.assert_allclose(standardisation.log_jacobian(10, 3), -30 * np.log(2.0))
