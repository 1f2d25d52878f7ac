"""Rows with missing entries (NaN): how fitting receives them.

Missing entries are latent and missing at random. The E-step integrates them out
exactly (see `skbayesmix._tfp_backend._missing`); it takes the rows that have
them apart from the complete rows, which keep the GEMM path unchanged, sorted by
their number of missing features, so that each block of rows shares one shape of
the small linear algebra it needs, and within that by pattern, so that the
linear algebra runs once per pattern. A pattern of many rows gets blocks of its
own (`PATTERN_BLOCK_MIN_ROWS`).
"""

from typing import NamedTuple

import numpy as np

__all__ = ["IncompleteRows", "mean_imputed", "split_incomplete"]

# Rows per block of the incomplete E-step. Its largest temporaries are
# [rows, n_components * n_features] (2 MB at K = 8, D = 16); fewer rows per block
# cost more per row in op overhead, more rows fall out of cache.
INCOMPLETE_BLOCK_ROWS = 2048

# Patterns of at least this many rows get blocks of their own, which a
# Wishart's E-step runs as complete data (the design and its two GEMMs) under
# the pattern's conditional precision: 0.45-0.9 us per row at D = 16, K = 8,
# against 0.8-1.7 us in mixed blocks, plus about 0.1 ms per pattern, so the
# crossover is near 100 rows.
PATTERN_BLOCK_MIN_ROWS = 128


class IncompleteRows(NamedTuple):
    """Rows with at least one missing entry, sorted by how many, then by pattern.

    A pattern is a set of missing features. Rows that share one share the
    missing block of each component's precision, so its Cholesky factor is
    computed once per pattern and component rather than once per row. Within
    one number missing, the patterns of at least `PATTERN_BLOCK_MIN_ROWS` rows
    come first, each in blocks of its own; the other patterns' rows follow, in
    blocks that mix patterns.

    values : ndarray of shape (n_rows, n_features)
        The rows, NaN where missing, in X's dtype.
    sample_weight : ndarray of shape (n_rows,), float64
    pattern : int32 ndarray of shape (n_rows,)
        The index of each row's pattern in `patterns`.
    patterns : int32 ndarray of shape (n_patterns, max_missing)
        The indices of each pattern's missing features first, in increasing
        order; the rest of the row is padding.
    blocks : int32 ndarray of shape (n_blocks, 5)
        (first row, number of rows, number of missing features, first pattern,
        number of patterns) of each block. No block spans two numbers missing.
    """

    values: np.ndarray
    sample_weight: np.ndarray
    pattern: np.ndarray
    patterns: np.ndarray
    blocks: np.ndarray


def split_incomplete(X, sample_weight):
    """Complete rows and `IncompleteRows` of X, or None when X has no NaN.

    Rows with every entry missing, or of weight zero, carry no information about
    the parameters (their likelihood is 1 whatever they are) and are left out.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,), float64

    Returns
    -------
    split : tuple of (ndarray, ndarray, IncompleteRows) or None
        The complete rows, their weights, and the incomplete rows.
    """
    # NaN propagates through a sum, so a sum that is not NaN proves X complete
    # in one pass; the per-row counts took 23 ms on a complete 1e6 x 16 X.
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isnan(np.sum(X)):
            return None
    missing = np.isnan(X)  # [n, d]
    n_missing = missing.sum(axis=1)
    if not n_missing.any():
        return None
    complete = n_missing == 0
    informative = (n_missing < X.shape[1]) & (sample_weight > 0) & ~complete
    rows = np.flatnonzero(informative)
    masks, counts = missing[rows], n_missing[rows]
    first_rows, pattern = _patterns_of(masks, counts)
    pattern_rows = np.bincount(pattern)
    # Patterns by number missing, and within that those of many rows first, so
    # that the rest of each number missing is one run of rows.
    order = np.lexsort(
        (
            np.arange(len(first_rows)),
            pattern_rows < PATTERN_BLOCK_MIN_ROWS,
            counts[first_rows],
        )
    )
    first_rows, pattern_rows = first_rows[order], pattern_rows[order]
    pattern = np.argsort(order)[pattern]
    by_pattern = np.argsort(pattern, kind="stable")
    rows, pattern, counts = rows[by_pattern], pattern[by_pattern], counts[by_pattern]
    max_missing = int(counts.max()) if rows.size else 0
    # Stable: each pattern's missing features first, in increasing order.
    patterns = np.argsort(~masks[first_rows], axis=1, kind="stable")[:, :max_missing]
    blocks = [
        (
            start,
            size,
            counts[start],
            pattern[start],
            pattern[start + size - 1] - pattern[start] + 1,
        )
        for first, stop in _runs(pattern, pattern_rows, counts)
        for start in range(first, stop, INCOMPLETE_BLOCK_ROWS)
        for size in [min(INCOMPLETE_BLOCK_ROWS, stop - start)]
    ]
    incomplete = IncompleteRows(
        X[rows],
        np.asarray(sample_weight[rows], np.float64),
        pattern.astype(np.int32),
        patterns.astype(np.int32),
        np.asarray(blocks, np.int32).reshape(-1, 5),
    )
    return X[complete], sample_weight[complete], incomplete


def _runs(pattern, pattern_rows, counts):
    """(first, stop) rows of each pattern of many rows, and of the rest per r.

    Parameters
    ----------
    pattern : ndarray of shape (n_rows,)
        Sorted, patterns ordered as `split_incomplete` orders them.
    pattern_rows : ndarray of shape (n_patterns,)
        Rows per pattern.
    counts : ndarray of shape (n_rows,)
        The number missing of each row, sorted.
    """
    stops = np.cumsum(pattern_rows)
    starts = stops - pattern_rows
    runs = [
        (start, stop)
        for start, stop, size in zip(starts, stops, pattern_rows)
        if size >= PATTERN_BLOCK_MIN_ROWS
    ]
    many = np.repeat(pattern_rows >= PATTERN_BLOCK_MIN_ROWS, pattern_rows)
    for count in np.unique(counts[~many]):
        rest = np.flatnonzero((counts == count) & ~many)
        runs.append((rest[0], rest[-1] + 1))
    return sorted(runs)


def _patterns_of(masks, counts):
    """The distinct missingness patterns of rows, ordered by number missing.

    Parameters
    ----------
    masks : bool ndarray of shape (n_rows, n_features)
    counts : ndarray of shape (n_rows,)
        The number missing of each row.

    Returns
    -------
    first_rows : ndarray of shape (n_patterns,)
        A row of each pattern.
    pattern : ndarray of shape (n_rows,)
        The pattern of each row, numbered by (number missing, pattern).
    """
    n_features = masks.shape[1]
    if n_features <= 56:
        # One int64 key per row, the count above the bits: a 1-D unique took a
        # tenth of the time of np.unique(axis=0) on 1e5 x 16.
        bits = masks.astype(np.int64) @ (np.int64(1) << np.arange(n_features))
        keys = (counts.astype(np.int64) << n_features) | bits
    else:
        keys = np.column_stack([counts, np.packbits(masks, axis=1)])
    _, first_rows, pattern = np.unique(
        keys, axis=0 if keys.ndim == 2 else None, return_index=True, return_inverse=True
    )
    return first_rows, pattern.reshape(-1)


def mean_imputed(X_standardised):
    """Standardised rows with each missing entry at its feature's mean, 0.

    The starts (k-means, random responsibilities) need complete rows; fitting
    itself never imputes. X is returned as is when it has no NaN.
    """
    missing = np.isnan(X_standardised)
    if not missing.any():
        return X_standardised
    return np.where(missing, X_standardised.dtype.type(0), X_standardised)
