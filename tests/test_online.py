"""Online variational inference: online fit, partial_fit and memmaps."""

import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from sklearn.exceptions import ConvergenceWarning

import skbayesmix
from skbayesmix import VariationalGaussianMixture
from skbayesmix._standardisation import DataMoments, Standardisation

TUTORIAL_CENTRES = np.array([[2.0, 0.0], [-2.0, -4.0], [-2.0, 4.0]])


def _tutorial_data(rng, n_per_blob=1024):
    """The tutorial's data: three unit-variance blobs in 2-D, shuffled."""
    X = np.vstack([rng.randn(n_per_blob, 2) + c for c in TUTORIAL_CENTRES])
    return X[rng.permutation(len(X))]


def _fitted_state(model):
    """Every attribute of a model, for exact before/after comparisons."""
    return pickle.dumps(model.__dict__)


def test_step_size_follows_lda_convention():
    from skbayesmix._online import step_size

    assert step_size(1, 0.0, 0.7) == 1.0
    assert step_size(1, 10.0, 0.7) == pytest.approx(11.0**-0.7)
    assert step_size(5, 10.0, 0.5) == pytest.approx(15.0**-0.5)


def test_minibatch_slices_cover_rows_in_nearly_equal_sizes():
    from skbayesmix._online import minibatch_slices

    slices = minibatch_slices(10_001, 1000)
    sizes = [s.stop - s.start for s in slices]
    assert len(slices) == 11
    assert max(sizes) - min(sizes) <= 1
    assert slices[0].start == 0 and slices[-1].stop == 10_001
    assert all(a.stop == b.start for a, b in zip(slices[:-1], slices[1:]))
    assert minibatch_slices(5, 1000) == [slice(0, 5)]


@pytest.mark.parametrize("scatter_rank", [2, 1])
def test_streamed_moments_over_blocks_equal_moments_of_whole(monkeypatch, scatter_rank):
    import skbayesmix._online as online

    rng = np.random.RandomState(0)
    X = rng.randn(1000, 3) * [1.0, 10.0, 0.1] + 5.0
    X[500:] *= 3.0  # the running max grows between blocks
    weights = rng.uniform(0.0, 2.0, size=1000)
    weights[:50] = 0.0
    # 64 rows per block, so that 16 blocks are merged.
    monkeypatch.setattr(online, "_BLOCK_BYTES", 64 * 3 * 8)
    moments = online.streamed_moments(X, weights, scatter_rank, np.float64, True)
    centred = X - np.average(X, axis=0, weights=weights)
    scatter = (centred * weights[:, None]).T @ centred / moments.max_abs**2
    np.testing.assert_allclose(moments.shift, np.average(X, axis=0, weights=weights))
    assert moments.max_abs == np.max(np.abs(X[50:]))
    assert moments.total_weight == pytest.approx(np.sum(weights))
    assert moments.n_positive == 950
    expected = scatter if scatter_rank == 2 else np.diag(scatter)
    np.testing.assert_allclose(moments.scaled_scatter, expected, rtol=1e-10)


def test_streamed_moments_reject_nan_in_a_late_block(monkeypatch):
    import skbayesmix._online as online

    X = np.random.RandomState(0).randn(1000, 3)
    X[900, 1] = np.inf
    monkeypatch.setattr(online, "_BLOCK_BYTES", 64 * 3 * 8)
    with pytest.raises(ValueError, match="Input X contains infinity"):
        online.streamed_moments(X, None, 2, np.float64, True)


def test_fit_online_standardises_as_the_batch_fit():
    rng = np.random.RandomState(0)
    X = rng.randn(500, 3) * [1.0, 100.0, 0.01] + 1e3
    model = VariationalGaussianMixture(
        n_components=2, learning_method="online", max_iter=1, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    expected = Standardisation.from_data(X, None, model.reg_covar)
    online = Standardisation.from_data_moments(
        DataMoments(*model._online_moments), model.reg_covar
    )
    np.testing.assert_allclose(online.shift, expected.shift)
    assert online.max_abs == expected.max_abs
    assert online.spread == pytest.approx(expected.spread)
    batch = VariationalGaussianMixture(n_components=2, max_iter=0).fit(X)
    np.testing.assert_allclose(model.mean_prior_, batch.mean_prior_)
    np.testing.assert_allclose(model.covariance_prior_, batch.covariance_prior_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_online_finds_the_three_tutorial_blobs(covariance_type):
    X = _tutorial_data(np.random.RandomState(0))
    model = VariationalGaussianMixture(
        n_components=3,
        covariance_type=covariance_type,
        learning_method="online",
        batch_size=256,
        random_state=0,
    ).fit(X)
    means = model.means_[np.lexsort(model.means_.T[::-1])]
    expected = TUTORIAL_CENTRES[np.lexsort(TUTORIAL_CENTRES.T[::-1])]
    np.testing.assert_allclose(means, expected, atol=0.15)
    np.testing.assert_allclose(np.sort(model.weights_), 1 / 3, atol=0.03)
    assert model.converged_
    assert model.n_iter_ == len(model.lower_bounds_) >= 1
    assert model.n_batch_iter_ == model.n_iter_ * 12
    # The bound of a pass is a true ELBO, so it cannot beat the batch optimum
    # by more than rounding; it should be close to it.
    batch = VariationalGaussianMixture(
        n_components=3, covariance_type=covariance_type, random_state=0
    ).fit(X)
    assert model.lower_bound_ <= batch.lower_bound_ + 1e-6 * abs(batch.lower_bound_)
    assert model.lower_bound_ >= batch.lower_bound_ - 0.01 * len(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_partial_fit_with_rho_one_equals_one_cavi_step(covariance_type):
    X = _tutorial_data(np.random.RandomState(0), n_per_blob=100)
    # Not 'kmeans': online initialisations keep the best of 5 k-means runs.
    params = dict(
        n_components=3,
        covariance_type=covariance_type,
        init_params="k-means++",
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        batch = VariationalGaussianMixture(max_iter=1, **params).fit(X)
    online = VariationalGaussianMixture(
        batch_size=len(X), learning_offset=0.0, total_samples=len(X), **params
    ).partial_fit(X)
    for name in ("weights_", "means_", "covariances_", "degrees_of_freedom_"):
        np.testing.assert_allclose(
            getattr(online, name), getattr(batch, name), rtol=1e-10, err_msg=name
        )
    assert online.lower_bound_ == pytest.approx(batch.lower_bound_, rel=1e-10)
    assert online.n_batch_iter_ == 1


def test_partial_fit_is_reproducible_with_random_state():
    rng = np.random.RandomState(0)
    chunks = np.array_split(_tutorial_data(rng), 5)

    def stream_fit():
        model = VariationalGaussianMixture(
            n_components=3, batch_size=200, total_samples=3072, random_state=3
        )
        for chunk in chunks:
            model.partial_fit(chunk)
        return model

    first, second = stream_fit(), stream_fit()
    np.testing.assert_array_equal(first.means_, second.means_)
    np.testing.assert_array_equal(first.covariances_, second.covariances_)
    assert first.lower_bounds_ == second.lower_bounds_


def test_partial_fit_from_a_generator_is_valid_after_every_chunk():
    rng = np.random.RandomState(0)
    X_test = _tutorial_data(rng, n_per_blob=300)
    batch = VariationalGaussianMixture(n_components=3, random_state=0).fit(
        _tutorial_data(np.random.RandomState(1), n_per_blob=2000)
    )

    def chunks():
        chunk_rng = np.random.RandomState(1)
        for _ in range(12):
            yield _tutorial_data(chunk_rng, n_per_blob=500)

    model = VariationalGaussianMixture(
        n_components=3, batch_size=500, total_samples=18_000, random_state=0
    )
    for n_calls, chunk in enumerate(chunks(), start=1):
        model.partial_fit(chunk)
        assert np.all(np.isfinite(model.score_samples(X_test)))
        assert model.predict(X_test).shape == (len(X_test),)
        assert model.n_iter_ == len(model.lower_bounds_) == n_calls
        assert not model.converged_
    assert model.n_batch_iter_ == 12 * 3
    assert model.score(X_test) > batch.score(X_test) - 0.01


def test_partial_fit_continues_after_pickling():
    rng = np.random.RandomState(0)
    chunks = np.array_split(_tutorial_data(rng), 4)
    params = dict(n_components=3, batch_size=300, total_samples=3072, random_state=0)
    straight = VariationalGaussianMixture(**params)
    for chunk in chunks:
        straight.partial_fit(chunk)
    resumed = VariationalGaussianMixture(**params)
    for chunk in chunks[:2]:
        resumed.partial_fit(chunk)
    resumed = pickle.loads(pickle.dumps(resumed))
    for chunk in chunks[2:]:
        resumed.partial_fit(chunk)
    np.testing.assert_array_equal(straight.means_, resumed.means_)
    assert straight.lower_bounds_ == resumed.lower_bounds_


def test_partial_fit_continues_an_online_fit_and_a_batch_fit_drops_its_state():
    X = _tutorial_data(np.random.RandomState(0))
    model = VariationalGaussianMixture(
        n_components=3, learning_method="online", batch_size=512, random_state=0
    ).fit(X)
    n_batch_iter, n_iter = model.n_batch_iter_, model.n_iter_
    model.partial_fit(X[:1000])
    assert model.n_batch_iter_ == n_batch_iter + 2
    assert model.n_iter_ == n_iter + 1
    model.set_params(learning_method="batch").fit(X)
    assert not hasattr(model, "n_batch_iter_")
    assert not hasattr(model, "_online_statistics")
    # On a batch-fitted model, partial_fit starts from the fitted posterior.
    means = model.means_.copy()
    model.partial_fit(X[:1000])
    assert model.n_batch_iter_ == 2
    np.testing.assert_allclose(model.means_, means, atol=0.2)


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X),
         "Input X contains infinity"),
        (lambda X: X[:, :1], "X has 1 features, but VariationalGaussianMixture is "
         "expecting 2 features as input"),
        (lambda X: X[:0], r"Found array with 0 sample\(s\)"),
    ],
)  # fmt: skip
def test_partial_fit_bad_chunk_raises_and_leaves_model_unchanged(make_bad, message):
    X = _tutorial_data(np.random.RandomState(0))
    model = VariationalGaussianMixture(n_components=3, random_state=0)
    model.partial_fit(X[:1000])
    before = _fitted_state(model)
    with pytest.raises(ValueError, match=message):
        model.partial_fit(make_bad(X[1000:2000]))
    assert _fitted_state(model) == before
    # Nothing was lost: the next good chunk continues as if the bad one never came.
    reference = VariationalGaussianMixture(n_components=3, random_state=0)
    reference.partial_fit(X[:1000])
    model.partial_fit(X[2000:])
    reference.partial_fit(X[2000:])
    np.testing.assert_array_equal(model.means_, reference.means_)


def test_partial_fit_first_chunk_smaller_than_n_components_raises():
    X = np.random.RandomState(0).randn(2, 2)
    model = VariationalGaussianMixture(n_components=3)
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        model.partial_fit(X)
    assert not hasattr(model, "n_features_in_")
    with pytest.raises(ValueError, match="has no observed value"):
        model.partial_fit(np.full((5, 2), np.nan))
    assert not hasattr(model, "n_features_in_")


def test_partial_fit_minibatch_of_zero_weight_takes_no_step():
    X = _tutorial_data(np.random.RandomState(0))
    model = VariationalGaussianMixture(n_components=3, batch_size=500, random_state=0)
    model.partial_fit(X[:1000])
    n_batch_iter = model.n_batch_iter_
    weights = np.ones(1000)
    weights[:500] = 0.0
    model.partial_fit(X[1000:2000], sample_weight=weights)
    assert model.n_batch_iter_ == n_batch_iter + 1
    before = _fitted_state(model)
    with pytest.raises(ValueError, match="at least one non-zero"):
        model.partial_fit(X[2000:], sample_weight=np.zeros(len(X) - 2000))
    assert _fitted_state(model) == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_online_memmap_equals_in_memory_fit(tmp_path, dtype):
    X = _tutorial_data(np.random.RandomState(0)).astype(dtype)
    path = tmp_path / "X.dat"
    on_disk = np.memmap(path, dtype=dtype, mode="w+", shape=X.shape)
    on_disk[:] = X
    on_disk.flush()
    on_disk = np.memmap(path, dtype=dtype, mode="r", shape=X.shape)
    params = dict(
        n_components=3, learning_method="online", batch_size=256, random_state=0
    )
    from_disk = VariationalGaussianMixture(**params).fit(on_disk)
    in_memory = VariationalGaussianMixture(**params).fit(X)
    np.testing.assert_array_equal(from_disk.means_, in_memory.means_)
    assert from_disk.means_.dtype == dtype
    assert from_disk.lower_bounds_ == in_memory.lower_bounds_


def test_fit_online_memmap_is_validated_block_by_block(tmp_path, monkeypatch):
    import skbayesmix._online as online

    X = _tutorial_data(np.random.RandomState(0))
    X[-3, 0] = np.inf
    path = tmp_path / "X.dat"
    on_disk = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    on_disk[:] = X
    on_disk.flush()
    monkeypatch.setattr(online, "_BLOCK_BYTES", 100 * 2 * 8)
    model = VariationalGaussianMixture(n_components=3, learning_method="online")
    with pytest.raises(ValueError, match="Input X contains infinity"):
        model.fit(np.memmap(path, dtype=np.float64, mode="r", shape=X.shape))


def test_fit_online_warm_start_continues_from_previous_fit():
    X = _tutorial_data(np.random.RandomState(0))
    model = VariationalGaussianMixture(
        n_components=3,
        learning_method="online",
        batch_size=256,
        warm_start=True,
        random_state=0,
    ).fit(X)
    means, bound = model.means_.copy(), model.lower_bound_
    # The first pass is tested against the previous fit's bound, as in a batch
    # warm start: from a converged fit, one pass is enough.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.set_params(max_iter=1).fit(X)
    np.testing.assert_allclose(model.means_, means, atol=0.1)
    assert model.n_iter_ == 1 and model.converged_
    assert abs(model.lower_bound_ - bound) < model.tol * len(X)


def test_partial_fit_model_unpickles_and_predicts_without_tensorflow():
    X = _tutorial_data(np.random.RandomState(0))
    model = VariationalGaussianMixture(n_components=3, random_state=0)
    model.partial_fit(X)
    code = textwrap.dedent(
        """
        import pickle
        import sys

        # Any attempt to import TensorFlow now raises ImportError.
        for name in ["tensorflow", "tensorflow_probability", "tf_keras", "keras"]:
            sys.modules[name] = None
        model, X = pickle.loads(sys.stdin.buffer.read())
        sys.stdout.buffer.write(pickle.dumps(model.score_samples(X)))
        """
    )
    package_root = os.path.dirname(os.path.dirname(skbayesmix.__file__))
    env = dict(os.environ, PYTHONPATH=package_root)
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps((model, X)),
        capture_output=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    np.testing.assert_array_equal(pickle.loads(result.stdout), model.score_samples(X))


def test_read_rows_gathers_scattered_memmap_rows(tmp_path):
    from skbayesmix._online import read_rows

    X = np.random.RandomState(0).randn(2000, 3)
    on_disk = np.memmap(tmp_path / "X.dat", dtype=np.float64, mode="w+", shape=X.shape)
    on_disk[:] = X
    on_disk.flush()
    on_disk = np.memmap(tmp_path / "X.dat", dtype=np.float64, mode="r", shape=X.shape)
    rows = np.sort(np.random.RandomState(1).choice(2000, 700, replace=False))
    np.testing.assert_array_equal(read_rows(on_disk, rows, np.float64), X[rows])
    np.testing.assert_array_equal(
        read_rows(on_disk, slice(10, 20), np.float32), X[10:20].astype(np.float32)
    )
