"""Starts that depend neither on row order nor on how weight is split into rows."""

import numpy as np
import pytest
from conftest import sample_weight_check_data

from skbayesmix import _starts
from skbayesmix._starts import (
    distinct_rows,
    initial_resp,
    largest_sampling_keys,
    sample_by_weight,
)

INIT_PARAMS = ["kmeans", "k-means++", "random", "random_from_data"]


def test_distinct_rows_merge_copies_and_drop_zero_weights():
    rng = np.random.RandomState(0)
    X = rng.randn(6, 3)
    X_with_copies = np.vstack([X, X[[1, 1, 4]]])
    weights = np.array([1.0, 2.0, 0.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0])
    distinct = distinct_rows(X_with_copies, weights)
    assert distinct.values.shape == (5, 3)  # row 2 has weight 0
    assert distinct.inverse[2] == -1
    assert distinct.inverse[1] == distinct.inverse[6] == distinct.inverse[7]
    np.testing.assert_array_equal(distinct.values[distinct.inverse[1]], X[1])
    assert distinct.weights[distinct.inverse[1]] == 4.0
    assert distinct.weights.sum() == weights.sum()


def test_distinct_rows_order_does_not_depend_on_row_order():
    rng = np.random.RandomState(0)
    X = rng.randn(50, 4).astype(np.float32)
    first = distinct_rows(X)
    order = rng.permutation(50)
    second = distinct_rows(X[order])
    np.testing.assert_array_equal(first.values, second.values)
    np.testing.assert_array_equal(first.inverse[order], second.inverse)


def test_distinct_rows_tied_on_first_feature_are_ordered_by_value():
    # Rows with missing entries start from their mean imputation, so whole
    # columns tie; copies that differ in the last bits (an in-memory and a Dask
    # fit standardise with moments reduced in other orders) must order alike.
    rng = np.random.RandomState(0)
    X = rng.randn(20, 3)
    X[:, 0] = 0.0
    X[:3, 1] = 0.0
    X[3, 1] = -0.0
    X = np.vstack([X, X[:5]])
    first = distinct_rows(X)
    assert first.values.shape == (20, 3)
    assert np.all(np.diff(first.values[:, 1]) >= 0)
    order = rng.permutation(len(X))
    second = distinct_rows(X[order])
    np.testing.assert_array_equal(first.values, second.values)
    np.testing.assert_array_equal(first.inverse[order], second.inverse)
    nudged = X.copy()
    nudged[:, 1:] = np.nextafter(nudged[:, 1:], np.inf)
    third = distinct_rows(nudged)
    np.testing.assert_array_equal(first.inverse, third.inverse)


def test_distinct_rows_of_float32_data_keep_the_float64_order():
    X = np.random.RandomState(0).randn(200, 3)
    order64 = distinct_rows(X).inverse
    order32 = distinct_rows(X.astype(np.float32)).inverse
    np.testing.assert_array_equal(order32, order64)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_initial_resp_weights_equal_repeated_rows_in_any_order(init_params):
    X_weighted, weights, X_repeated, X = sample_weight_check_data(
        np.random.RandomState(42)
    )
    weighted = initial_resp(
        init_params, 3, X_weighted, weights, np.random.RandomState(0)
    )
    repeated = initial_resp(init_params, 3, X_repeated, None, np.random.RandomState(0))
    # The responsibilities of a row are a function of its value.
    for row in range(len(X)):
        at_weighted = np.flatnonzero((X_weighted == X[row]).all(axis=1))
        at_repeated = np.flatnonzero((X_repeated == X[row]).all(axis=1))
        if weights[at_weighted[0]] == 0:
            np.testing.assert_array_equal(weighted[at_weighted[0]], 0.0)
            assert at_repeated.size == 0
            continue
        for index in at_repeated:
            np.testing.assert_array_equal(repeated[index], weighted[at_weighted[0]])
    # The start's counts: every copy of a point counts, as its weight does.
    np.testing.assert_allclose(
        weights @ weighted, repeated.sum(axis=0), rtol=1e-12, atol=0
    )


def test_initial_resp_with_fewer_distinct_rows_than_components():
    X = np.repeat([[0.0, 1.0], [2.0, 3.0]], 5, axis=0)
    for init_params in INIT_PARAMS:
        resp = initial_resp(init_params, 3, X, None, np.random.RandomState(0))
        assert resp.shape == (10, 3)
        assert np.all(resp >= 0)
        if init_params in ("kmeans", "random"):
            np.testing.assert_allclose(resp.sum(axis=1), 1.0)


def test_largest_sampling_keys_merge_over_chunks():
    weights = np.random.RandomState(0).uniform(0, 3, size=1000)
    weights[::7] = 0.0
    keys, rows = largest_sampling_keys(weights, 50, np.random.RandomState(1))
    assert rows.size == 50 and np.all(weights[rows] > 0)
    assert np.unique(rows).size == 50


def test_sample_by_weight_draws_heavy_rows_more_often():
    weights = np.ones(200)
    weights[:20] = 20.0
    counts = np.zeros(200)
    for seed in range(50):
        counts[sample_by_weight(weights, 200, 20, np.random.RandomState(seed))] += 1
    assert counts[:20].mean() > 5 * counts[20:].mean()


def test_sample_by_weight_takes_every_positive_row_without_randomness():
    weights = np.array([1.0, 0.0, 2.0, 3.0])
    random_state = np.random.RandomState(0)
    state = random_state.get_state()[1].copy()
    np.testing.assert_array_equal(
        sample_by_weight(weights, 4, 5, random_state), [0, 2, 3]
    )
    np.testing.assert_array_equal(random_state.get_state()[1], state)


def test_sample_by_weight_over_pieces_is_a_sample_of_the_largest_keys(monkeypatch):
    weights = np.random.RandomState(0).uniform(0, 2, size=1000)
    whole = sample_by_weight(weights, 1000, 50, np.random.RandomState(3))
    monkeypatch.setattr(_starts, "_SAMPLE_PIECE_ROWS", 64)
    pieces = sample_by_weight(weights, 1000, 50, np.random.RandomState(3))
    assert pieces.size == whole.size == 50
    assert np.all(np.diff(pieces) > 0) and np.all(weights[pieces] > 0)
    unweighted = sample_by_weight(None, 1000, 50, np.random.RandomState(3))
    assert unweighted.size == 50 and unweighted.max() < 1000
