"""Online variational inference: minibatches, SVI steps and streaming passes."""

# Stochastic variational inference (Hoffman, Blei, Wang and Paisley, 2013) in a
# conjugate-exponential model: the natural-gradient step on q(theta) is a convex
# blend of its natural parameters with the minibatch's estimate. The update of
# q(theta) is affine in the sufficient statistics, so the step is the same blend of
# statistics. The driver keeps "effective statistics" S, with
#
#   q(theta) = update(prior, S)
#   S <- (1 - rho_t) S + rho_t (N / |B|) S_B,   rho_t = (tau + t)^-kappa,
#
# where S_B are the statistics of minibatch B under the current q(theta), |B| its
# total sample weight and N the total weight that S stands for. Everything here is
# in the standardised units of a Standardisation; the estimator maps back.
#
# Data on disk. A np.memmap is read in contiguous blocks of rows, each copied into
# memory and then dropped from this process's mapping (madvise DONTNEED), so the
# resident set stays near one block however large the file: pages of a read-only
# or shared mapping go back to the page cache, nothing is lost.

import mmap
from typing import NamedTuple

import numpy as np
from sklearn.utils import check_array

from skbayesmix._fitting import Driver, LoopResult, LoopState
from skbayesmix._standardisation import data_moments, row_pieces
from skbayesmix._starts import sample_by_weight, start_statistics
from skbayesmix._state import (
    blend_statistics,
    scale_statistics,
    sum_statistics,
)
from skbayesmix._tfp_backend import chunk_statistics, lower_bound, update

__all__ = [
    "OnlineDriver",
    "OnlineSettings",
    "StreamDriver",
    "minibatch_slices",
    "online_steps",
    "read_rows",
    "step_size",
    "streamed_moments",
]

# Online fits initialise on a sample, by weight, of this many rows: enough for
# k-means to place centres as on all rows, at a fraction of a second.
_INIT_ROWS = 2**15

# On a sample or one chunk, k-means restarts are cheap, and the basin that the
# fit ends in follows the k-means optimum: on 2e6 x 16 anisotropic blobs (K=16
# diag, seeds 0-3) one run gave held-out scores from -25.19 to -25.01, the best
# of 5 from -25.01 to -24.98 (our batch fit from one run on all rows: -25.00).
_KMEANS_N_INIT = 5

# Rows are read from a memmap in blocks of about this many bytes: large enough
# that the reads stream, small enough that a block and its shuffled copy stay a
# small part of the resident memory.
_BLOCK_BYTES = 64 * 2**20

# Scattered rows gathered from a memmap between two releases of its pages.
_GATHER_ROWS = 256


class OnlineSettings(NamedTuple):
    """What the SVI steps need besides the model and the data.

    batch_size : int
    learning_offset, learning_decay : float
        tau and kappa of rho_t = (tau + t)^-kappa.
    """

    batch_size: int
    learning_offset: float
    learning_decay: float


def step_size(n_batch_iter, learning_offset, learning_decay):
    """rho_t = (tau + t)^-kappa, with t = 1 for the first step (LDA's convention)."""
    return float(np.power(learning_offset + n_batch_iter, -learning_decay))


def minibatch_slices(n_rows, batch_size):
    """ceil(n_rows / batch_size) slices of nearly equal size covering the rows.

    Equal sizes, unlike gen_batches' short last batch: every minibatch's scaled
    statistics are then about equally noisy.

    Returns
    -------
    slices : list of slice
    """
    n_batches = max(1, -(-n_rows // batch_size))
    bounds = np.linspace(0, n_rows, n_batches + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _weights(sample_weight, rows, n_rows):
    if sample_weight is None:
        return np.ones(n_rows)
    return sample_weight[rows]


def _release_mapped_pages(X):
    """Drop the pages of a memmap from this process's resident set.

    Only for shared mappings ('r', 'r+', 'w+'), whose pages stay in the page
    cache and in the file; a copy-on-write mapping ('c') would lose its edits.
    """
    mapping = getattr(X, "_mmap", None)
    if mapping is None or getattr(X, "mode", "c") == "c":
        return
    if hasattr(mapping, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mapping.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def _block_rows(X, batch_size):
    """Rows per block read from X: about `_BLOCK_BYTES`, a multiple of batch_size."""
    row_bytes = max(1, X.shape[1] * X.dtype.itemsize)
    n_batches = max(1, _BLOCK_BYTES // (row_bytes * batch_size))
    return n_batches * batch_size


def read_rows(X, rows, dtype, validate=False):
    """Rows of X (a slice or sorted indices) in memory as `dtype`, validated if asked.

    The pages of a memmap are released once copied. Scattered rows are gathered
    a few at a time: each read of a mapped page also maps its neighbours (the
    kernel's fault-around and read-ahead, 64 kB or more), so 32768 rows scattered
    over a 6.4 GB file map gigabytes unless released as they go.
    """
    if not isinstance(X, np.memmap):
        block = np.array(X[rows], dtype=dtype)
    elif isinstance(rows, slice):
        block = np.array(X[rows], dtype=dtype)
        _release_mapped_pages(X)
    else:
        block = np.empty((len(rows), X.shape[1]), dtype=dtype)
        for group in minibatch_slices(len(rows), _GATHER_ROWS):
            block[group] = X[rows[group]]
            _release_mapped_pages(X)
    if validate:
        block = check_array(
            block,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
            input_name="X",
        )
    return block


def streamed_moments(X, sample_weight, scatter_rank, dtype, validate):
    """Weighted mean, max |x| and scatter of X, in one pass over blocks of rows.

    Each block is read (`read_rows`) and reduced in pieces (see
    `skbayesmix._standardisation.data_moments`). With `validate`, each block is
    checked as scikit-learn checks X (finite, numeric), so that no copy of the
    whole of X is ever made.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        An ndarray or np.memmap.
    sample_weight : ndarray of shape (n_samples,) or None
    scatter_rank : {2, 1, 0}
        Full scatter matrix (2) or its diagonal (1, 0).
    dtype : numpy dtype
    validate : bool

    Returns
    -------
    moments : DataMoments
    """

    def pieces():
        for rows in minibatch_slices(X.shape[0], _block_rows(X, 1)):
            block = read_rows(X, rows, dtype, validate)
            yield from row_pieces(block, _weights(sample_weight, rows, block.shape[0]))

    return data_moments(pieces(), X.shape[1], scatter_rank)


def online_steps(state, minibatches, model, total_weight, settings):
    """Take one SVI step per minibatch; also add up their unscaled statistics.

    Parameters
    ----------
    state : LoopState
        With the effective statistics, their posterior and the step count.
    minibatches : iterable of (Xs, sample_weight)
        Standardised rows, and their weights (None for ones).
    model : ModelPrior
    total_weight : float
        N, the weight of data that the effective statistics stand for.
    settings : OnlineSettings

    Returns
    -------
    state : LoopState
    pass_statistics : Statistics or None
        The sum of the minibatches' statistics, each under the posterior that
        saw it; None when no minibatch had positive weight.
    last_scaled : Statistics or None
        The last minibatch's statistics scaled by N / |B|.
    """
    statistics, posterior, n_batch_iter = (
        state.statistics,
        state.posterior,
        state.n_batch_iter,
    )
    seen, scaled = [], None
    for Xs, sample_weight in minibatches:
        weights = _weights(sample_weight, slice(None), Xs.shape[0])
        batch_weight = float(np.sum(weights))
        if batch_weight <= 0.0:
            continue
        batch = chunk_statistics(
            Xs,
            posterior,
            model.reg_covar,
            covariance_type=model.covariance_type,
            weight_concentration_prior_type=model.weight_type,
            sample_weight=weights,
        )
        n_batch_iter += 1
        rho = step_size(n_batch_iter, settings.learning_offset, settings.learning_decay)
        scaled = scale_statistics(batch, total_weight / batch_weight)
        statistics = blend_statistics(statistics, scaled, rho)
        posterior = _update(model, statistics)
        # Only the running sum is kept, so a pass holds one Statistics.
        seen = [sum_statistics(seen + [batch])]
    pass_statistics = seen[0] if seen else None
    state = state._replace(
        posterior=posterior, statistics=statistics, n_batch_iter=n_batch_iter
    )
    return state, pass_statistics, scaled


def _update(model, statistics):
    return update(
        model.prior,
        statistics,
        model.reg_covar,
        covariance_type=model.covariance_type,
        weight_concentration_prior_type=model.weight_type,
    )


def _lower_bound(model, posterior, statistics):
    return lower_bound(
        model.prior,
        posterior,
        statistics,
        model.reg_covar,
        covariance_type=model.covariance_type,
        weight_concentration_prior_type=model.weight_type,
    )


def _svi_state(model, statistics, n_batch_iter, bound):
    """The LoopState of effective statistics: q(theta) = update(prior, S)."""
    return LoopState(_update(model, statistics), None, bound, statistics, n_batch_iter)


def _shuffled_minibatches(X, sample_weight, standardisation, settings, rng, dtype):
    """Standardised minibatches of X in a random order, over one pass.

    An in-memory array is permuted row by row. A memmap is read in contiguous
    blocks, visited in random order and permuted within, so that disk reads stay
    sequential; this is a full shuffle unless the file is sorted on a scale
    larger than a block.

    Yields
    ------
    Xs : ndarray of shape (n_batch, n_features)
    sample_weight : ndarray of shape (n_batch,) or None
    """
    n_samples = X.shape[0]
    on_disk = isinstance(X, np.memmap)
    rows_per_block = _block_rows(X, settings.batch_size) if on_disk else n_samples
    blocks = minibatch_slices(n_samples, rows_per_block)
    for block_index in rng.permutation(len(blocks)):
        rows = blocks[block_index]
        block = read_rows(X, rows, dtype, False) if on_disk else X
        weights = None if sample_weight is None else sample_weight[rows]
        order = rng.permutation(block.shape[0])
        for batch in minibatch_slices(block.shape[0], settings.batch_size):
            index = order[batch]
            yield (
                standardisation.transform(block[index]),
                None if weights is None else weights[index],
            )


class _SVIDriver(Driver):
    """The starts of the SVI drivers: statistics of start rows, scaled to the total.

    A subclass supplies `_start_rows(model, random_state)`, which returns the rows
    (standardised), their weights, whether they are a sample, and the total
    weight they stand for.
    """

    def _start(self, model, random_state, lower_bound, **start):
        X, weights, sampled, total = self._start_rows(model, random_state)
        statistics = start_statistics(
            model,
            X,
            weights,
            random_state,
            sampled=sampled,
            total_weight=total,
            kmeans_n_init=_KMEANS_N_INIT,
            **start,
        )
        return _svi_state(model, statistics, 0, lower_bound)

    def cold_start(self, model, init_params, n_components, random_state):
        return self._start(
            model,
            random_state,
            -np.inf,
            init_params=init_params,
            n_components=n_components,
        )

    def warm_start(self, model, posterior, lower_bound, random_state):
        return self._start(model, random_state, lower_bound, posterior=posterior)


class OnlineDriver(_SVIDriver):
    """learning_method='online': passes of SVI steps over shuffled minibatches.

    X is never copied or standardised as a whole: the moments come from one
    streaming pass over blocks of rows (validated block by block for a memmap),
    the start from a sample by weight of at most 32768 rows (all rows when
    there are no more; with 'kmeans', the best of 5 k-means runs), and each
    minibatch is standardised as it is used.

    After each pass the bound is the ELBO at (q(z), q(theta)) where q(theta) is
    the posterior at the end of the pass and q(z) gives each row the
    responsibilities of the step that saw it. Any such pair bounds log p(X), so
    this is a true lower bound, computed from the summed statistics of the pass
    at no extra cost. The passes stop when it changes by less than
    ``tol * total_weight``: `tol` nats per unit of sample weight.

    Parameters
    ----------
    X : ndarray or np.memmap of shape (n_samples, n_features)
        Validated, or (a memmap) to be validated by the moments pass.
    sample_weight : ndarray of shape (n_samples,) or None
    dtype : numpy dtype
    settings : OnlineSettings
    validate : bool
        Check each block as scikit-learn checks X (a memmap).
    """

    def __init__(self, X, sample_weight, dtype, settings, validate):
        super().__init__(dtype, X.shape[1])
        self.X, self.sample_weight = X, sample_weight
        self.settings, self.validate = settings, validate
        self.total = self.n_positive = None
        self.shuffle = None

    def moments(self, scatter_rank):
        moments = streamed_moments(
            self.X, self.sample_weight, scatter_rank, self.dtype, self.validate
        )
        self.total, self.n_positive = moments.total_weight, moments.n_positive
        return moments

    def _start_rows(self, model, random_state):
        """The start rows, their weights, whether they are a sample, the total.

        The passes shuffle with a generator of their own, seeded here, so that
        every start consumes `random_state` alike however many rows there are.
        """
        rows = sample_by_weight(
            self.sample_weight, self.X.shape[0], _INIT_ROWS, random_state
        )
        self.shuffle = np.random.RandomState(
            random_state.randint(np.iinfo(np.int32).max)
        )
        sampled = len(rows) < self.n_positive
        Xs = model.standardisation.transform(read_rows(self.X, rows, self.dtype))
        # A sample by weight stands for the rows with unit weights.
        if sampled or self.sample_weight is None:
            return Xs, None, sampled, self.total
        return Xs, self.sample_weight[rows], sampled, self.total

    def run(self, model, state, max_iter, tol):
        lower_bounds, converged = [], False
        previous = state.lower_bound
        for _ in range(max_iter):
            minibatches = _shuffled_minibatches(
                self.X,
                self.sample_weight,
                model.standardisation,
                self.settings,
                self.shuffle,
                self.dtype,
            )
            state, pass_statistics, _ = online_steps(
                state, minibatches, model, self.total, self.settings
            )
            bound = _lower_bound(model, state.posterior, pass_statistics)
            lower_bounds.append(bound)
            state = state._replace(lower_bound=bound)
            if not np.isfinite(bound):
                break
            if abs(bound - previous) < tol * self.total:
                converged = True
                break
            previous = bound
        return LoopResult(state, np.asarray(lower_bounds, dtype=np.float64), converged)


class StreamDriver(_SVIDriver):
    """`partial_fit`: one SVI step per minibatch of one chunk of a stream.

    The chunk is split into ceil(n_samples / batch_size) minibatches of nearly
    equal size, taken in order. The first chunk sets the moments, hence the
    standardisation and the data-dependent priors; its start's statistics are
    scaled to stand for `total_samples`. The lower bound after a chunk is that
    of its last minibatch's scaled statistics.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated.
    sample_weight : ndarray of shape (n_samples,) or None
    settings : OnlineSettings
    total_samples : float
    """

    is_stream = True

    def __init__(self, X, sample_weight, settings, total_samples):
        super().__init__(X.dtype, X.shape[1])
        self.X, self.sample_weight = X, sample_weight
        self.settings, self.total_samples = settings, float(total_samples)

    def max_iter(self, params):
        return 1

    def total_weight(self, moments):
        return self.total_samples

    def moments(self, scatter_rank):
        return data_moments(
            row_pieces(self.X, self.sample_weight), self.n_features, scatter_rank
        )

    def _start_rows(self, model, random_state):
        # The chunk is a sample of the stream that total_samples stands for.
        Xs = model.standardisation.transform(self.X)
        return Xs, self.sample_weight, True, self.total_samples

    def resume(self, model, statistics, n_batch_iter, lower_bound):
        return _svi_state(model, statistics, n_batch_iter, lower_bound)

    def run(self, model, state, max_iter, tol):
        minibatches = (
            (
                model.standardisation.transform(self.X[rows]),
                None if self.sample_weight is None else self.sample_weight[rows],
            )
            for rows in minibatch_slices(self.X.shape[0], self.settings.batch_size)
        )
        state, _, last_scaled = online_steps(
            state, minibatches, model, self.total_samples, self.settings
        )
        lower_bounds = []
        if last_scaled is not None:
            lower_bounds = [_lower_bound(model, state.posterior, last_scaled)]
            state = state._replace(lower_bound=lower_bounds[0])
        return LoopResult(state, np.asarray(lower_bounds, dtype=np.float64), False)
