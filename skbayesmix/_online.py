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
from typing import Any, NamedTuple

import numpy as np
from sklearn.utils import check_array

from skbayesmix._standardisation import data_moments, row_pieces
from skbayesmix._state import (
    blend_statistics,
    scale_statistics,
    sum_statistics,
)
from skbayesmix._tfp_backend import (
    chunk_statistics,
    initial_statistics,
    lower_bound,
    update,
)

__all__ = [
    "OnlineSettings",
    "OnlineState",
    "fit_passes",
    "minibatch_slices",
    "online_steps",
    "read_rows",
    "scaled_initial_statistics",
    "step_size",
    "streamed_moments",
]

# Rows are read from a memmap in blocks of about this many bytes: large enough
# that the reads stream, small enough that a block and its shuffled copy stay a
# small part of the resident memory.
_BLOCK_BYTES = 64 * 2**20

# Scattered rows gathered from a memmap between two releases of its pages.
_GATHER_ROWS = 256


class OnlineSettings(NamedTuple):
    """What the SVI steps need besides the data, all in standardised units.

    covariance_type, weight_type : str
    reg_covar : float
        In standardised units.
    batch_size : int
    learning_offset, learning_decay : float
        tau and kappa of rho_t = (tau + t)^-kappa.
    """

    covariance_type: str
    weight_type: str
    reg_covar: float
    batch_size: int
    learning_offset: float
    learning_decay: float


class OnlineState(NamedTuple):
    """The state that SVI carries from one step to the next.

    statistics : Statistics
        The effective statistics S; posterior = update(prior, S).
    posterior : Posterior
    n_batch_iter : int
        The number of SVI steps taken so far, t.
    """

    statistics: Any
    posterior: Any
    n_batch_iter: int


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
        block = check_array(block, dtype=[np.float64, np.float32], input_name="X")
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


def scaled_initial_statistics(
    Xs, sample_weight, total_weight, settings, resp=None, posterior=None
):
    """Statistics of some rows, scaled to stand for `total_weight` of data.

    From responsibilities `resp` (an initialisation) or, when `posterior` is given,
    from the E-step under it (a warm start).

    Returns
    -------
    statistics : Statistics
    """
    weights = _weights(sample_weight, slice(None), Xs.shape[0])
    keywords = dict(
        covariance_type=settings.covariance_type,
        weight_concentration_prior_type=settings.weight_type,
        sample_weight=weights,
    )
    if posterior is None:
        statistics = initial_statistics(Xs, resp, **keywords)
    else:
        statistics = chunk_statistics(Xs, posterior, settings.reg_covar, **keywords)
    return scale_statistics(statistics, total_weight / np.sum(weights))


def online_steps(state, minibatches, prior, total_weight, settings):
    """Take one SVI step per minibatch; also add up their unscaled statistics.

    Parameters
    ----------
    state : OnlineState
    minibatches : iterable of (Xs, sample_weight)
        Standardised rows, and their weights (None for ones).
    prior : Prior
    total_weight : float
        N, the weight of data that the effective statistics stand for.
    settings : OnlineSettings

    Returns
    -------
    state : OnlineState
    pass_statistics : Statistics or None
        The sum of the minibatches' statistics, each under the posterior that
        saw it; None when no minibatch had positive weight.
    last_scaled : Statistics or None
        The last minibatch's statistics scaled by N / |B|.
    """
    keywords = dict(
        covariance_type=settings.covariance_type,
        weight_concentration_prior_type=settings.weight_type,
    )
    statistics, posterior, n_batch_iter = state
    seen, scaled = [], None
    for Xs, sample_weight in minibatches:
        weights = _weights(sample_weight, slice(None), Xs.shape[0])
        batch_weight = float(np.sum(weights))
        if batch_weight <= 0.0:
            continue
        batch = chunk_statistics(
            Xs, posterior, settings.reg_covar, sample_weight=weights, **keywords
        )
        n_batch_iter += 1
        rho = step_size(n_batch_iter, settings.learning_offset, settings.learning_decay)
        scaled = scale_statistics(batch, total_weight / batch_weight)
        statistics = blend_statistics(statistics, scaled, rho)
        posterior = update(prior, statistics, settings.reg_covar, **keywords)
        # Only the running sum is kept, so a pass holds one Statistics.
        seen = [sum_statistics(seen + [batch])]
    pass_statistics = seen[0] if seen else None
    return OnlineState(statistics, posterior, n_batch_iter), pass_statistics, scaled


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


def fit_passes(
    X,
    sample_weight,
    standardisation,
    prior,
    state,
    settings,
    *,
    total_weight,
    max_iter,
    tol,
    rng,
    dtype,
    on_pass=None,
):
    """Passes of SVI steps over shuffled minibatches of X, until the bound settles.

    After each pass the bound is the ELBO at (q(z), q(theta)) where q(theta) is
    the posterior at the end of the pass and q(z) gives each row the
    responsibilities of the step that saw it. Any such pair bounds log p(X), so
    this is a true lower bound, computed from the summed statistics of the pass
    at no extra cost. The passes stop when it changes by less than
    ``tol * total_weight``: `tol` nats per unit of sample weight.

    Parameters
    ----------
    X : ndarray or np.memmap of shape (n_samples, n_features)
        Unstandardised, validated (or to be read without validation: the moments
        pass validated it).
    sample_weight : ndarray of shape (n_samples,) or None
    standardisation : Standardisation
    prior : Prior
    state : OnlineState
    settings : OnlineSettings
    total_weight : float
    max_iter : int
        Passes at most.
    tol : float
    rng : RandomState
    dtype : numpy dtype
    on_pass : callable or None, default=None
        Called as on_pass(n_pass, lower_bound) after each pass (verbose output).

    Returns
    -------
    result : dict
        'state' (OnlineState), 'lower_bounds' (list of float, standardised
        units), 'n_iter' (passes) and 'converged' (bool).
    """
    keywords = dict(
        covariance_type=settings.covariance_type,
        weight_concentration_prior_type=settings.weight_type,
    )
    lower_bounds, converged = [], False
    previous = -np.inf
    for n_pass in range(1, max_iter + 1):
        minibatches = _shuffled_minibatches(
            X, sample_weight, standardisation, settings, rng, dtype
        )
        state, pass_statistics, _ = online_steps(
            state, minibatches, prior, total_weight, settings
        )
        bound = lower_bound(
            prior, state.posterior, pass_statistics, settings.reg_covar, **keywords
        )
        lower_bounds.append(bound)
        if on_pass is not None:
            on_pass(n_pass, bound)
        if not np.isfinite(bound):
            break
        if abs(bound - previous) < tol * total_weight:
            converged = True
            break
        previous = bound
    return {
        "state": state,
        "lower_bounds": lower_bounds,
        "n_iter": len(lower_bounds),
        "converged": converged,
    }
