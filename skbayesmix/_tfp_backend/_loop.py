"""The compiled full-batch CAVI loop, and the same steps one at a time (NumPy API)."""

import functools
import threading

import numpy as np
import tensorflow as tf

from skbayesmix._missing import IncompleteRows, mean_imputed, split_incomplete
from skbayesmix._state import (
    COVARIANCE_STRUCTURES,
    Posterior,
    Prior,
    Statistics,
    sum_statistics,
)
from skbayesmix._tfp_backend._maths import (
    evidence_lower_bound,
    log_rho_offset,
    posterior_moments,
    update_posterior,
)
from skbayesmix._tfp_backend._missing import incomplete_design, incomplete_statistics
from skbayesmix._tfp_backend._statistics import (
    design_layout,
    expected_statistics,
    held_design,
    holds_design,
    responsibility_statistics,
)


def _coordinate_ascent(
    X,
    sample_weight,
    resp_init,
    prior_mean,
    prior_scale_inverse,
    settings,
    max_iter,
    posterior_init,
    incomplete=None,
    *,
    structure,
    weight_type,
    hold_design,
):
    """Run CAVI until the ELBO changes by less than `tol`, all in one graph.

    `settings` packs (weight_concentration, mean_precision, degrees_of_freedom) of
    the prior with reg_covar, tol, lower_bound_init and the warm flag.

    A warm start begins at `posterior_init`. A cold start begins with one extra
    pass that takes its statistics from `resp_init` instead of the E-step and
    updates q(theta) from them; that pass is not an iteration, and its bound is
    not recorded (`posterior_init` then only gives the loop state its shapes).
    Both starts share one trace and one loop body: a second trace cost as much
    as the first again, and a separate cold-start path about a fifth more graph,
    which every fresh process pays to trace and set up.

    Each iteration is: E-step and statistics of q(z) from q(theta)
    (`expected_statistics`), closed-form q(theta) (`update_posterior`), ELBO at
    (q(z), q(theta)) (`evidence_lower_bound`). Each half maximises the ELBO over
    its block, so the recorded sequence never decreases (up to rounding).

    `hold_design` (a trace-time choice, see `holds_design`) builds the design of
    X once for all iterations; otherwise each block builds its own.

    `incomplete` (IncompleteRows) holds the rows with missing entries, which X
    then lacks; their statistics are added to X's each iteration. Such fits
    start warm (see `fit_variational_posterior`). With `hold_design`, a
    Wishart's design of those rows, zero-filled, is held too.
    """
    # Each tf.function argument costs a conversion and a signature check per call
    # (~0.05 ms); small fits feel that, so the scalars travel as one vector.
    alpha0, beta0, nu0, reg_covar, tol, lower_bound_init, warm = tf.unstack(settings)
    prior = Prior(alpha0, beta0, prior_mean, nu0, prior_scale_inverse)
    cold = warm <= 0.0
    layout = design_layout(tf.shape(X)[1], structure)
    held = held_design(X, structure, layout) if hold_design else None
    held_incomplete = None
    if incomplete is not None and hold_design and structure.family == "wishart":
        held_incomplete = incomplete_design(incomplete.values, layout)
    posterior = _unpack_posterior(
        posterior_init, tf.shape(resp_init)[1], tf.shape(prior_mean)[0], structure
    )
    lower_bounds = tf.TensorArray(tf.float64, size=0, dynamic_size=True)

    # The moments and offsets of q(theta) feed both the ELBO of one iteration and
    # the E-step of the next, so they travel in the loop state and are computed
    # once per q(theta).
    def expectations(posterior):
        moments = posterior_moments(posterior, structure)
        return moments, log_rho_offset(posterior, moments, reg_covar, weight_type)

    def keep_going(n_pass, n_iter, posterior, expected, lower_bound, converged, _):
        return tf.logical_and(n_iter < max_iter, tf.logical_not(converged))

    def step(n_pass, n_iter, posterior, expected, lower_bound, converged, bounds):
        initialising = tf.logical_and(cold, tf.equal(n_pass, 0))
        moments, offset = expected
        statistics = expected_statistics(
            X,
            sample_weight,
            posterior,
            moments,
            offset,
            structure,
            held,
            layout,
            resp_init,
            initialising,
        )
        if incomplete is not None:
            statistics = tf.nest.map_structure(
                tf.add,
                statistics,
                incomplete_statistics(
                    incomplete, posterior, moments, offset, structure, held_incomplete
                ),
            )
        new_posterior = update_posterior(
            statistics, prior, reg_covar, structure, weight_type
        )
        new_expected = expectations(new_posterior)
        new_lower_bound = evidence_lower_bound(
            statistics,
            new_posterior,
            *new_expected,
            prior,
            structure,
            weight_type,
        )
        # A non-finite bound means the numbers broke down; stop rather than loop on.
        finished = tf.logical_and(
            tf.logical_not(initialising),
            tf.logical_or(
                tf.abs(new_lower_bound - lower_bound) < tol,
                tf.logical_not(tf.math.is_finite(new_lower_bound)),
            ),
        )
        return (
            n_pass + 1,
            n_iter + tf.where(initialising, 0, 1),
            new_posterior,
            new_expected,
            tf.where(initialising, lower_bound, new_lower_bound),
            finished,
            bounds.write(n_pass, new_lower_bound),
        )

    _, n_iter, posterior, _, lower_bound, converged, lower_bounds = tf.while_loop(
        keep_going,
        step,
        (
            tf.constant(0),
            tf.constant(0),
            posterior,
            expectations(posterior),
            lower_bound_init,
            tf.constant(False),
            lower_bounds,
        ),
    )
    # The cold start's first pass is not an iteration.
    return posterior, lower_bounds.stack()[tf.cast(cold, tf.int32) :], n_iter, converged


def _unpack_posterior(flat, n_components, n_features, structure):
    """The Posterior packed by `_pack_posterior`, from its dimensions.

    Returns
    -------
    posterior : Posterior
    """
    n_factors = 1 if structure.shared else n_components
    feature_shape = tf.fill([structure.scale_inverse_rank], n_features)
    psi_shape = tf.concat([[n_factors], feature_shape], 0)
    sizes = tf.stack(
        [
            n_components,
            n_components,
            n_components,
            n_components * n_features,
            n_factors,
            tf.reduce_prod(psi_shape),
        ]
    )
    a, b, beta, means, nu, psi = tf.split(flat, sizes, num=6)
    return Posterior(
        a,
        b,
        beta,
        tf.reshape(means, [n_components, n_features]),
        nu,
        tf.reshape(psi, psi_shape),
    )


def _pack_posterior(posterior):
    """A Posterior as one float64 vector: one loop input instead of six.

    Each input of a compiled function costs a conversion and a type check per
    call, which small fits feel.
    """
    return np.concatenate([np.ravel(np.asarray(p, np.float64)) for p in posterior])


def _prior_as_posterior(prior, n_components, structure):
    """q(theta) = p(theta) for `n_components` components: a valid posterior.

    A cold start passes it to the loop, which reads only its shapes.
    """
    n_factors = structure.n_factors(n_components)
    scale_inverse = np.asarray(prior.scale_inverse, np.float64)
    return Posterior(
        np.ones(n_components),
        np.full(n_components, float(prior.weight_concentration)),
        np.full(n_components, float(prior.mean_precision)),
        np.tile(np.asarray(prior.mean, np.float64), (n_components, 1)),
        np.full(n_factors, float(prior.degrees_of_freedom)),
        np.broadcast_to(scale_inverse, (n_factors,) + scale_inverse.shape),
    )


# --------------------------------------------------------------------------------
# Signatures: every dimension None, so one trace serves every shape
# --------------------------------------------------------------------------------


def _prior_spec(structure):
    scalar = tf.TensorSpec([], tf.float64)
    return Prior(
        scalar,
        scalar,
        tf.TensorSpec([None], tf.float64),
        scalar,
        tf.TensorSpec([None] * structure.scale_inverse_rank, tf.float64),
    )


def _posterior_spec(structure):
    vector = tf.TensorSpec([None], tf.float64)
    return Posterior(
        vector,
        vector,
        vector,
        tf.TensorSpec([None, None], tf.float64),
        vector,
        tf.TensorSpec([None] * (structure.scale_inverse_rank + 1), tf.float64),
    )


def _statistics_spec(structure):
    return Statistics(
        tf.TensorSpec([None], tf.float64),
        tf.TensorSpec([None, None], tf.float64),
        tf.TensorSpec([None] * (structure.scale_inverse_rank + 1), tf.float64),
        tf.TensorSpec([], tf.float64),
    )


def _data_spec(dtype):
    return [
        tf.TensorSpec([None, None], tf.as_dtype(dtype)),  # X
        tf.TensorSpec([None], tf.float64),  # sample_weight
    ]


_SCALAR = tf.TensorSpec([], tf.float64)


def _loop_signature(structure, dtype):
    return _data_spec(dtype) + [
        tf.TensorSpec([None, None], tf.as_dtype(dtype)),  # resp_init
        tf.TensorSpec([None], tf.float64),  # prior_mean
        tf.TensorSpec([None] * structure.scale_inverse_rank, tf.float64),
        tf.TensorSpec([7], tf.float64),  # settings
        tf.TensorSpec([], tf.int32),  # max_iter
        tf.TensorSpec([None], tf.float64),  # posterior_init, packed
    ]


def _incomplete_spec(dtype):
    return IncompleteRows(
        tf.TensorSpec([None, None], tf.as_dtype(dtype)),
        tf.TensorSpec([None], tf.float64),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, 5], tf.int32),
    )


def _incomplete_chunk_statistics(
    incomplete, posterior, reg_covar, *, structure, weight_type
):
    moments = posterior_moments(posterior, structure)
    offset = log_rho_offset(posterior, moments, reg_covar, weight_type)
    return incomplete_statistics(
        IncompleteRows(*incomplete), posterior, moments, offset, structure
    )


def _chunk_statistics(
    X, sample_weight, posterior, reg_covar, *, structure, weight_type
):
    moments = posterior_moments(posterior, structure)
    offset = log_rho_offset(posterior, moments, reg_covar, weight_type)
    return expected_statistics(X, sample_weight, posterior, moments, offset, structure)


def _update(prior, statistics, reg_covar, *, structure, weight_type):
    return update_posterior(statistics, prior, reg_covar, structure, weight_type)


def _lower_bound(prior, posterior, statistics, reg_covar, *, structure, weight_type):
    moments = posterior_moments(posterior, structure)
    offset = log_rho_offset(posterior, moments, reg_covar, weight_type)
    return evidence_lower_bound(
        statistics, posterior, moments, offset, prior, structure, weight_type
    )


def _initial_statistics(X, sample_weight, resp, *, structure, weight_type):
    return responsibility_statistics(X, sample_weight, resp, structure)


# Each entry: the graph-building function and its signature for a structure and
# dtype. All steps are built from the same functions as the loop.
_STEPS = {
    "loop": (functools.partial(_coordinate_ascent, hold_design=True), _loop_signature),
    "loop_building_design": (
        functools.partial(_coordinate_ascent, hold_design=False),
        _loop_signature,
    ),
    "loop_missing": (
        functools.partial(_coordinate_ascent, hold_design=True),
        lambda structure, dtype: (
            _loop_signature(structure, dtype) + [_incomplete_spec(dtype)]
        ),
    ),
    "loop_building_design_missing": (
        functools.partial(_coordinate_ascent, hold_design=False),
        lambda structure, dtype: (
            _loop_signature(structure, dtype) + [_incomplete_spec(dtype)]
        ),
    ),
    "incomplete_statistics": (
        _incomplete_chunk_statistics,
        lambda structure, dtype: [
            _incomplete_spec(dtype),
            _posterior_spec(structure),
            _SCALAR,
        ],
    ),
    "chunk_statistics": (
        _chunk_statistics,
        lambda structure, dtype: (
            _data_spec(dtype) + [_posterior_spec(structure), _SCALAR]
        ),
    ),
    "initial_statistics": (
        _initial_statistics,
        lambda structure, dtype: (
            _data_spec(dtype) + [tf.TensorSpec([None, None], tf.as_dtype(dtype))]
        ),
    ),
    "update": (
        _update,
        lambda structure, dtype: [
            _prior_spec(structure),
            _statistics_spec(structure),
            _SCALAR,
        ],
    ),
    "lower_bound": (
        _lower_bound,
        lambda structure, dtype: [
            _prior_spec(structure),
            _posterior_spec(structure),
            _statistics_spec(structure),
            _SCALAR,
        ],
    ),
}

_COMPILED = {}
_COMPILED_LOCK = threading.Lock()


def compiled(step, covariance_type, weight_type, dtype=np.float64):
    """The traced `step` for one model structure and dtype, built once per process.

    Every dimension of the input signature is None, so calls of any shape reuse
    one trace: no retracing per fit and no pile-up of concrete functions.

    Parameters
    ----------
    step : {'loop', 'loop_building_design', 'chunk_statistics', \
            'initial_statistics', 'update', 'lower_bound'}
        'loop' holds the design of X across iterations, and
        'loop_building_design' builds it per block (see `holds_design`).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weight_type : {'dirichlet_process', 'dirichlet_distribution'}
    dtype : numpy dtype, default=np.float64
        The dtype of X (the steps that take no X are float64).
    """
    key = (step, covariance_type, weight_type, np.dtype(dtype).name)
    with _COMPILED_LOCK:
        if key not in _COMPILED:
            function, signature = _STEPS[step]
            structure = COVARIANCE_STRUCTURES[covariance_type]
            # A partial, not a closure: TF counts retracing per code object, and
            # closures sharing one would read as one function retraced, with a
            # warning, whenever several structures are first fitted in a row.
            _COMPILED[key] = tf.function(
                functools.partial(
                    function, structure=structure, weight_type=weight_type
                ),
                input_signature=signature(structure, dtype),
                autograph=False,
            )
        return _COMPILED[key]


# --------------------------------------------------------------------------------
# NumPy in, NumPy out
# --------------------------------------------------------------------------------


def _float64(structure_tuple):
    return type(structure_tuple)(*(np.asarray(p, np.float64) for p in structure_tuple))


def _numpy(structure_tuple):
    return type(structure_tuple)(*(np.asarray(p) for p in structure_tuple))


def _tensors(*arguments):
    """The arguments of a compiled step as tensors, nested tuples kept.

    tf.function's own conversion of NumPy arguments took 0.3 ms more per call,
    7% of the 4.5 ms tutorial fit.
    """
    return tf.nest.map_structure(tf.constant, arguments)


def _weights(X, sample_weight):
    if sample_weight is None:
        return np.ones(X.shape[0])
    return np.asarray(sample_weight, dtype=np.float64)


def fit_variational_posterior(
    X,
    resp_init,
    prior,
    *,
    covariance_type,
    weight_concentration_prior_type,
    reg_covar,
    tol,
    max_iter,
    sample_weight=None,
    posterior_init=None,
    lower_bound_init=-np.inf,
):
    """Fit the variational posterior by coordinate ascent in one compiled loop.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    resp_init : ndarray of shape (n_samples, n_components)
        Responsibilities to start from; ignored, and may be None, when
        `posterior_init` is given.
    prior : Prior
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}
    reg_covar, tol : float
    max_iter : int
    sample_weight : ndarray of shape (n_samples,), default=None
    posterior_init : Posterior, default=None
        A posterior to continue from (warm start).
    lower_bound_init : float, default=-inf
        The ELBO of `posterior_init`, for the first convergence test.

    Returns
    -------
    result : dict
        'posterior' (Posterior of float64 ndarray), 'lower_bounds' (n_iter,) in
        float64, 'n_iter' (int) and 'converged' (bool).
    """
    dtype = X.dtype
    weights = _weights(X, sample_weight)
    split = split_incomplete(X, weights)
    if split is not None and posterior_init is None:
        # The cold start's first pass takes its statistics from resp_init on
        # mean-imputed rows; the loop then starts warm from their q(theta).
        posterior_init = update(
            prior,
            initial_statistics(
                mean_imputed(X),
                resp_init,
                covariance_type=covariance_type,
                weight_concentration_prior_type=weight_concentration_prior_type,
                sample_weight=weights,
            ),
            reg_covar,
            covariance_type=covariance_type,
            weight_concentration_prior_type=weight_concentration_prior_type,
        )
        lower_bound_init = -np.inf
    warm_start = posterior_init is not None
    structure = COVARIANCE_STRUCTURES[covariance_type]
    if split is not None:
        X, weights, incomplete = split
    if warm_start:
        n_components = len(posterior_init.means)
        resp_init = np.zeros((0, n_components), dtype)
    else:
        n_components = resp_init.shape[1]
        posterior_init = _prior_as_posterior(prior, n_components, structure)
    # Held designs: of X, and of the rows with holes (see _coordinate_ascent).
    n_held = X.shape[0] + (0 if split is None else incomplete.values.shape[0])
    step = (
        "loop"
        if holds_design(n_held, X.shape[1], structure)
        else "loop_building_design"
    )
    if split is not None:
        step += "_missing"
    fit = compiled(step, covariance_type, weight_concentration_prior_type, dtype)
    settings = np.array(
        [
            prior.weight_concentration,
            prior.mean_precision,
            prior.degrees_of_freedom,
            reg_covar,
            tol,
            lower_bound_init,
            float(warm_start),
        ],
        dtype=np.float64,
    )
    args = [
        X,
        weights,
        np.asarray(resp_init, dtype),
        np.asarray(prior.mean, np.float64),
        np.asarray(prior.scale_inverse, np.float64),
        settings,
        np.int32(min(max_iter, np.iinfo(np.int32).max)),
        _pack_posterior(posterior_init),
    ]
    if split is not None:
        args.append(incomplete)
    posterior, lower_bounds, n_iter, converged = fit(*_tensors(*args))
    return {
        "posterior": _numpy(Posterior(*posterior)),
        "lower_bounds": lower_bounds.numpy(),
        "n_iter": int(n_iter),
        "converged": bool(converged),
    }


def chunk_statistics(
    X,
    posterior,
    reg_covar,
    *,
    covariance_type,
    weight_concentration_prior_type,
    sample_weight=None,
):
    """E-step under `posterior` and the statistics of q(z) over the rows of X.

    Statistics of disjoint chunks add up (`skbayesmix._state.sum_statistics`) to
    those of their union.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    posterior : Posterior
    reg_covar : float
    covariance_type, weight_concentration_prior_type : str
    sample_weight : ndarray of shape (n_samples,), default=None

    Returns
    -------
    statistics : Statistics of float64 ndarray
    """
    weights = _weights(X, sample_weight)
    split = split_incomplete(X, weights)
    parts = []
    if split is not None:
        X, weights, incomplete = split
        step = compiled(
            "incomplete_statistics",
            covariance_type,
            weight_concentration_prior_type,
            X.dtype,
        )
        parts.append(
            step(*_tensors(incomplete, _float64(posterior), np.float64(reg_covar)))
        )
    if split is None or X.shape[0]:
        step = compiled(
            "chunk_statistics",
            covariance_type,
            weight_concentration_prior_type,
            X.dtype,
        )
        parts.append(
            step(*_tensors(X, weights, _float64(posterior), np.float64(reg_covar)))
        )
    parts = [_numpy(Statistics(*part)) for part in parts]
    return parts[0] if len(parts) == 1 else sum_statistics(parts)


def initial_statistics(
    X, resp, *, covariance_type, weight_concentration_prior_type, sample_weight=None
):
    """The statistics of given responsibilities over the rows of X.

    Returns
    -------
    statistics : Statistics of float64 ndarray
    """
    step = compiled(
        "initial_statistics", covariance_type, weight_concentration_prior_type, X.dtype
    )
    statistics = step(
        *_tensors(X, _weights(X, sample_weight), np.asarray(resp, X.dtype))
    )
    return _numpy(Statistics(*statistics))


def update(
    prior, statistics, reg_covar, *, covariance_type, weight_concentration_prior_type
):
    """q(theta) from the prior and statistics (summed, scaled or blended).

    Returns
    -------
    posterior : Posterior of float64 ndarray
    """
    step = compiled("update", covariance_type, weight_concentration_prior_type)
    posterior = step(
        *_tensors(_float64(prior), _float64(statistics), np.float64(reg_covar))
    )
    return _numpy(Posterior(*posterior))


def lower_bound(
    prior,
    posterior,
    statistics,
    reg_covar,
    *,
    covariance_type,
    weight_concentration_prior_type,
):
    """The ELBO at (q(z) summarised by `statistics`, `posterior`).

    Returns
    -------
    lower_bound : float
    """
    step = compiled("lower_bound", covariance_type, weight_concentration_prior_type)
    return float(
        step(
            *_tensors(
                _float64(prior),
                _float64(posterior),
                _float64(statistics),
                np.float64(reg_covar),
            )
        )
    )
