"""The Dask driver on a real LocalCluster: exact CAVI, lazy prediction, faults."""

import copy
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import cloudpickle  # noqa: E402
import joblib  # noqa: E402
from conftest import (  # noqa: E402
    COVARIANCE_TYPES,
    WEIGHT_PRIOR_TYPES,
    sample_weight_check_data,
)
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import skbayesmix  # noqa: E402
from skbayesmix import VariationalGaussianMixture, _dask  # noqa: E402

FITTED_ARRAYS = [
    "weights_",
    "means_",
    "covariances_",
    "precisions_cholesky_",
    "mean_precision_",
    "degrees_of_freedom_",
    "mean_prior_",
    "covariance_prior_",
]

# The workers cannot import this test module, so its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _blobs(n_samples=240, n_features=3):
    rng = np.random.RandomState(0)
    X = rng.randn(n_samples, n_features)
    X[: n_samples // 3] += 5.0
    X[n_samples // 3 : 2 * n_samples // 3] -= 3.0
    return X[rng.permutation(n_samples)]


def _fit_quietly(estimator, X, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, **fit_params)


def _assert_same_fit(fitted, expected, rtol=1e-6):
    assert fitted.n_iter_ == expected.n_iter_
    assert fitted.converged_ == expected.converged_
    np.testing.assert_allclose(fitted.lower_bounds_, expected.lower_bounds_, rtol=rtol)
    np.testing.assert_allclose(fitted.lower_bound_, expected.lower_bound_, rtol=rtol)
    for name in FITTED_ARRAYS:
        np.testing.assert_allclose(
            getattr(fitted, name),
            getattr(expected, name),
            rtol=rtol,
            atol=1e-6,
            err_msg=name,
        )
    if isinstance(expected.weight_concentration_, tuple):
        for got, want in zip(
            fitted.weight_concentration_, expected.weight_concentration_
        ):
            np.testing.assert_allclose(got, want, rtol=rtol)
    else:
        np.testing.assert_allclose(
            fitted.weight_concentration_, expected.weight_concentration_, rtol=rtol
        )


def _tensorflow_imported():
    return "tensorflow" in sys.modules


def _exit_in_worker(block):
    """Kill the worker process that computes this chunk."""
    distributed.get_worker()
    os._exit(1)


# --------------------------------------------------------------------------------
# Import and prediction (first: the workers have not imported TensorFlow yet)
# --------------------------------------------------------------------------------


def test_import_skbayesmix_does_not_import_dask():
    code = (
        "import sys, skbayesmix;"
        "skbayesmix.VariationalGaussianMixture(n_components=2);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] "
        "in ('dask', 'distributed')))"
    )
    package_root = os.path.dirname(os.path.dirname(skbayesmix.__file__))
    env = dict(os.environ, PYTHONPATH=package_root)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_predict_returns_lazy_dask_arrays_equal_to_numpy_without_tf_on_workers(
    client,
):
    X = _blobs()
    estimator = _fit_quietly(
        VariationalGaussianMixture(n_components=3, random_state=0, max_iter=20), X
    )
    X_dask = da.from_array(X, chunks=(50, 3))
    labels = estimator.predict(X_dask)
    resp = estimator.predict_proba(X_dask)
    log_density = estimator.score_samples(X_dask)
    for lazy in (labels, resp, log_density):
        assert isinstance(lazy, da.Array)
    assert resp.chunks == (X_dask.chunks[0], (3,))
    np.testing.assert_array_equal(labels.compute(), estimator.predict(X))
    np.testing.assert_allclose(resp.compute(), estimator.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(
        log_density.compute(), estimator.score_samples(X), rtol=1e-12
    )
    score = estimator.score(X_dask)
    assert isinstance(score, float)
    np.testing.assert_allclose(score, estimator.score(X), rtol=1e-12)
    # This runs before any fit on the cluster, so no worker has had reason to.
    assert not any(client.run(_tensorflow_imported).values())


def test_predict_dask_rejects_wrong_features_and_inf(client):
    X = _blobs()
    estimator = _fit_quietly(
        VariationalGaussianMixture(n_components=2, random_state=0, max_iter=5), X
    )
    with pytest.raises(ValueError, match="X has 2 features, but"):
        estimator.predict(da.from_array(X[:, :2], chunks=(60, 2)))
    # NaN is a missing feature (tests/test_missing_prediction.py); inf is not.
    X_inf = X.copy()
    X_inf[200, 1] = np.inf
    lazy = estimator.score_samples(da.from_array(X_inf, chunks=(60, 3)))
    with pytest.raises(ValueError, match="Input X contains infinity"):
        lazy.compute()


def test_predict_dask_unfitted_raises(client):
    with pytest.raises(NotFittedError):
        VariationalGaussianMixture().predict(da.zeros((10, 2), chunks=5))


# --------------------------------------------------------------------------------
# Exact CAVI
# --------------------------------------------------------------------------------


# Each new model structure costs a TF trace on every worker, so the weight prior
# types alternate over the covariance types rather than multiply them.
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_with_nan_equals_in_memory_fit(client, covariance_type):
    # Missing entries are integrated out chunk by chunk on the workers, with
    # moments merged exactly: the same fit as in memory.
    rng = np.random.RandomState(1)
    X = _blobs()
    X[rng.rand(*X.shape) < 0.25] = np.nan
    params = dict(
        n_components=3, covariance_type=covariance_type, random_state=0, max_iter=8
    )
    expected = _fit_quietly(VariationalGaussianMixture(**params), X)
    fitted = _fit_quietly(
        VariationalGaussianMixture(**params), da.from_array(X, chunks=(70, 3))
    )
    _assert_same_fit(fitted, expected)


@pytest.mark.parametrize(
    "covariance_type, weight_type",
    list(zip(COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES * 2)),
)
def test_fit_equals_in_memory_fit(client, covariance_type, weight_type):
    # Below _INIT_SAMPLE_ROWS the initialisation sample is all of X, so the same
    # random_state gives the same k-means and both fits start alike.
    X = _blobs()
    params = dict(
        n_components=3,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_type,
        random_state=0,
        max_iter=8,
    )
    expected = _fit_quietly(VariationalGaussianMixture(**params), X)
    fitted = _fit_quietly(
        VariationalGaussianMixture(**params), da.from_array(X, chunks=(70, 3))
    )
    _assert_same_fit(fitted, expected)
    assert fitted.n_features_in_ == 3


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_fit_warm_start_continues_as_in_memory(client, covariance_type):
    # The shared initialisation: both continue from one fitted model.
    X = _blobs()
    start = _fit_quietly(
        VariationalGaussianMixture(
            n_components=4, covariance_type=covariance_type, random_state=1, max_iter=2
        ),
        X,
    )
    in_memory = copy.deepcopy(start).set_params(warm_start=True, max_iter=6, tol=0)
    on_cluster = copy.deepcopy(in_memory)
    _fit_quietly(in_memory, X)
    _fit_quietly(on_cluster, da.from_array(X, chunks=(100, 3)))
    _assert_same_fit(on_cluster, in_memory)


def test_fit_sample_weight_equals_in_memory_fit(client):
    X = _blobs()
    weights = np.random.RandomState(0).randint(0, 3, size=X.shape[0]).astype(float)
    params = dict(
        n_components=3,
        covariance_type="tied",
        weight_concentration_prior_type="dirichlet_distribution",
        random_state=0,
        max_iter=6,
    )
    expected = _fit_quietly(
        VariationalGaussianMixture(**params), X, sample_weight=weights
    )
    for dask_weights in (weights, da.from_array(weights, chunks=100)):
        fitted = _fit_quietly(
            VariationalGaussianMixture(**params),
            da.from_array(X, chunks=(70, 3)),
            sample_weight=dask_weights,
        )
        _assert_same_fit(fitted, expected)


def test_fit_float32_stays_float32(client):
    X = _blobs().astype(np.float32)
    params = dict(n_components=3, covariance_type="diag", random_state=0, max_iter=5)
    expected = _fit_quietly(VariationalGaussianMixture(**params), X)
    fitted = _fit_quietly(
        VariationalGaussianMixture(**params), da.from_array(X, chunks=(70, 3))
    )
    assert fitted.means_.dtype == np.float32
    # The shift is reduced in float64 here and in float32 in memory.
    np.testing.assert_allclose(fitted.lower_bound_, expected.lower_bound_, rtol=1e-5)
    np.testing.assert_allclose(fitted.means_, expected.means_, rtol=1e-4, atol=1e-4)


def test_fit_rechunks_arrays_chunked_along_features(client):
    X = _blobs()
    params = dict(n_components=3, covariance_type="full", random_state=0, max_iter=4)
    expected = _fit_quietly(VariationalGaussianMixture(**params), X)
    fitted = _fit_quietly(
        VariationalGaussianMixture(**params), da.from_array(X, chunks=(70, 2))
    )
    _assert_same_fit(fitted, expected)


def test_fit_initialises_from_a_sample_of_large_data(client, monkeypatch):
    # With a sample smaller than X, k-means runs on the sample and its statistics
    # are scaled to all rows; CAVI on every row then finds the same optimum.
    monkeypatch.setattr(_dask, "_INIT_SAMPLE_ROWS", 60)
    X = _blobs(n_samples=600)
    params = dict(n_components=3, covariance_type="diag", random_state=0, tol=1e-8)
    expected = _fit_quietly(VariationalGaussianMixture(**params), X)
    fitted = _fit_quietly(
        VariationalGaussianMixture(**params), da.from_array(X, chunks=(150, 3))
    )
    order = np.argsort(fitted.means_[:, 0])
    expected_order = np.argsort(expected.means_[:, 0])
    np.testing.assert_allclose(
        fitted.means_[order], expected.means_[expected_order], atol=1e-2
    )
    np.testing.assert_allclose(fitted.lower_bound_, expected.lower_bound_, atol=1e-2)


def test_fit_predict_returns_dask_labels(client):
    X = _blobs()
    X_dask = da.from_array(X, chunks=(70, 3))
    estimator = VariationalGaussianMixture(n_components=3, random_state=0, max_iter=4)
    labels = _fit_quietly_predict(estimator, X_dask)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), estimator.predict(X))


def _fit_quietly_predict(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit_predict(X)


# --------------------------------------------------------------------------------
# Bad input: errors raised in the validation pass, estimator untouched
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("value, message", [(np.inf, "Input X contains infinity")])
def test_fit_rejects_non_finite_chunk(client, value, message):
    # NaN is a missing entry (see test_fit_with_nan_equals_in_memory_fit).
    X = _blobs()
    X[230, 2] = value
    estimator = VariationalGaussianMixture(n_components=2)
    with pytest.raises(ValueError, match=message):
        estimator.fit(da.from_array(X, chunks=(60, 3)))
    with pytest.raises(NotFittedError):
        estimator.predict(X)


def test_fit_rejects_complex_chunk(client):
    X = _blobs().astype(complex)
    with pytest.raises(ValueError, match="Complex data not supported"):
        VariationalGaussianMixture(n_components=2).fit(da.from_array(X, chunks=60))


def test_fit_rejects_wrong_number_of_dimensions(client):
    estimator = VariationalGaussianMixture(n_components=2)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        estimator.fit(da.zeros(10, chunks=5))
    with pytest.raises(ValueError, match="Found array with dim 3"):
        estimator.fit(da.zeros((10, 2, 2), chunks=5))


def test_fit_online_on_dask_arrays_is_a_clear_error(client):
    estimator = VariationalGaussianMixture(n_components=2, learning_method="online")
    with pytest.raises(ValueError, match="does not take dask arrays yet"):
        estimator.fit(da.from_array(_blobs(), chunks=60))
    assert not hasattr(estimator, "means_")


def test_score_dask_sample_weight_is_the_weighted_mean(client):
    X = _blobs()
    weights = np.random.RandomState(0).randint(0, 4, size=len(X))
    estimator = _fit_quietly(VariationalGaussianMixture(n_components=3), X)
    got = estimator.score(da.from_array(X, chunks=60), sample_weight=weights)
    assert got == pytest.approx(estimator.score(X, sample_weight=weights), rel=1e-10)


def test_fit_rejects_too_few_samples(client):
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        VariationalGaussianMixture(n_components=5).fit(
            da.from_array(_blobs()[:4], chunks=2)
        )


def test_fit_failure_leaves_fitted_estimator_as_it_was(client):
    X = _blobs()
    estimator = _fit_quietly(
        VariationalGaussianMixture(n_components=2, random_state=0, max_iter=5), X
    )
    before = dict(estimator.__dict__)
    X_bad = X + 100.0
    X_bad[10, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        estimator.fit(da.from_array(X_bad, chunks=(60, 3)))
    assert estimator.__dict__.keys() == before.keys()
    for name, value in before.items():
        assert estimator.__dict__[name] is value, name


# --------------------------------------------------------------------------------
# joblib's dask backend
# --------------------------------------------------------------------------------


def test_grid_search_with_joblib_dask_backend(client):
    X = _blobs()
    search = GridSearchCV(
        VariationalGaussianMixture(covariance_type="diag", random_state=0, max_iter=20),
        {"n_components": [1, 3]},
        cv=2,
        error_score="raise",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with joblib.parallel_backend("dask"):
            search.fit(X)
    assert search.best_params_ == {"n_components": 3}
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


# --------------------------------------------------------------------------------
# Faults: a real worker process dies (last: they restart workers)
# --------------------------------------------------------------------------------


def test_fit_recovers_when_a_worker_dies_mid_fit(client, monkeypatch):
    X = _blobs()
    params = dict(
        n_components=3, covariance_type="diag", random_state=0, max_iter=6, tol=0
    )
    X_dask = da.from_array(X, chunks=(40, 3))
    expected = _fit_quietly(VariationalGaussianMixture(**params), X_dask)

    summed_statistics = _dask._summed_statistics
    calls = []

    def kill_a_worker_at_the_third_iteration(*args, **kwargs):
        calls.append(None)
        if len(calls) == 3:
            # The worker holds persisted chunks; the scheduler must recompute them
            # from their lineage on the other worker or on the restarted one.
            pid = next(iter(client.run(os.getpid).values()))
            os.kill(pid, 9)
        return summed_statistics(*args, **kwargs)

    monkeypatch.setattr(
        _dask, "_summed_statistics", kill_a_worker_at_the_third_iteration
    )
    fitted = _fit_quietly(VariationalGaussianMixture(**params), X_dask)
    assert len(calls) == 6
    _assert_same_fit(fitted, expected)
    client.wait_for_workers(2, timeout=60)


def test_fit_raises_clear_error_when_workers_keep_dying(client):
    X = _blobs()
    estimator = _fit_quietly(
        VariationalGaussianMixture(n_components=2, random_state=0, max_iter=5), X
    )
    before = dict(estimator.__dict__)
    X_deadly = da.from_array(X, chunks=(60, 3)).map_blocks(
        _exit_in_worker, meta=np.empty((0, 0))
    )
    scheduler = client.cluster.scheduler
    allowed_failures = scheduler.allowed_failures
    scheduler.allowed_failures = 0
    try:
        with pytest.raises(RuntimeError, match="A Dask worker died while fitting"):
            estimator.fit(X_deadly)
    finally:
        scheduler.allowed_failures = allowed_failures
        client.wait_for_workers(2, timeout=60)
    for name, value in before.items():
        assert estimator.__dict__[name] is value, name


# --------------------------------------------------------------------------------
# The one fit sequence on a cluster
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_shuffled_weighted_fit_equals_fit_of_repeated_rows(client, covariance_type):
    X_weighted, weights, X_repeated, X = sample_weight_check_data(
        np.random.RandomState(42)
    )
    params = dict(
        n_components=2, covariance_type=covariance_type, n_init=2, random_state=0
    )
    weighted = _fit_quietly(
        VariationalGaussianMixture(**params),
        da.from_array(X_weighted, chunks=(4, 30)),
        sample_weight=weights,
    )
    repeated = _fit_quietly(
        VariationalGaussianMixture(**params), da.from_array(X_repeated, chunks=(7, 30))
    )
    in_memory = _fit_quietly(VariationalGaussianMixture(**params), X_repeated)
    for fitted in (weighted, repeated):
        np.testing.assert_allclose(
            fitted.lower_bound_, in_memory.lower_bound_, rtol=1e-6
        )
        np.testing.assert_allclose(
            fitted.predict_proba(X), in_memory.predict_proba(X), rtol=1e-7, atol=1e-9
        )


def test_fit_that_raises_in_the_loop_leaves_the_estimator_as_it_was(
    client, monkeypatch
):
    X = _blobs()
    estimator = _fit_quietly(
        VariationalGaussianMixture(n_components=2, random_state=0, max_iter=5), X
    )
    before = pickle.dumps(estimator.__dict__)

    def fault(*args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(_dask.DaskDriver, "run", fault)
    with pytest.raises(RuntimeError, match="injected fault"):
        estimator.fit(da.from_array(X * 3.0 + 1.0, chunks=(60, 3)))
    assert pickle.dumps(estimator.__dict__) == before


def test_convergence_warning_points_at_the_callers_line(client):
    estimator = VariationalGaussianMixture(n_components=3, max_iter=1, tol=0.0)
    with pytest.warns(ConvergenceWarning) as record:
        estimator.fit(da.from_array(_blobs(), chunks=(60, 3)))
    assert record[0].filename == __file__


def test_fit_initialises_from_a_sample_by_weight(client, monkeypatch):
    # Sampling keys are drawn chunk by chunk and merged on the client.
    monkeypatch.setattr(_dask, "_INIT_SAMPLE_ROWS", 60)
    X = _blobs(n_samples=600)
    weights = np.random.RandomState(1).randint(0, 4, size=600).astype(float)
    # A Dirichlet distribution, whose bound does not depend on the components'
    # order as the sticks' does.
    params = dict(
        n_components=3,
        covariance_type="diag",
        weight_concentration_prior_type="dirichlet_distribution",
        random_state=0,
        tol=1e-8,
    )
    expected = _fit_quietly(
        VariationalGaussianMixture(**params), X, sample_weight=weights
    )
    fitted = _fit_quietly(
        VariationalGaussianMixture(**params),
        da.from_array(X, chunks=(150, 3)),
        sample_weight=weights,
    )
    order = np.argsort(fitted.means_[:, 0])
    expected_order = np.argsort(expected.means_[:, 0])
    np.testing.assert_allclose(
        fitted.means_[order], expected.means_[expected_order], atol=1e-2
    )
    np.testing.assert_allclose(fitted.lower_bound_, expected.lower_bound_, atol=1e-2)
