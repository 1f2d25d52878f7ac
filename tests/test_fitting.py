"""The one fit sequence: exact under weights and row order, transactional, warm."""

import pickle
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, sample_weight_check_data
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbayesmix import VariationalGaussianMixture
from skbayesmix._batch import InMemoryDriver
from skbayesmix._online import OnlineDriver, StreamDriver


def _quiet_fit(model, X, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **fit_params)


def _assert_equivalent(weighted, repeated, X):
    np.testing.assert_allclose(weighted.lower_bound_, repeated.lower_bound_, rtol=1e-6)
    np.testing.assert_allclose(
        weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-7, atol=1e-9
    )
    assert weighted.n_iter_ == repeated.n_iter_


DRIVERS = {
    "batch": dict(),
    "online": dict(learning_method="online", batch_size=1000),
}


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    "init_params", ["kmeans", "k-means++", "random", "random_from_data"]
)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_shuffled_weighted_fit_equals_fit_of_repeated_rows(
    covariance_type, init_params, driver
):
    X_weighted, weights, X_repeated, X = sample_weight_check_data(
        np.random.RandomState(42)
    )
    params = dict(
        n_components=2,
        covariance_type=covariance_type,
        init_params=init_params,
        n_init=2,
        random_state=0,
        **DRIVERS[driver],
    )
    weighted = _quiet_fit(
        VariationalGaussianMixture(**params), X_weighted, sample_weight=weights
    )
    repeated = _quiet_fit(VariationalGaussianMixture(**params), X_repeated)
    _assert_equivalent(weighted, repeated, X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_shuffled_weighted_partial_fit_equals_partial_fit_of_repeated_rows(
    covariance_type,
):
    X_weighted, weights, X_repeated, X = sample_weight_check_data(
        np.random.RandomState(42)
    )
    params = dict(
        n_components=2,
        covariance_type=covariance_type,
        batch_size=1000,
        total_samples=100,
        random_state=0,
    )
    weighted = VariationalGaussianMixture(**params)
    repeated = VariationalGaussianMixture(**params)
    for _ in range(3):
        weighted.partial_fit(X_weighted, sample_weight=weights)
        repeated.partial_fit(X_repeated)
    _assert_equivalent(weighted, repeated, X)


def _fault(*args, **kwargs):
    raise RuntimeError("injected fault")


def _snapshot(model):
    return pickle.dumps(model.__dict__)


@pytest.mark.parametrize(
    "params, method, driver",
    [
        (dict(), "fit", InMemoryDriver),
        (dict(learning_method="online"), "fit", OnlineDriver),
        (dict(), "partial_fit", StreamDriver),
        (dict(), "fit_predict", InMemoryDriver),
    ],
)
def test_fit_that_raises_late_leaves_the_estimator_as_it_was(
    monkeypatch, params, method, driver
):
    rng = np.random.RandomState(0)
    X = rng.randn(200, 3)
    X_other = rng.randn(150, 3) * 5.0 + 10.0
    for fitted_before in (False, True):
        model = VariationalGaussianMixture(n_components=2, random_state=0, **params)
        if fitted_before:
            getattr(model, method)(X)
        before = _snapshot(model)
        with monkeypatch.context() as patch:
            # After the moments and the priors: in the driver's loop.
            patch.setattr(driver, "run", _fault)
            with pytest.raises(RuntimeError, match="injected fault"):
                getattr(model, method)(X_other)
        assert _snapshot(model) == before
        assert fitted_before == hasattr(model, "converged_")


def test_float32_warm_start_continues_from_the_float64_posterior():
    X = np.random.RandomState(0).randn(300, 3).astype(np.float32)
    params = dict(n_components=3, tol=0.0, random_state=0)
    straight = _quiet_fit(VariationalGaussianMixture(max_iter=8, **params), X)
    warm = _quiet_fit(VariationalGaussianMixture(max_iter=3, **params), X)
    warm.set_params(warm_start=True, max_iter=5)
    first = list(warm.lower_bounds_)
    _quiet_fit(warm, X)
    # The iterates of one loop, up to the round-off of float64 sums.
    np.testing.assert_allclose(
        first + warm.lower_bounds_, straight.lower_bounds_, rtol=1e-12
    )
    np.testing.assert_array_equal(warm.means_, straight.means_)
    assert warm.means_.dtype == np.float32


def test_partial_fit_uses_a_prior_changed_by_set_params():
    rng = np.random.RandomState(0)
    chunks = np.array_split(rng.randn(600, 2), 3)
    kept = VariationalGaussianMixture(n_components=2, random_state=0)
    changed = VariationalGaussianMixture(n_components=2, random_state=0)
    for model in (kept, changed):
        model.partial_fit(chunks[0])
    changed.set_params(weight_concentration_prior=50.0, mean_prior=[3.0, 3.0])
    for model in (kept, changed):
        model.partial_fit(chunks[1])
    assert changed.weight_concentration_prior_ == 50.0
    np.testing.assert_array_equal(changed.mean_prior_, [3.0, 3.0])
    np.testing.assert_array_equal(kept.covariance_prior_, changed.covariance_prior_)
    assert not np.allclose(kept.means_, changed.means_)
    assert changed.n_batch_iter_ == kept.n_batch_iter_


def test_partial_fit_with_new_n_components_starts_a_new_online_state():
    rng = np.random.RandomState(0)
    X = rng.randn(600, 2)
    model = VariationalGaussianMixture(n_components=2, random_state=0)
    model.partial_fit(X[:300])
    model.partial_fit(X[300:])
    model.set_params(n_components=3).partial_fit(X[300:])
    assert model.means_.shape == (3, 2)
    assert model.n_batch_iter_ == 1
    assert model.n_iter_ == 1


@pytest.mark.parametrize("learning_method", ["batch", "online"])
def test_convergence_warning_points_at_the_callers_line(learning_method):
    X = np.random.RandomState(0).randn(100, 2)
    model = VariationalGaussianMixture(
        n_components=3, max_iter=1, tol=0.0, learning_method=learning_method
    )
    with pytest.warns(ConvergenceWarning) as record:
        model.fit(X)
    assert record[0].filename == __file__
    with pytest.warns(ConvergenceWarning) as record:
        model.fit_predict(X)
    assert record[0].filename == __file__
    with pytest.warns(ConvergenceWarning) as record:
        make_pipeline(StandardScaler(), model).fit(X)
    assert record[0].filename == __file__


@pytest.mark.parametrize("weighted", [False, True])
def test_online_start_on_a_sample_by_weight_finds_the_batch_optimum(
    monkeypatch, weighted
):
    import skbayesmix._online as online

    # A sample of 200 of the 3072 rows, drawn by weight: the start's statistics
    # stand for all rows, and the passes over every row do the rest.
    monkeypatch.setattr(online, "_INIT_ROWS", 200)
    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(1024, 2) + c for c in [(2, 0), (-2, -4), (-2, 4)]])
    weights = rng.randint(1, 4, size=len(X)).astype(float) if weighted else None
    params = dict(n_components=3, random_state=0)
    sampled = VariationalGaussianMixture(
        learning_method="online", batch_size=512, **params
    ).fit(X, sample_weight=weights)
    batch = VariationalGaussianMixture(**params).fit(X, sample_weight=weights)
    order, batch_order = (
        np.argsort(sampled.means_[:, 1]),
        np.argsort(batch.means_[:, 1]),
    )
    np.testing.assert_allclose(
        sampled.means_[order], batch.means_[batch_order], atol=0.1
    )
    total = len(X) if weights is None else weights.sum()
    assert abs(sampled.lower_bound_ - batch.lower_bound_) < 0.01 * total
