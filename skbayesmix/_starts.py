"""Starting responsibilities that depend neither on row order nor on weight splits."""

# scikit-learn's initialisations depend on the order of the rows: k-means++ and
# 'random_from_data' pick rows by index, 'random' draws one row after another. So
# a shuffled X, or X with integer weights, starts elsewhere than the same data
# repeated, and the fit can end in another optimum. Here every initialisation
# runs on the distinct rows of X in a canonical order (by their values, first
# feature first), each weighted by the total weight of its copies,
# with rows of weight zero dropped. A row's responsibilities are then a function
# of its value alone:
# integer weights start as repeated rows, zero weights as dropped rows, and any
# permutation of X as X. Weighted k-means and k-means++ sample by cumulative
# weight, so equal mass maps to equal points.
#
# One meaning of a start: its Statistics are those of its responsibilities over
# all rows. 'kmeans' and 'random' give every row responsibilities, so their
# statistics on a sample of rows are scaled up to the total weight; k-means++
# and 'random_from_data' mark one point per component and leave every other row
# at zero, so theirs are not.

from typing import NamedTuple

import numpy as np

from skbayesmix._missing import mean_imputed
from skbayesmix._state import scale_statistics

# Rows per piece of the sampling keys: the keys of a piece take 8 MB.
_SAMPLE_PIECE_ROWS = 2**20

__all__ = [
    "DistinctRows",
    "covers_rows",
    "start_statistics",
    "distinct_rows",
    "initial_resp",
    "largest_sampling_keys",
    "merge_sampling_keys",
    "sample_by_weight",
]


class DistinctRows(NamedTuple):
    """The distinct rows of positive weight of X, in a canonical order.

    values : ndarray of shape (n_distinct, n_features), float64
    weights : ndarray of shape (n_distinct,)
        The total weight of each distinct row's copies.
    inverse : ndarray of shape (n_rows,)
        The distinct row of each row of X; -1 for rows of weight zero.
    """

    values: np.ndarray
    weights: np.ndarray
    inverse: np.ndarray


def covers_rows(init_params):
    """Whether `init_params` gives every row responsibilities (see module)."""
    return init_params in ("kmeans", "random")


def _row_words(X):
    """The bits of each row as 64-bit words: equal rows, and only they, agree."""
    X = np.ascontiguousarray(X)
    words = X.view(np.uint32 if X.dtype.itemsize == 4 else np.uint64)
    return words.astype(np.uint64, copy=False)


def _canonical_order(words, values):
    """Row order by value: by first feature, ties by the others, then by bits.

    Ordering by value makes the float32 and float64 copies of the same data
    start alike (up to rows whose features round to one float32), and so do
    copies that differ in the last bits, such as the standardised rows of an
    in-memory and a Dask fit, whose moments are reduced in other orders. Rows
    with missing entries, imputed at the mean for the starts, tie on whole
    columns, so ties must not be broken by bits. It costs one argsort; only rows
    that tie on their first feature are sorted further. Equal rows end up next
    to each other.

    Returns
    -------
    order : ndarray of shape (n_rows,)
    same_as_previous : ndarray of shape (n_rows - 1,) of bool
        Whether each row in that order equals the one before it.
    """
    order = np.argsort(values[:, 0], kind="stable")
    first = words[order, 0]
    tied = np.flatnonzero(first[1:] == first[:-1])
    same_as_previous = np.zeros(max(len(order) - 1, 0), dtype=bool)
    if tied.size == 0:
        return order, same_as_previous
    in_tie = np.zeros(len(order), dtype=bool)
    in_tie[tied] = in_tie[tied + 1] = True
    members = np.flatnonzero(in_tie)
    run = np.concatenate([[0], np.cumsum(first[1:] != first[:-1])])[members]
    rows = order[members]
    tied_values = values[rows]
    rows = rows[np.lexsort(tuple(tied_values[:, 1:].T[::-1]) + (run,))]
    equal_values = np.all(values[rows[1:]] == values[rows[:-1]], axis=1)
    if np.any(equal_values & np.any(words[rows[1:]] != words[rows[:-1]], axis=1)):
        # Equal values in other bits (0.0 and -0.0): order those by bits too.
        within = np.lexsort(
            tuple(words[rows].T[::-1])
            + tuple(values[rows][:, 1:].T[::-1])
            + (np.sort(run),)
        )
        rows = rows[within]
    order[members] = rows
    same_as_previous[tied] = np.all(
        words[order[tied]] == words[order[tied + 1]], axis=1
    )
    return order, same_as_previous


def distinct_rows(X, sample_weight=None):
    """The distinct rows of positive weight of X, in an order that X's does not set.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
    sample_weight : ndarray of shape (n_rows,), default=None

    Returns
    -------
    distinct : DistinctRows
    """
    n_rows = X.shape[0]
    if sample_weight is None:
        positive = np.arange(n_rows)
        weights = np.ones(n_rows)
    else:
        positive = np.flatnonzero(sample_weight > 0)
        weights = sample_weight[positive]
    values = X[positive]
    words = _row_words(values)
    order, same_as_previous = _canonical_order(words, values.astype(np.float64))
    first = np.concatenate([[True], ~same_as_previous])
    starts = np.flatnonzero(first)
    inverse = np.full(n_rows, -1, dtype=np.intp)
    inverse[positive[order]] = np.cumsum(first) - 1
    return DistinctRows(
        np.asarray(values[order[starts]], dtype=np.float64),
        np.add.reduceat(weights[order], starts) if len(starts) else weights[:0],
        inverse,
    )


def initial_resp(
    init_params, n_components, X, sample_weight, random_state, kmeans_n_init=1
):
    """Initial responsibilities of the rows of X, by scikit-learn's four methods.

    Each method runs on the distinct rows of X (see the module), so the result
    does not depend on the order of the rows, and integer weights give the same
    responsibilities as repeated rows. With fewer distinct rows than components,
    the surplus components start with no rows.

    Parameters
    ----------
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}
    n_components : int
    X : ndarray of shape (n_rows, n_features)
        Standardised. The canonical order is by value first, so two drivers
        whose standardisations differ in the last bit start alike.
    sample_weight : ndarray of shape (n_rows,) or None
    random_state : RandomState
    kmeans_n_init : int, default=1
        k-means runs, keeping the one of least inertia ('kmeans' only).

    Returns
    -------
    resp : ndarray of shape (n_rows, n_components)
        In X's dtype; zero on rows of weight zero.
    """
    # sklearn.cluster costs ~0.3 s to import; only fits need it.
    from sklearn.cluster import KMeans, kmeans_plusplus

    distinct = distinct_rows(X, sample_weight)
    values = distinct.values
    n_distinct = values.shape[0]
    n_found = min(n_components, n_distinct)
    resp_distinct = np.zeros((n_distinct, n_components))
    if init_params == "kmeans":
        # k-means in float64 even for float32 X: float32 k-means lands in worse
        # optima on large data (-0.03 nats on 1e6 x 16). `values` is already a
        # private float64 copy, for k-means to centre in place.
        labels = (
            KMeans(
                n_clusters=n_found,
                n_init=kmeans_n_init,
                random_state=random_state,
                copy_x=False,
            )
            .fit(values, sample_weight=distinct.weights)
            .labels_
        )
        resp_distinct[np.arange(n_distinct), labels] = 1.0
    elif init_params == "random":
        resp_distinct = random_state.uniform(size=(n_distinct, n_components))
        resp_distinct /= resp_distinct.sum(axis=1)[:, np.newaxis]
    else:
        if init_params == "random_from_data":
            indices = random_state.choice(
                n_distinct,
                size=n_found,
                replace=False,
                p=distinct.weights / distinct.weights.sum(),
            )
        else:
            _, indices = kmeans_plusplus(
                values,
                n_found,
                random_state=random_state,
                sample_weight=distinct.weights,
            )
        resp_distinct[indices, np.arange(n_found)] = 1.0
    resp = np.zeros((X.shape[0], n_components), dtype=X.dtype)
    rows = distinct.inverse >= 0
    resp[rows] = resp_distinct[distinct.inverse[rows]]
    return resp


def largest_sampling_keys(weights, size, random_state, offset=0):
    """The `size` rows of largest key log(u) / w, with their keys.

    Efraimidis and Spirakis (2006): the rows of the `size` largest keys are a
    sample without replacement, each draw with probability proportional to
    weight. Keys of disjoint sets of rows can be merged by keeping the largest
    (`merge_sampling_keys`), so a sample is drawn piece by piece, or chunk by
    chunk on a cluster.

    Parameters
    ----------
    weights : ndarray of shape (n_rows,)
    size : int
    random_state : RandomState
    offset : int, default=0
        Added to the row indices (the piece's first row).

    Returns
    -------
    keys : ndarray of shape (min(size, n_positive),)
    rows : ndarray of shape (min(size, n_positive),)
    """
    positive = np.flatnonzero(weights > 0)
    uniform = random_state.uniform(size=positive.size)
    with np.errstate(divide="ignore"):
        keys = np.log(uniform) / weights[positive]
    if positive.size > size:
        largest = np.argpartition(keys, positive.size - size)[positive.size - size :]
        keys, positive = keys[largest], positive[largest]
    return keys, positive + offset


def merge_sampling_keys(*parts, size):
    """The `size` largest of several (keys, rows) from `largest_sampling_keys`."""
    keys = np.concatenate([part[0] for part in parts])
    rows = np.concatenate([part[1] for part in parts])
    if keys.size > size:
        largest = np.argpartition(keys, keys.size - size)[keys.size - size :]
        keys, rows = keys[largest], rows[largest]
    return keys, rows


def sample_by_weight(sample_weight, n_rows, size, random_state):
    """Sorted rows drawn without replacement by weight; all rows of positive
    weight when there are at most `size`, without consuming `random_state`.

    The keys are drawn over pieces of rows, so memory stays O(size + piece)
    however many rows there are (a memmap of 1e8 rows, say).

    Parameters
    ----------
    sample_weight : ndarray of shape (n_rows,) or None
    n_rows : int
    size : int
    random_state : RandomState

    Returns
    -------
    rows : ndarray of shape (min(size, n_positive),)
    """
    if sample_weight is None:
        if n_rows <= size:
            return np.arange(n_rows)
    elif np.count_nonzero(sample_weight) <= size:
        return np.flatnonzero(sample_weight > 0)
    # The keys come from a generator seeded by `random_state`, not from its own
    # stream: data drawn with the same seed (rng.uniform(size=n) picking each
    # row's component, say) would otherwise share the keys' uniforms, and the
    # sample would take the rows of a few components.
    keys_state = np.random.RandomState(random_state.randint(np.iinfo(np.int32).max))
    sample = (np.empty(0), np.empty(0, dtype=np.intp))
    for start in range(0, n_rows, _SAMPLE_PIECE_ROWS):
        stop = min(start + _SAMPLE_PIECE_ROWS, n_rows)
        weights = (
            np.ones(stop - start)
            if sample_weight is None
            else sample_weight[start:stop]
        )
        piece = largest_sampling_keys(weights, size, keys_state, offset=start)
        sample = merge_sampling_keys(sample, piece, size=size)
    return np.sort(sample[1])


def start_statistics(
    model,
    X,
    sample_weight,
    random_state,
    *,
    sampled,
    total_weight,
    init_params=None,
    n_components=None,
    posterior=None,
    kmeans_n_init=1,
):
    """The Statistics of a start on rows X, standing for all rows (see module).

    From `init_params` (a cold start) or, when `posterior` is given, from the
    E-step under it (a warm start, which covers every row).

    Parameters
    ----------
    model : ModelPrior
    X : ndarray of shape (n_rows, n_features)
        Standardised.
    sample_weight : ndarray of shape (n_rows,) or None
    random_state : RandomState
    sampled : bool
        Whether X is a sample of the rows that the statistics stand for.
    total_weight : float
        The weight of all those rows.
    init_params, n_components, kmeans_n_init
        As for `initial_resp`; unused with `posterior`.
    posterior : Posterior, default=None

    Returns
    -------
    statistics : Statistics
    """
    # Imported here so that `import skbayesmix` never loads TensorFlow.
    from skbayesmix._tfp_backend import chunk_statistics, initial_statistics

    weights = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    keywords = dict(
        covariance_type=model.covariance_type,
        weight_concentration_prior_type=model.weight_type,
        sample_weight=weights,
    )
    if posterior is None:
        # A cold start on rows with missing entries starts from their mean
        # imputation; the fit then integrates them out.
        X = mean_imputed(X)
        resp = initial_resp(
            init_params, n_components, X, sample_weight, random_state, kmeans_n_init
        )
        statistics = initial_statistics(X, resp, **keywords)
    else:
        statistics = chunk_statistics(X, posterior, model.reg_covar, **keywords)
    if sampled and (posterior is not None or covers_rows(init_params)):
        statistics = scale_statistics(statistics, total_weight / np.sum(weights))
    return statistics
