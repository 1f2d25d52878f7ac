"""The Dask driver: fit, predict and score dask arrays where their chunks live."""

# One CAVI iteration is a map-reduce: each chunk of rows yields its Statistics
# under the current q(theta) (the backend's `chunk_statistics`, run on the worker
# that holds the chunk), a tree reduction adds them up, and q(theta) is updated on
# the client. Only q(theta) travels out and K (D^2 + D + 1) statistics travel
# back, so the fit is the in-memory fit's full-batch CAVI, chunk by chunk.
#
# The standardised X stays persisted on the workers; the client only ever holds
# the moments of the data, the rows of the start (a sample, for large X) and
# the model.
#
# Imported only when `fit` or a predict method meets a dask array, so that
# `import skbayesmix` never imports dask.

import copy
import functools

import dask
import dask.array as da
import numpy as np
from sklearn.utils import check_array
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from skbayesmix._fitting import Driver, LoopResult, LoopState
from skbayesmix._standardisation import (
    data_moments,
    merge_moments,
    no_moments,
    row_pieces,
)
from skbayesmix._starts import (
    largest_sampling_keys,
    merge_sampling_keys,
    start_statistics,
)
from skbayesmix._state import sum_statistics

try:
    from distributed import KilledWorker
except ImportError:  # dask without distributed: local schedulers only
    KilledWorker = ()

__all__ = ["DaskDriver", "predict", "score"]

# Rows gathered to the client for the initialisation. k-means on 65536 x 16 takes
# about a second, and the starting point it finds is then refined by exact CAVI
# on every row.
_INIT_SAMPLE_ROWS = 2**16

# Statistics added per task of the tree reduction.
_REDUCTION_FAN_IN = 8


# --------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------


def _fit_dtype(dtype):
    """float32 stays float32; every other dtype is validated into float64."""
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _rows_chunked(X, estimator_name):
    """X checked for two dimensions, with one chunk across the features.

    Arrays chunked along the features are rechunked: each row's E-step needs all
    of its features, and rows are what the driver distributes.
    """
    if X.ndim == 0:
        raise ValueError(
            "Expected 2D array, got scalar array instead. Reshape your data "
            "either using array.reshape(-1, 1) if your data has a single feature "
            "or array.reshape(1, -1) if it contains a single sample."
        )
    if X.ndim == 1:
        raise ValueError(
            "Expected 2D array, got 1D array instead. Reshape your data either "
            "using array.reshape(-1, 1) if your data has a single feature or "
            "array.reshape(1, -1) if it contains a single sample."
        )
    if X.ndim > 2:
        raise ValueError(
            "Found array with dim %d, while dim <= 2 is required by %s."
            % (X.ndim, estimator_name)
        )
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    if any(np.isnan(size) for size in X.chunks[0]):
        # Unknown chunk sizes (after boolean indexing, say) cost one pass.
        X = X.persist()
        X.compute_chunk_sizes()
    return X


def _validated_block(block, estimator_name):
    """One chunk through scikit-learn's checks: its dtype, NaN and inf messages."""
    return check_array(
        block,
        dtype=[np.float64, np.float32],
        estimator=estimator_name,
        input_name="X",
        ensure_min_samples=0,
        ensure_all_finite="allow-nan",
    )


def _validated_weight_block(block):
    return _check_sample_weight(
        block, block, dtype=np.float64, ensure_non_negative=True
    )


def _sample_weight_chunked(sample_weight, X):
    """sample_weight as a dask array chunked as X's rows, validated per chunk."""
    n_rows = X.shape[0]
    if not isinstance(sample_weight, da.Array):
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.ndim == 0:
            sample_weight = np.full(n_rows, float(sample_weight))
        sample_weight = da.from_array(sample_weight, chunks=-1)
    if sample_weight.ndim != 1:
        raise ValueError("Sample weights must be 1D array or scalar")
    if sample_weight.shape[0] != n_rows:
        raise ValueError(
            "sample_weight.shape == {}, expected {}!".format(
                sample_weight.shape, (n_rows,)
            )
        )
    return sample_weight.rechunk((X.chunks[0],)).map_blocks(
        _validated_weight_block, dtype=np.float64, meta=np.empty(0)
    )


# --------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------


def _block_weights(X, sample_weight):
    return np.ones(X.shape[0]) if sample_weight is None else sample_weight


def _chunk_moments(X, sample_weight, scatter_rank):
    """The chunk's DataMoments, by the same per-piece reduction as in memory."""
    return data_moments(
        row_pieces(X, _block_weights(X, sample_weight)), X.shape[1], scatter_rank
    )


def _blocks(X, sample_weight):
    """Delayed (rows, weights) per chunk; weights are None when unweighted."""
    x_blocks = list(X.to_delayed().ravel())
    if sample_weight is None:
        return list(zip(x_blocks, [None] * len(x_blocks)))
    return list(zip(x_blocks, sample_weight.to_delayed().ravel()))


def _merge_all(*parts):
    return functools.reduce(merge_moments, parts)


def _add(*parts):
    return functools.reduce(np.add, parts)


def _tree_sum(parts, add):
    """A delayed tree reduction of `parts` with `add`, _REDUCTION_FAN_IN at a time."""
    while len(parts) > 1:
        parts = [
            dask.delayed(add)(*parts[start : start + _REDUCTION_FAN_IN])
            for start in range(0, len(parts), _REDUCTION_FAN_IN)
        ]
    return parts[0]


# --------------------------------------------------------------------------------
# Coordinate ascent
# --------------------------------------------------------------------------------


def _chunk_statistics(X, sample_weight, posterior, model):
    """Statistics of one chunk, on the worker that holds it (imports TF there)."""
    if X.shape[0] == 0:
        return None
    from skbayesmix._tfp_backend import chunk_statistics

    covariance_type, weight_type, reg_covar = model
    return chunk_statistics(
        X,
        posterior,
        reg_covar,
        covariance_type=covariance_type,
        weight_concentration_prior_type=weight_type,
        sample_weight=sample_weight,
    )


def _add_statistics(*parts):
    parts = [p for p in parts if p is not None]
    return sum_statistics(parts) if parts else None


def _summed_statistics(blocks, posterior, model):
    """E-step under `posterior` on every chunk, summed by a tree reduction.

    Parameters
    ----------
    blocks : list of (Delayed, Delayed or None)
    posterior : Posterior
    model : ModelPrior

    Returns
    -------
    statistics : Statistics of float64 ndarray
    """
    # One key for q(theta), shared by every chunk's task, so it travels once
    # per worker rather than once per chunk.
    posterior = dask.delayed(posterior, traverse=False)
    settings = (model.covariance_type, model.weight_type, model.reg_covar)
    parts = [
        dask.delayed(_chunk_statistics)(x, w, posterior, settings) for x, w in blocks
    ]
    (statistics,) = dask.compute(_tree_sum(parts, _add_statistics))
    return statistics


def _chunk_sampling_keys(X, sample_weight, size, seed, offset):
    """The chunk's `size` largest sampling keys (see `largest_sampling_keys`)."""
    return largest_sampling_keys(
        _block_weights(X, sample_weight), size, np.random.RandomState(seed), offset
    )


def _translate_worker_deaths(method):
    """A driver step whose KilledWorker becomes a clear RuntimeError."""

    @functools.wraps(method)
    def step(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except KilledWorker as error:
            raise RuntimeError(
                "A Dask worker died while fitting, more often than the scheduler "
                "retries a task (distributed.scheduler.allowed-failures); the "
                "estimator was left as it was before fit. Check the workers' "
                "memory limits and logs."
            ) from error

    return step


class DaskDriver(Driver):
    """Full-batch CAVI of a dask array, one map-reduce E-step per iteration.

    The same iteration, convergence test and result as the in-memory driver's
    compiled loop, so the fit equals the in-memory fit of the same rows. The
    start runs on all rows when there are at most 65536 of positive weight, on
    a sample of that many by weight otherwise.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
    sample_weight : array-like or dask.array.Array of shape (n_samples,) or None
    estimator_name : str
        For scikit-learn's messages.
    """

    def __init__(self, X, sample_weight, estimator_name):
        X = _rows_chunked(X, estimator_name)
        dtype = _fit_dtype(X.dtype)
        X = X.map_blocks(
            _validated_block,
            estimator_name,
            dtype=dtype,
            meta=np.empty((0, 0), dtype),
        )
        if sample_weight is not None:
            sample_weight = _sample_weight_chunked(sample_weight, X)
        if X.shape[0] < 2:
            raise ValueError(
                "Found array with %d sample(s) (shape=%s) while a minimum of 2 is "
                "required by %s." % (X.shape[0], X.shape, estimator_name)
            )
        super().__init__(dtype, X.shape[1])
        # The validation pass: each chunk is checked once, where it is computed,
        # and the checked chunks stay on the workers.
        self.X, self.sample_weight = dask.persist(X, sample_weight)
        self.blocks = None
        self.n_positive = self.total = None

    @_translate_worker_deaths
    def moments(self, scatter_rank):
        parts = [
            dask.delayed(_chunk_moments)(x, w, scatter_rank)
            for x, w in _blocks(self.X, self.sample_weight)
        ]
        (moments,) = dask.compute(_tree_sum(parts, _merge_all))
        if moments.n_positive == 0:
            moments = no_moments(self.n_features, scatter_rank)
        self.n_positive, self.total = moments.n_positive, moments.total_weight
        return moments

    @_translate_worker_deaths
    def prepare(self, model):
        # The backend fits standardised data; only that copy stays on the workers.
        dtype = self.dtype
        self.X = self.X.map_blocks(
            model.standardisation.transform, dtype=dtype, meta=np.empty((0, 0), dtype)
        ).persist()
        self.blocks = _blocks(self.X, self.sample_weight)

    def _start_rows(self, random_state):
        """Sorted start rows, or all rows when there are few enough."""
        if self.n_positive <= _INIT_SAMPLE_ROWS:
            return slice(None)
        seeds = random_state.randint(np.iinfo(np.int32).max, size=len(self.blocks))
        offsets = np.concatenate([[0], np.cumsum(self.X.chunks[0])[:-1]])
        parts = [
            dask.delayed(_chunk_sampling_keys)(x, w, _INIT_SAMPLE_ROWS, seed, offset)
            for (x, w), seed, offset in zip(self.blocks, seeds, offsets)
        ]
        (merged,) = dask.compute(
            _tree_sum(
                parts, functools.partial(merge_sampling_keys, size=_INIT_SAMPLE_ROWS)
            )
        )
        return np.sort(merged[1])

    @_translate_worker_deaths
    def cold_start(self, model, init_params, n_components, random_state):
        from skbayesmix._tfp_backend import update

        rows = self._start_rows(random_state)
        sampled = not isinstance(rows, slice)
        sample, weights = dask.compute(
            self.X[rows],
            None if self.sample_weight is None else self.sample_weight[rows],
        )
        statistics = start_statistics(
            model,
            sample,
            # A sample by weight stands for the rows with unit weights.
            None if sampled else weights,
            random_state,
            sampled=sampled,
            total_weight=self.total,
            init_params=init_params,
            n_components=n_components,
        )
        posterior = update(
            model.prior,
            statistics,
            model.reg_covar,
            covariance_type=model.covariance_type,
            weight_concentration_prior_type=model.weight_type,
        )
        return LoopState(posterior, None, -np.inf, None, 0)

    def warm_start(self, model, posterior, lower_bound, random_state):
        return LoopState(posterior, None, lower_bound, None, 0)

    @_translate_worker_deaths
    def run(self, model, state, max_iter, tol):
        from skbayesmix._tfp_backend import lower_bound, update

        steps = dict(
            covariance_type=model.covariance_type,
            weight_concentration_prior_type=model.weight_type,
        )
        posterior, bound = state.posterior, state.lower_bound
        lower_bounds, converged = [], False
        while len(lower_bounds) < max_iter and not converged:
            statistics = _summed_statistics(self.blocks, posterior, model)
            posterior = update(model.prior, statistics, model.reg_covar, **steps)
            new_bound = lower_bound(
                model.prior, posterior, statistics, model.reg_covar, **steps
            )
            # A non-finite bound means the numbers broke down; stop, not loop on.
            converged = abs(new_bound - bound) < tol or not np.isfinite(new_bound)
            lower_bounds.append(new_bound)
            bound = new_bound
        end = LoopState(posterior, None, bound, None, 0)
        return LoopResult(end, np.asarray(lower_bounds, dtype=np.float64), converged)


def _predicted_block(block, estimator, method):
    """The estimator's NumPy prediction of one chunk: no TensorFlow on workers."""
    return getattr(estimator, method)(block)


def predict(estimator, X, method):
    """A lazy `method` ('predict', 'predict_proba', 'score_samples') of X.

    Each chunk goes through the estimator's own NumPy method, with its
    validation and messages, where the chunk lives.

    Returns
    -------
    result : dask.array.Array of shape (n_samples,) or (n_samples, n_components)
    """
    check_is_fitted(estimator)
    name = type(estimator).__name__
    X = _rows_chunked(X, name)
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {name} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    # A copy, so that a later fit does not change what this graph computes.
    model = copy.deepcopy(estimator)
    if method == "predict":
        dtype = np.dtype(np.intp)
    else:
        dtype = np.result_type(_fit_dtype(X.dtype), estimator.means_.dtype)
    if method == "predict_proba":
        return X.map_blocks(
            _predicted_block,
            model,
            method,
            chunks=(X.chunks[0], (estimator.n_components,)),
            dtype=dtype,
            meta=np.empty((0, 0), dtype),
        )
    return X.map_blocks(
        _predicted_block,
        model,
        method,
        drop_axis=1,
        dtype=dtype,
        meta=np.empty((0,), dtype),
    )


def score(estimator, X, sample_weight=None):
    """The (weighted) mean log predictive density of the rows of X, as a float."""
    log_prob = predict(estimator, X, "score_samples")
    if sample_weight is None:
        return float(log_prob.mean().compute())
    import dask.array as da

    weights = da.asarray(sample_weight).rechunk(log_prob.chunks)
    total, weighted = da.compute(weights.sum(), (weights * log_prob).sum())
    return float(weighted / total)
