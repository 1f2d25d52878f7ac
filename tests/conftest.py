"""Shared lists and data for the tests.

Test modules import the lists with ``from conftest import COVARIANCE_TYPES``
(pytest puts this folder on sys.path) and take data from the helpers below.
"""

import numpy as np
import pytest

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
WEIGHT_PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]
TUTORIAL_CENTRES = ((2.0, 0.0), (-2.0, -4.0), (-2.0, 4.0))


def tutorial_data(rng, n_per_blob=1024):
    """The seed tutorial's data: unit-variance 2-D blobs at TUTORIAL_CENTRES.

    Returns
    -------
    X : ndarray of shape (3 * n_per_blob, 2)
    """
    X = np.vstack([rng.randn(n_per_blob, 2) + c for c in TUTORIAL_CENTRES])
    return X[rng.permutation(len(X))]


def blobs(rng, n_per_blob=60, n_features=2):
    """Three unit-variance blobs in up to 3-D, in blob order (not shuffled).

    Returns
    -------
    X : ndarray of shape (3 * n_per_blob, n_features)
    """
    centres = np.array([[2.0, 0.0, 1.0], [-2.0, -4.0, 0.0], [-2.0, 4.0, 2.0]])
    return np.vstack(
        [rng.randn(n_per_blob, n_features) + c[:n_features] for c in centres]
    )


def sample_weight_check_data(rng):
    """scikit-learn's sample-weight check: 15 uniform points in 30 dimensions
    with integer weights (zeros among them), shuffled, and the same points
    repeated; starts matter on such data.

    Returns
    -------
    X_weighted : ndarray of shape (15, 30)
    weights : ndarray of shape (15,)
    X_repeated : ndarray of shape (weights.sum(), 30)
    X : ndarray of shape (15, 30)
        The points in their original order.
    """
    X = rng.rand(15, 30)
    weights = rng.randint(0, 5, size=15)
    X_repeated = X.repeat(weights, axis=0)
    order = rng.permutation(15)
    return X[order], weights[order].astype(float), X_repeated, X


@pytest.fixture
def rng():
    return np.random.RandomState(0)
