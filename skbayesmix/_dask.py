"""The Dask driver: fit, predict and score dask arrays where their chunks live."""

# One CAVI iteration is a map-reduce: each chunk of rows yields its Statistics
# under the current q(theta) (the backend's `chunk_statistics`, run on the worker
# that holds the chunk), a tree reduction adds them up, and q(theta) is updated on
# the client. Only q(theta) travels out and K (D^2 + D + 1) statistics travel
# back, so the fit is the in-memory fit's full-batch CAVI, chunk by chunk.
#
# The standardised X stays persisted on the workers; the client only ever holds
# the moments of the data, a sample of rows for the initialisation and the model.
#
# Imported only when `fit` or a predict method meets a dask array, so that
# `import skbayesmix` never imports dask.

import copy
import functools
from typing import NamedTuple

import dask
import dask.array as da
import numpy as np
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from skbayesmix._standardisation import (
    DataMoments,
    Standardisation,
    weighted_scatter,
)
from skbayesmix._state import scale_statistics, sum_statistics

try:
    from distributed import KilledWorker
except ImportError:  # dask without distributed: local schedulers only
    KilledWorker = ()

__all__ = ["fit", "predict", "score"]

# Rows gathered to the client for the initialisation. k-means on 65536 x 16 takes
# about a second, and the starting point it finds is then refined by exact CAVI
# on every row.
_INIT_SAMPLE_ROWS = 2**16

# Statistics added per task of the tree reduction.
_REDUCTION_FAN_IN = 8

# Initialisations whose responsibilities cover every row: their statistics of a
# sample stand for all rows once scaled by (total weight / sample weight). The
# others mark n_components rows, as they do in memory, and are not scaled.
_INIT_PARAMS_COVERING_ROWS = {"kmeans", "random"}


class _FirstMoments(NamedTuple):
    """Reductions of the validation pass; they add up over chunks.

    n_rows : int
    n_positive : int
        Rows of positive weight.
    total_weight : float
    max_abs : float
        The largest |x| over rows of positive weight.
    scaled_sum : ndarray of shape (n_features,)
        sum_n w_n x_n / max_abs of the chunk (kept scaled so it cannot overflow).
    """

    n_rows: int
    n_positive: int
    total_weight: float
    max_abs: float
    scaled_sum: np.ndarray


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
# Reductions that set the data-dependent defaults
# --------------------------------------------------------------------------------


def _block_weights(X, sample_weight):
    return np.ones(X.shape[0]) if sample_weight is None else sample_weight


def _first_moments(X, sample_weight):
    """The chunk's _FirstMoments."""
    weights = _block_weights(X, sample_weight)
    positive = weights > 0
    max_abs = float(np.max(np.abs(X[positive]))) if X[positive].size else 0.0
    scale = max_abs if max_abs > 0 else 1.0
    return _FirstMoments(
        X.shape[0],
        int(np.sum(positive)),
        float(np.sum(weights)),
        max_abs,
        weights @ (np.asarray(X, dtype=np.float64) / scale),
    )


def _scaled_scatter(X, sample_weight, max_abs, shift_scaled, full):
    """The chunk's weighted scatter of X / max_abs about shift / max_abs."""
    centred = np.asarray(X, dtype=np.float64) / max_abs - shift_scaled
    return weighted_scatter(centred, _block_weights(X, sample_weight), full)


def _blocks(X, sample_weight):
    """Delayed (rows, weights) per chunk; weights are None when unweighted."""
    x_blocks = list(X.to_delayed().ravel())
    if sample_weight is None:
        return list(zip(x_blocks, [None] * len(x_blocks)))
    return list(zip(x_blocks, sample_weight.to_delayed().ravel()))


def _standardisation_and_covariance(X, sample_weight, structure, reg_covar):
    """Two exact passes: the validation pass's moments, then the scatter.

    The same quantities as `Standardisation.from_data_moments` and
    `Standardisation.covariance_to`, reduced chunk by chunk. The scatter is taken
    about the exact mean of the first pass, scaled by max|x| so that it cannot
    overflow.

    Returns
    -------
    moments : _FirstMoments
        Summed over chunks, with the global max_abs and sum_n w_n x_n / max_abs.
    standardisation : Standardisation
    scaled_covariance : ndarray of shape `structure.prior_scale_shape`
        The weighted empirical covariance of the standardised data.
    """
    blocks = _blocks(X, sample_weight)
    (per_chunk,) = dask.compute([dask.delayed(_first_moments)(*b) for b in blocks])
    max_abs = max(m.max_abs for m in per_chunk)
    max_abs = max_abs if max_abs > 0 else 1.0
    moments = _FirstMoments(
        sum(m.n_rows for m in per_chunk),
        sum(m.n_positive for m in per_chunk),
        sum(m.total_weight for m in per_chunk),
        max_abs,
        sum(
            (m.max_abs if m.max_abs > 0 else 1.0) / max_abs * m.scaled_sum
            for m in per_chunk
        ),
    )
    if moments.n_positive == 0:
        return moments, None, None
    shift_scaled = moments.scaled_sum / moments.total_weight
    full = structure.scale_inverse_rank == 2
    scatter = _tree_sum(
        [
            dask.delayed(_scaled_scatter)(x, w, max_abs, shift_scaled, full)
            for x, w in blocks
        ],
        _add,
    )
    (scatter,) = dask.compute(scatter)
    data_moments = DataMoments(
        moments.total_weight,
        moments.n_positive,
        shift_scaled * max_abs,
        max_abs,
        scatter,
    )
    standardisation = Standardisation.from_data_moments(data_moments, reg_covar)
    scaled_covariance = standardisation.covariance_to(data_moments, structure)
    return moments, standardisation, scaled_covariance


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


def _chunk_statistics(X, sample_weight, posterior, reg_covar, model_type):
    """Statistics of one chunk, on the worker that holds it (imports TF there)."""
    if X.shape[0] == 0:
        return None
    from skbayesmix._tfp_backend import chunk_statistics

    covariance_type, weight_type = model_type
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


def _summed_statistics(blocks, posterior, reg_covar, model_type):
    """E-step under `posterior` on every chunk, summed by a tree reduction.

    Returns
    -------
    statistics : Statistics of float64 ndarray
    """
    # One key for q(theta), shared by every chunk's task, so it travels once per
    # worker rather than once per chunk.
    posterior = dask.delayed(posterior, traverse=False)
    parts = [
        dask.delayed(_chunk_statistics)(x, w, posterior, reg_covar, model_type)
        for x, w in blocks
    ]
    (statistics,) = dask.compute(_tree_sum(parts, _add_statistics))
    return statistics


def _coordinate_ascent(
    resp,
    *,
    blocks,
    prior,
    reg_covar,
    tol,
    model_type,
    max_iter,
    posterior_init,
    lower_bound_init,
):
    """CAVI from `posterior_init`, one distributed E-step per iteration.

    The same iteration, convergence test and result as the backend's compiled
    loop (`fit_variational_posterior`), so the estimator's `_run_loop` drives
    both. `resp` is unused: the driver always starts from a posterior.
    """
    from skbayesmix._tfp_backend import lower_bound, update

    covariance_type, weight_type = model_type
    steps = dict(
        covariance_type=covariance_type, weight_concentration_prior_type=weight_type
    )
    posterior, bound = posterior_init, lower_bound_init
    lower_bounds, converged = [], False
    while len(lower_bounds) < max_iter and not converged:
        statistics = _summed_statistics(blocks, posterior, reg_covar, model_type)
        posterior = update(prior, statistics, reg_covar, **steps)
        new_bound = lower_bound(prior, posterior, statistics, reg_covar, **steps)
        # A non-finite bound means the numbers broke down; stop rather than loop on.
        converged = abs(new_bound - bound) < tol or not np.isfinite(new_bound)
        lower_bounds.append(new_bound)
        bound = new_bound
    return {
        "posterior": posterior,
        "lower_bounds": np.asarray(lower_bounds, dtype=np.float64),
        "n_iter": len(lower_bounds),
        "converged": converged,
    }


def _initial_posterior(
    estimator, X, sample_weight, moments, prior, reg_covar, random_state
):
    """q(theta) from the estimator's own initialisation on a sample of rows.

    With at most _INIT_SAMPLE_ROWS rows, the sample is all of X in order and the
    random state is consumed as in memory, so the fit equals the in-memory fit.
    """
    from skbayesmix._tfp_backend import initial_statistics, update

    if moments.n_rows <= _INIT_SAMPLE_ROWS:
        rows = slice(None)
    else:
        rows = np.unique(random_state.randint(moments.n_rows, size=_INIT_SAMPLE_ROWS))
    sample, weights = dask.compute(
        X[rows], None if sample_weight is None else sample_weight[rows]
    )
    model = dict(
        covariance_type=estimator.covariance_type,
        weight_concentration_prior_type=estimator.weight_concentration_prior_type,
    )
    resp = estimator._initial_resp(sample, weights, random_state)
    statistics = initial_statistics(sample, resp, sample_weight=weights, **model)
    sample_weight_total = sample.shape[0] if weights is None else np.sum(weights)
    if (
        estimator.init_params in _INIT_PARAMS_COVERING_ROWS
        and sample.shape[0] < moments.n_rows
    ):
        statistics = scale_statistics(
            statistics, moments.total_weight / sample_weight_total
        )
    return update(prior, statistics, reg_covar, **model)


# --------------------------------------------------------------------------------
# Public entry points, called by the estimator when X is a dask array
# --------------------------------------------------------------------------------


def fit(estimator, X, sample_weight=None):
    """Fit `estimator` to the dask array X; on any error leave it as it was.

    Parameters
    ----------
    estimator : VariationalGaussianMixture
    X : dask.array.Array of shape (n_samples, n_features)
    sample_weight : array-like or dask.array.Array of shape (n_samples,), \
            default=None
    """
    if estimator.learning_method == "online":
        raise ValueError(
            "learning_method='online' does not take dask arrays yet; fit them "
            "with learning_method='batch' (exact CAVI over the chunks), or feed "
            "their chunks to partial_fit."
        )
    state = dict(estimator.__dict__)
    try:
        _fit(estimator, X, sample_weight)
    except BaseException as error:
        # Nothing half-written: priors set early and a posterior set late go
        # together, or not at all.
        estimator.__dict__.clear()
        estimator.__dict__.update(state)
        if isinstance(error, KilledWorker):
            raise RuntimeError(
                "A Dask worker died while fitting, more often than the scheduler "
                "retries a task (distributed.scheduler.allowed-failures); the "
                "estimator was left as it was before fit. Check the workers' "
                "memory limits and logs."
            ) from error
        raise


def _fit(estimator, X, sample_weight):
    """The steps of the estimator's `_fit`, with reductions in place of arrays."""
    name = type(estimator).__name__
    X = _rows_chunked(X, name)
    dtype = _fit_dtype(X.dtype)
    X = X.map_blocks(_validated_block, name, dtype=dtype, meta=np.empty((0, 0), dtype))
    weighted = sample_weight is not None
    if weighted:
        sample_weight = _sample_weight_chunked(sample_weight, X)
    if X.shape[0] < 2:
        raise ValueError(
            "Found array with %d sample(s) (shape=%s) while a minimum of 2 is "
            "required by %s." % (X.shape[0], X.shape, name)
        )
    # The validation pass: each chunk is checked once, where it is computed, and
    # the checked chunks stay on the workers.
    X, sample_weight = dask.persist(X, sample_weight)
    structure = estimator._structure
    moments, standardisation, scaled_covariance = _standardisation_and_covariance(
        X, sample_weight, structure, estimator.reg_covar
    )
    if moments.n_positive < estimator.n_components:
        raise ValueError(
            "Expected n_samples >= n_components "
            f"but got n_components = {estimator.n_components}, "
            f"n_samples = {moments.n_positive}"
        )
    estimator._check_parameters(X, None, data_mean=standardisation.shift)
    # The backend fits standardised data; only that copy stays on the workers.
    Xs = X.map_blocks(
        standardisation.transform, dtype=dtype, meta=np.empty((0, 0), dtype)
    ).persist()
    del X
    prior = estimator._standardised_prior(Xs, standardisation, scaled_covariance)
    total_weight = moments.total_weight if weighted else moments.n_rows
    log_jacobian = standardisation.log_jacobian(total_weight, Xs.shape[1])
    reg_covar = standardisation.reg_covar_to(estimator.reg_covar)
    model_type = (estimator.covariance_type, estimator.weight_concentration_prior_type)

    warm = estimator.warm_start and estimator._fitted_structure_matches(Xs)
    random_state = check_random_state(estimator.random_state)
    fit_segment = functools.partial(
        _coordinate_ascent,
        blocks=_blocks(Xs, sample_weight),
        prior=prior,
        reg_covar=reg_covar,
        tol=estimator.tol,
        model_type=model_type,
    )
    estimator._fit_initialisations(
        lambda: (
            None,
            _initial_posterior(
                estimator, Xs, sample_weight, moments, prior, reg_covar, random_state
            ),
        ),
        warm,
        fit_segment,
        standardisation,
        log_jacobian,
        dtype.type,
        stacklevel=7,
    )
    estimator.n_features_in_ = Xs.shape[1]
    # As validate_data does for X without column names.
    estimator.__dict__.pop("feature_names_in_", None)


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
