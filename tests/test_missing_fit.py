"""Fitting with missing entries (NaN): exact E-step, monotone ELBO, every driver."""

import pathlib
import sys
import warnings

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, WEIGHT_PRIOR_TYPES
from sklearn.exceptions import ConvergenceWarning

from skbayesmix import VariationalGaussianMixture
from skbayesmix._missing import split_incomplete

DATA = pathlib.Path(__file__).with_name("data")


def _correlated_blobs(rng, n_per_blob=150, n_features=3):
    return np.vstack(
        [
            rng.randn(n_per_blob, n_features) @ rng.randn(n_features, n_features)
            + centre
            for centre in (0.0, 5.0, -5.0)
        ]
    )


def _with_holes(X, rate, rng):
    X = X.copy()
    X[rng.rand(*X.shape) < rate] = np.nan
    return X


def _fit(estimator, X, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, **fit_params)


def test_complete_data_fits_equal_those_before_missing_values():
    sys.path.insert(0, str(DATA))
    try:
        from make_no_nan_reference import ATTRIBUTES, reference_fits
    finally:
        sys.path.remove(str(DATA))
    reference = np.load(DATA / "no_nan_reference.npz")
    for name, estimator, X in reference_fits():
        _fit(estimator, X)
        # float32 kernels round by the CPU's vector width (AVX2 or AVX-512), so
        # a float32 fit repeats the reference to its own precision only.
        rtol = 1e-12 if X.dtype == np.float64 else 1e-5
        for attribute in ATTRIBUTES:
            np.testing.assert_allclose(
                getattr(estimator, attribute),
                reference[f"{name}/{attribute}"],
                rtol=rtol,
                atol=0,
                err_msg=f"{name} {attribute}",
            )


@pytest.mark.parametrize("weight_type", WEIGHT_PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_batch_lower_bound_never_decreases_with_nan(covariance_type, weight_type):
    rng = np.random.RandomState(0)
    X = _with_holes(_correlated_blobs(rng), 0.3, rng)
    estimator = _fit(
        VariationalGaussianMixture(
            n_components=4,
            covariance_type=covariance_type,
            weight_concentration_prior_type=weight_type,
            max_iter=60,
            tol=0.0,
            random_state=0,
        ),
        X,
    )
    bounds = np.asarray(estimator.lower_bounds_)
    assert np.all(np.isfinite(bounds)) and bounds.size == 60
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:]))


def _reference_full_statistics(X, weights, means, expected_precision, offset):
    """Per-row conditional-Gaussian E-step and statistics, written out plainly."""
    n_components, n_features = means.shape
    counts = np.zeros(n_components)
    first = np.zeros((n_components, n_features))
    second = np.zeros((n_components, n_features, n_features))
    entropy = 0.0
    for x, w in zip(X, weights):
        m = np.isnan(x)
        o = ~m
        log_rho = np.empty(n_components)
        completed = np.empty((n_components, n_features))
        covariance = np.zeros((n_components, n_features, n_features))
        completion_entropy = np.empty(n_components)
        for k in range(n_components):
            A = expected_precision[k]
            delta_o = x[o] - means[k, o]
            schur = A[np.ix_(o, o)] - A[np.ix_(o, m)] @ np.linalg.solve(
                A[np.ix_(m, m)], A[np.ix_(m, o)]
            )
            log_det = np.linalg.slogdet(A[np.ix_(m, m)])[1]
            r = m.sum()
            log_rho[k] = (
                offset[k]
                + 0.5 * r * np.log(2 * np.pi)
                - 0.5 * log_det
                - 0.5 * delta_o @ schur @ delta_o
            )
            completed[k, o] = x[o]
            completed[k, m] = means[k, m] - np.linalg.solve(
                A[np.ix_(m, m)], A[np.ix_(m, o)] @ delta_o
            )
            covariance[k][np.ix_(m, m)] = np.linalg.inv(A[np.ix_(m, m)])
            completion_entropy[k] = 0.5 * (r * (1 + np.log(2 * np.pi)) - log_det)
        resp = np.exp(log_rho - np.logaddexp.reduce(log_rho))
        counts += w * resp
        first += w * resp[:, None] * completed
        second += (
            w
            * resp[:, None, None]
            * (completed[:, :, None] * completed[:, None, :] + covariance)
        )
        entropy += w * (resp @ completion_entropy - resp @ np.log(resp))
    return counts, first, second, entropy


# 1: every pattern gets blocks of its own, run as complete data.
@pytest.mark.parametrize("pattern_block_min_rows", [1, None])
def test_incomplete_statistics_equal_the_per_row_conditional_gaussian(
    pattern_block_min_rows, monkeypatch
):
    from skbayesmix import _missing
    from skbayesmix._state import COVARIANCE_STRUCTURES, Posterior
    from skbayesmix._tfp_backend import chunk_statistics
    from skbayesmix._tfp_backend._maths import log_rho_offset, posterior_moments

    if pattern_block_min_rows is not None:
        monkeypatch.setattr(_missing, "PATTERN_BLOCK_MIN_ROWS", pattern_block_min_rows)
    rng = np.random.RandomState(1)
    n_components, n_features = 3, 4
    X = _with_holes(rng.randn(200, n_features), 0.35, rng)
    X[0] = np.nan  # every entry missing: left out
    X[1, :] = [np.nan, 0.3, np.nan, np.nan]
    weights = rng.rand(200) * 2
    roots = rng.randn(n_components, n_features, n_features)
    posterior = Posterior(
        1.0 + rng.rand(n_components),
        np.zeros(n_components),
        1.0 + rng.rand(n_components),
        rng.randn(n_components, n_features),
        n_features + 2.0 + rng.rand(n_components),
        roots @ roots.transpose(0, 2, 1) + np.eye(n_features),
    )
    statistics = chunk_statistics(
        X,
        posterior,
        0.0,
        covariance_type="full",
        weight_concentration_prior_type="dirichlet_distribution",
        sample_weight=weights,
    )
    moments = posterior_moments(posterior, COVARIANCE_STRUCTURES["full"])
    offset = log_rho_offset(posterior, moments, 0.0, "dirichlet_distribution")
    keep = ~np.isnan(X).all(axis=1)
    expected = _reference_full_statistics(
        X[keep],
        weights[keep],
        posterior.means,
        moments.expected_precision.numpy(),
        offset.numpy(),
    )
    for got, want in zip(statistics, expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("small_chunks", [False, True])
def test_blocks_of_one_pattern_give_the_statistics_of_mixed_blocks(
    covariance_type, dtype, small_chunks, monkeypatch
):
    # The same rows through blocks of one pattern each (run as complete data
    # under each pattern's conditional precision) and through mixed blocks;
    # small_chunks builds the maps of one pattern at a time and spreads each
    # pattern over several blocks.
    from skbayesmix import _missing
    from skbayesmix._tfp_backend import _loop, chunk_statistics
    from skbayesmix._tfp_backend import _missing as _backend_missing

    if small_chunks:
        monkeypatch.setattr(_backend_missing, "_PATTERN_MAPS_ELEMENTS", 1)
        monkeypatch.setattr(_loop, "_COMPILED", {})
        monkeypatch.setattr(_missing, "INCOMPLETE_BLOCK_ROWS", 16)

    rng = np.random.RandomState(3)
    X = _with_holes(_correlated_blobs(rng, 400, 5), 0.2, rng).astype(dtype)
    model = _fit(
        VariationalGaussianMixture(
            n_components=3, covariance_type=covariance_type, random_state=0
        ),
        X,
    )
    posterior, _ = model._fitted_posterior()
    weights = rng.rand(len(X)) + 0.5
    results = {}
    for min_rows in (1, 10**9):
        monkeypatch.setattr(_missing, "PATTERN_BLOCK_MIN_ROWS", min_rows)
        results[min_rows] = chunk_statistics(
            X,
            posterior,
            model.reg_covar,
            covariance_type=covariance_type,
            weight_concentration_prior_type=model.weight_concentration_prior_type,
            sample_weight=weights,
        )
    for shared, mixed in zip(results[1], results[10**9]):
        np.testing.assert_allclose(shared, mixed, rtol=1e-10, atol=1e-10)


def test_split_gives_patterns_of_many_rows_blocks_of_their_own(monkeypatch):
    from skbayesmix import _missing

    monkeypatch.setattr(_missing, "PATTERN_BLOCK_MIN_ROWS", 3)
    X = np.ones((10, 3))
    X[[0, 2, 4], 1] = np.nan  # three rows miss feature 1: a block of its own
    X[1, 0] = X[3, 2] = np.nan  # one row each: one mixed block
    X[5, :2] = np.nan
    _, _, incomplete = split_incomplete(X, np.ones(10))
    # (first row, rows, missing features, first pattern, patterns) per block
    np.testing.assert_array_equal(
        incomplete.blocks, [[0, 3, 1, 0, 1], [3, 2, 1, 1, 2], [5, 1, 2, 3, 1]]
    )
    np.testing.assert_array_equal(incomplete.patterns[:3, 0], [1, 0, 2])


def test_split_sorts_rows_by_number_missing_and_drops_empty_rows():
    X = np.array(
        [[1.0, 2.0, 3.0], [np.nan, 2.0, np.nan], [np.nan] * 3, [1.0, np.nan, 3.0]]
    )
    complete, weights, incomplete = split_incomplete(X, np.array([1, 2, 3, 4.0]))
    np.testing.assert_array_equal(complete, X[:1])
    np.testing.assert_array_equal(incomplete.sample_weight, [4.0, 2.0])
    np.testing.assert_array_equal(
        incomplete.patterns[incomplete.pattern], [[1, 0], [0, 2]]
    )
    np.testing.assert_array_equal(incomplete.pattern, [0, 1])
    np.testing.assert_array_equal(incomplete.patterns, [[1, 0], [0, 2]])
    # (first row, rows, missing features, first pattern, patterns) per block
    np.testing.assert_array_equal(incomplete.blocks, [[0, 1, 1, 0, 1], [1, 1, 2, 1, 1]])
    assert split_incomplete(X[:1], np.ones(1)) is None


def test_split_finds_no_hole_where_a_sum_overflows_to_nan():
    # +inf + -inf is NaN: a NaN sum alone must not be read as a hole.
    X = np.zeros((8, 2))
    X.reshape(-1)[[0, 8]] = 1e308
    X.reshape(-1)[[1, 9]] = -1e308
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(np.sum(X))
    assert split_incomplete(X, np.ones(len(X))) is None


def test_split_groups_rows_by_pattern():
    # Rows that miss the same features share one pattern, so the missing block
    # of each precision is factored once for all of them.
    rng = np.random.RandomState(0)
    X = _with_holes(rng.randn(3000, 5), 0.2, rng)
    _, _, incomplete = split_incomplete(X, np.ones(len(X)))
    masks = np.isnan(incomplete.values)
    for index, missing in enumerate(incomplete.patterns):
        rows = incomplete.pattern == index
        n_missing = masks[rows][0].sum()
        expected = np.zeros(5, bool)
        expected[missing[:n_missing]] = True
        assert (masks[rows] == expected).all()
    assert len(incomplete.patterns) == len(np.unique(masks, axis=0))
    for start, size, n_missing, first, n_patterns in incomplete.blocks:
        block = incomplete.pattern[start : start + size]
        assert block.min() == first and block.max() == first + n_patterns - 1
        assert (masks[start : start + size].sum(axis=1) == n_missing).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_weighted_shuffled_fit_with_nan_equals_fit_of_repeated_rows(covariance_type):
    rng = np.random.RandomState(2)
    X = _with_holes(_correlated_blobs(rng, 20), 0.2, rng)
    weights = rng.randint(0, 4, size=X.shape[0])
    order = rng.permutation(X.shape[0])
    params = dict(n_components=3, covariance_type=covariance_type, random_state=0)
    weighted = _fit(
        VariationalGaussianMixture(**params),
        X[order],
        sample_weight=weights[order].astype(float),
    )
    repeated = _fit(VariationalGaussianMixture(**params), X.repeat(weights, axis=0))
    np.testing.assert_allclose(weighted.lower_bound_, repeated.lower_bound_, rtol=1e-6)
    np.testing.assert_allclose(
        weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-7
    )


def test_fit_with_nan_beats_fits_on_complete_rows_and_on_mean_imputation():
    rng = np.random.RandomState(3)
    X = _correlated_blobs(rng, 200, 5)
    held_out = _correlated_blobs(np.random.RandomState(3), 200, 5)[::2] + 0.0
    holes = _with_holes(X, 0.3, rng)
    params = dict(n_components=3, random_state=0, max_iter=300)
    with_nan = _fit(VariationalGaussianMixture(**params), holes).score(held_out)
    complete_rows = holes[~np.isnan(holes).any(axis=1)]
    only_complete = _fit(VariationalGaussianMixture(**params), complete_rows).score(
        held_out
    )
    imputed = np.where(np.isnan(holes), np.nanmean(holes, axis=0), holes)
    mean_imputed = _fit(VariationalGaussianMixture(**params), imputed).score(held_out)
    assert with_nan > only_complete and with_nan > mean_imputed


def test_online_fit_with_nan_agrees_with_batch_fit():
    rng = np.random.RandomState(4)
    X = _correlated_blobs(rng, 2000)
    holes = _with_holes(X, 0.2, rng)
    batch = _fit(VariationalGaussianMixture(n_components=3, random_state=0), holes)
    # Missing entries slow SVI down (each step completes rows under an older
    # q(theta)): at the default tol it stopped 0.05 nats short here.
    online = _fit(
        VariationalGaussianMixture(
            n_components=3,
            random_state=0,
            learning_method="online",
            batch_size=500,
            tol=1e-5,
        ),
        holes,
    )
    assert abs(online.score(X) - batch.score(X)) < 0.02
    streamed = VariationalGaussianMixture(
        n_components=3, random_state=0, learning_method="online", batch_size=500
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(20):
            # Shuffled: the rows come in blob order, and a stream's start
            # sees only its first chunk.
            for chunk in np.array_split(holes[rng.permutation(len(holes))], 4):
                streamed.partial_fit(chunk)
    # A stream of 20 passes learns from the rows with holes at least as well as
    # the batch fit (which, from this start, ends 0.2 nats lower here).
    assert streamed.score(X) > batch.score(X) - 0.05


def test_online_fit_of_memmap_with_nan(tmp_path):
    rng = np.random.RandomState(5)
    holes = _with_holes(_correlated_blobs(rng, 300), 0.2, rng)
    path = tmp_path / "X.npy"
    np.save(path, holes)
    mapped = np.load(path, mmap_mode="r")
    params = dict(n_components=3, random_state=0, learning_method="online")
    on_disk = _fit(VariationalGaussianMixture(**params), mapped)
    in_memory = _fit(VariationalGaussianMixture(**params), holes)
    np.testing.assert_allclose(on_disk.means_, in_memory.means_, rtol=1e-10)


def test_column_without_observed_value_is_named():
    X = np.random.RandomState(0).randn(20, 3)
    X[:, 1] = np.nan
    with pytest.raises(ValueError, match="Feature 1 of X has no observed value"):
        VariationalGaussianMixture(n_components=2).fit(X)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match="Feature 'b' of X has no observed value"):
        VariationalGaussianMixture(n_components=2).fit(frame)
    X[:, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        VariationalGaussianMixture(n_components=2).fit(X)


def test_moments_with_nan_merge_exactly():
    from skbayesmix._standardisation import data_moments, row_pieces

    rng = np.random.RandomState(6)
    X = _with_holes(rng.randn(1000, 4) * [1, 2, 3, 4] + 7.0, 0.3, rng)
    weights = rng.rand(1000)
    whole = data_moments([(X, weights)], 4, 2)
    pieces = data_moments(
        [(X[i : i + 97], weights[i : i + 97]) for i in range(0, 1000, 97)], 4, 2
    )
    for got, want in zip(pieces, whole):
        if got is not None and not isinstance(got, tuple):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(
        pieces.missing.pair_sums, whole.missing.pair_sums, atol=1e-10
    )
    observed = ~np.isnan(X)
    mean = np.array(
        [
            np.average(X[observed[:, j], j], weights=weights[observed[:, j]])
            for j in range(4)
        ]
    )
    np.testing.assert_allclose(whole.shift, mean, rtol=1e-12)
    centred = np.where(observed, X - mean, 0.0)
    np.testing.assert_allclose(
        whole.scaled_scatter * whole.max_abs**2,
        (centred * weights[:, None]).T @ centred,
        rtol=1e-10,
    )
    assert row_pieces  # the pieces API is the one the drivers use
