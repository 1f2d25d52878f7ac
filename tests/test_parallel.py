"""Parallel and process safety: joblib, threads, copies, TF state, no-TF loading."""

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from joblib import parallel_backend
from joblib.externals.loky import get_reusable_executor
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import skbayesmix
from skbayesmix import VariationalGaussianMixture

# Fitted attributes that describe the posterior; equal fits have equal values.
FITTED_ARRAYS = [
    "weights_",
    "means_",
    "covariances_",
    "precisions_cholesky_",
    "mean_precision_",
    "degrees_of_freedom_",
]


def _blobs(n_samples=120, n_features=2, random_state=0):
    rng = np.random.RandomState(random_state)
    X = rng.randn(n_samples, n_features)
    X[: n_samples // 2] += 4.0
    return X


def _assert_same_fit(fitted, expected, rtol=1e-10):
    assert fitted.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(fitted.lower_bound_, expected.lower_bound_, rtol=rtol)
    for name in FITTED_ARRAYS:
        np.testing.assert_allclose(
            getattr(fitted, name), getattr(expected, name), rtol=rtol, err_msg=name
        )


def _subprocess_env():
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(skbayesmix.__file__))
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    return env


def _run_python(code, stdin=None, timeout=240):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        input=stdin,
        capture_output=True,
        env=_subprocess_env(),
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result.stdout


# --------------------------------------------------------------------------------
# joblib
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_grid_search_parallel_backend_has_no_failed_fits(backend):
    X = _blobs()
    param_grid = {"n_components": [1, 2]}
    estimator = VariationalGaussianMixture(covariance_type="diag", random_state=0)
    serial = GridSearchCV(estimator, param_grid, cv=2, error_score="raise").fit(X)
    try:
        with parallel_backend(backend, n_jobs=2):
            search = GridSearchCV(
                estimator, param_grid, cv=2, n_jobs=2, error_score="raise"
            ).fit(X)
    finally:
        if backend == "loky":
            # The workers hold a TensorFlow runtime each; do not leave them idle.
            get_reusable_executor().shutdown(wait=True)

    split_scores = [search.cv_results_[f"split{i}_test_score"] for i in range(2)]
    assert np.all(np.isfinite(split_scores))
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"],
        serial.cv_results_["mean_test_score"],
        rtol=1e-8,
    )
    assert search.best_params_ == {"n_components": 2}
    _assert_same_fit(search.best_estimator_, serial.best_estimator_, rtol=1e-8)


# --------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------


def test_fit_in_concurrent_threads_matches_serial_fits():
    rng = np.random.RandomState(0)
    X_a = rng.randn(300, 3)
    X_b = rng.randn(200, 4) * 3.0 + 1.0
    jobs = [
        (dict(n_components=3, covariance_type="full", random_state=0), X_a),
        (dict(n_components=4, covariance_type="full", random_state=1), X_b),
        (dict(n_components=2, covariance_type="tied", random_state=0), X_b),
        (
            dict(
                n_components=2,
                covariance_type="diag",
                weight_concentration_prior_type="dirichlet_distribution",
                random_state=0,
            ),
            X_a.astype(np.float32),
        ),
    ]
    serial = [VariationalGaussianMixture(**params).fit(X) for params, X in jobs]

    fitted = [None] * len(jobs)
    errors = []
    start_together = threading.Barrier(len(jobs))

    def fit(i):
        params, X = jobs[i]
        try:
            start_together.wait()
            fitted[i] = VariationalGaussianMixture(**params).fit(X)
        except Exception as exc:  # reported below, from the main thread
            errors.append(exc)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    for concurrent, expected in zip(fitted, serial):
        _assert_same_fit(concurrent, expected)


# --------------------------------------------------------------------------------
# clone, deepcopy, pickle
# --------------------------------------------------------------------------------


def _at_stage(stage, covariance_type, X):
    vgm = VariationalGaussianMixture(
        n_components=2,
        covariance_type=covariance_type,
        warm_start=stage == "warm_start_refit",
        max_iter=20,
        random_state=0,
    )
    if stage in ("fitted", "warm_start_refit"):
        vgm.fit(X)
    if stage == "warm_start_refit":
        vgm.fit(X)
    return vgm


@pytest.mark.parametrize("stage", ["unfitted", "fitted", "warm_start_refit"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimator_clone_deepcopy_pickle_at_every_stage(stage, covariance_type):
    X = _blobs()
    vgm = _at_stage(stage, covariance_type, X)

    cloned = clone(vgm)
    assert cloned.get_params() == vgm.get_params()
    assert not hasattr(cloned, "means_")

    for duplicate in (copy.deepcopy(vgm), pickle.loads(pickle.dumps(vgm))):
        assert duplicate.get_params() == vgm.get_params()
        if stage == "unfitted":
            assert not hasattr(duplicate, "means_")
            continue
        _assert_same_fit(duplicate, vgm, rtol=0)
        assert duplicate.lower_bounds_ == vgm.lower_bounds_
        np.testing.assert_array_equal(duplicate.predict_proba(X), vgm.predict_proba(X))
        np.testing.assert_array_equal(duplicate.sample(5)[0], vgm.sample(5)[0])

    # A copy carries on exactly as the original would.
    duplicate = pickle.loads(pickle.dumps(vgm))
    _assert_same_fit(duplicate.fit(X), vgm.fit(X), rtol=0)
    _assert_same_fit(clone(vgm).fit(X), clone(vgm).fit(X), rtol=0)


# --------------------------------------------------------------------------------
# TensorFlow's global state
# --------------------------------------------------------------------------------


def _tensorflow_state(tf):
    from tensorflow.python.framework import config as tf_config

    return {
        "functions_run_eagerly": tf.config.functions_run_eagerly(),
        "executing_eagerly": tf.executing_eagerly(),
        "op_determinism": tf_config.is_op_determinism_enabled(),
        "logger_level": tf.get_logger().level,
        "soft_device_placement": tf.config.get_soft_device_placement(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tensor_float_32": tf.config.experimental.tensor_float_32_execution_enabled(),
        "visible_devices": tf.config.get_visible_devices(),
    }


def _seeded_draws(tf):
    return [float(tf.random.uniform([])) for _ in range(3)]


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_fit_leaves_tensorflow_global_state_unchanged(covariance_type):
    tf = pytest.importorskip("tensorflow")
    X = np.random.RandomState(0).randn(80, 3)
    tf.random.set_seed(1)
    reference_draws = _seeded_draws(tf)
    before = _tensorflow_state(tf)

    tf.random.set_seed(1)
    VariationalGaussianMixture(
        n_components=2, covariance_type=covariance_type, random_state=0
    ).fit(X)
    # The global seed's op counter is where it would be had no fit happened.
    after_fit_draws = _seeded_draws(tf)
    after = _tensorflow_state(tf)

    for key, value in before.items():
        assert after[key] == value, key
    assert after_fit_draws == reference_draws


def test_fit_with_functions_run_eagerly_matches_compiled():
    tf = pytest.importorskip("tensorflow")
    X = _blobs(n_features=3)
    params = dict(n_components=2, max_iter=15, random_state=0)
    compiled = VariationalGaussianMixture(**params).fit(X)
    was_eager = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        eager = VariationalGaussianMixture(**params).fit(X)
        assert tf.config.functions_run_eagerly()
    finally:
        tf.config.run_functions_eagerly(was_eager)
    _assert_same_fit(eager, compiled, rtol=1e-8)


# --------------------------------------------------------------------------------
# Processes without TensorFlow
# --------------------------------------------------------------------------------


def test_pickled_fitted_model_predicts_without_tensorflow():
    X = _blobs(n_features=3)
    vgm = VariationalGaussianMixture(n_components=2, random_state=0).fit(X)
    expected = {
        "predict": vgm.predict(X),
        "predict_proba": vgm.predict_proba(X),
        "score_samples": vgm.score_samples(X),
        "sample": vgm.sample(7)[0],
    }
    payload = pickle.dumps((vgm, X))
    output = _run_python(
        """
        import pickle
        import sys

        # Any attempt to import TensorFlow now raises ImportError.
        for name in ["tensorflow", "tensorflow_probability", "tf_keras", "keras"]:
            sys.modules[name] = None

        vgm, X = pickle.loads(sys.stdin.buffer.read())
        result = {
            "predict": vgm.predict(X),
            "predict_proba": vgm.predict_proba(X),
            "score_samples": vgm.score_samples(X),
            "sample": vgm.sample(7)[0],
        }
        assert sys.modules["tensorflow"] is None
        sys.stdout.buffer.write(pickle.dumps(result))
        """,
        stdin=payload,
    )
    result = pickle.loads(output)
    for method, value in expected.items():
        np.testing.assert_array_equal(result[method], value, err_msg=method)


def test_import_does_not_import_tensorflow():
    output = _run_python(
        """
        import sys
        import skbayesmix
        from sklearn.base import clone

        vgm = clone(skbayesmix.VariationalGaussianMixture(n_components=3))
        vgm.get_params()
        repr(vgm)
        loaded = sorted(
            name for name in sys.modules
            if name.split(".")[0] in ("tensorflow", "tensorflow_probability")
        )
        print(loaded)
        """
    )
    assert output.decode().strip() == "[]"
