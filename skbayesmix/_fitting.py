"""The one fit sequence: moments, priors, starts, the driver's loop, keep the best."""

# scikit-learn's BaseMixture.fit_predict calls hooks (_initialize, _e_step,
# _m_step) of its subclasses. Here the hooks belong to a driver, which knows how
# to read its rows (an ndarray, a memmap, one chunk of a stream, a dask array)
# and how to run iterations over them; `fit_sequence` is the same for all:
#
#   moments = driver.moments(scatter_rank)        one pass over the rows
#   model = model_prior(params, moments, dtype)   pure: see _priors
#   driver.prepare(model)                         e.g. standardise and persist
#   for each start:
#       state = driver.cold_start(model, init_params, n_components, rng)
#             | driver.warm_start(model, posterior, lower_bound)
#             | driver.resume(model, statistics, n_batch_iter, lower_bound)
#       result = driver.run(model, state, max_iter, tol)     -> LoopResult
#   keep the start of largest lower bound
#
# A driver never sees the estimator, and the estimator stores the FitResult at
# the end, so a fit that raises anywhere changes nothing.

import os
import sys
import warnings
from time import time
from typing import Any, NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from skbayesmix._priors import check_n_samples, check_observed_features, model_prior
from skbayesmix._state import COVARIANCE_STRUCTURES

__all__ = [
    "Driver",
    "FitResult",
    "LoopResult",
    "LoopState",
    "Resume",
    "fit_sequence",
    "warn_not_converged",
]


class Driver:
    """The hooks of the fit sequence; each driver overrides what it reads differently.

    Attributes
    ----------
    dtype : numpy dtype
        The dtype that X is fitted in.
    n_features : int
    is_stream : bool
        One pass over the rows given, continuing across calls (`partial_fit`):
        one start, no convergence test, no verbose lines.
    """

    is_stream = False

    def __init__(self, dtype, n_features):
        self.dtype = np.dtype(dtype)
        self.n_features = n_features
        # Named in errors about features, when the caller knows the names.
        self.feature_names = None

    def max_iter(self, params):
        """Iterations (passes, for online drivers) of one start at most."""
        return params["max_iter"]

    def total_weight(self, moments):
        """The weight of data that the lower bounds stand for."""
        return moments.total_weight

    def moments(self, scatter_rank):
        """The DataMoments of the rows, in one pass."""
        raise NotImplementedError

    def prepare(self, model):
        """Get the rows ready for the starts and the loop (`model`: ModelPrior)."""

    def cold_start(self, model, init_params, n_components, random_state):
        """A LoopState from `init_params` (see `skbayesmix._starts`)."""
        raise NotImplementedError

    def warm_start(self, model, posterior, lower_bound, random_state):
        """A LoopState that continues from a standardised Posterior."""
        raise NotImplementedError

    def resume(self, model, statistics, n_batch_iter, lower_bound):
        """A LoopState that continues stored online statistics."""
        raise NotImplementedError

    def run(self, model, state, max_iter, tol):
        """At most `max_iter` iterations from `state`; returns a LoopResult."""
        raise NotImplementedError


class LoopState(NamedTuple):
    """Where a driver's loop starts or resumes, in standardised units.

    posterior : Posterior or None
        q(theta); None for a cold start from `resp`.
    resp : ndarray of shape (n_samples, n_components) or None
        Responsibilities to start from (the in-memory driver's cold start).
    lower_bound : float
        The ELBO at `posterior`, for the first convergence test; -inf if unknown.
    statistics : Statistics or None
        Online drivers: the effective statistics S, posterior = update(prior, S).
    n_batch_iter : int
        Online drivers: the SVI steps taken so far.
    """

    posterior: Any
    resp: Any
    lower_bound: float
    statistics: Any
    n_batch_iter: int


class LoopResult(NamedTuple):
    """What every driver's loop returns.

    state : LoopState
        The state at the end, which a later segment of the loop resumes from.
    lower_bounds : ndarray of shape (n_iter,)
        One ELBO per iteration (a pass, for online drivers), standardised units.
    converged : bool
    """

    state: LoopState
    lower_bounds: np.ndarray
    converged: bool


class Resume(NamedTuple):
    """The stored online state that `partial_fit` continues from.

    moments : DataMoments
        Of the first chunk, which set the standardisation and the priors.
    statistics : Statistics
    n_batch_iter : int
    lower_bounds : list of float
        In data units.
    """

    moments: Any
    statistics: Any
    n_batch_iter: int
    lower_bounds: list


class FitResult(NamedTuple):
    """What the estimator stores of a fit.

    model : ModelPrior
    moments : DataMoments
    posterior : Posterior
        The best start's q(theta), in standardised units.
    lower_bounds : ndarray of shape (n_iter,)
        In data units.
    converged : bool
    statistics : Statistics or None
        Online drivers' effective statistics, for `partial_fit` to resume.
    n_batch_iter : int
    """

    model: Any
    moments: Any
    posterior: Any
    lower_bounds: np.ndarray
    converged: bool
    statistics: Any
    n_batch_iter: int


def _check_lower_bound(lower_bounds):
    """Raise when the numbers of a fit broke down."""
    if len(lower_bounds) and not np.isfinite(lower_bounds[-1]):
        raise ValueError(
            "Fitting the mixture failed: the lower bound is not finite. "
            "Check the data for extreme values, or increase reg_covar."
        )


def _print_iteration(verbose, n_iter, elapsed, change):
    """scikit-learn's line for every `verbose_interval` iterations."""
    if verbose == 1:
        print("  Iteration %d" % n_iter)
    else:
        print(
            "  Iteration %d\t time lapse %.5fs\t ll change %.5f"
            % (n_iter, elapsed, change)
        )


def _print_end(verbose, converged, lower_bound, elapsed):
    """scikit-learn's closing line of one initialization."""
    message = "converged" if converged else "did not converge"
    if verbose == 1:
        print(f"Initialization {message}.")
    else:
        print(
            f"Initialization {message}. time lapse {elapsed:.5f}s\t lower bound"
            f" {lower_bound:.5f}."
        )


def _run(driver, model, state, params):
    """The driver's loop from `state`: in one call, or in verbose segments.

    With `verbose`, the loop runs `verbose_interval` iterations at a time, each
    segment resuming from the last one's state, so that scikit-learn's lines
    print as the iterations run. The segments give the same iterates as one call.

    Returns
    -------
    result : LoopResult
    """
    max_iter, tol = driver.max_iter(params), params["tol"]
    verbose, interval = params["verbose"], params["verbose_interval"]
    if not verbose or driver.is_stream:
        return driver.run(model, state, max_iter, tol)
    lower_bounds, converged, n_iter = [state.lower_bound], False, 0
    last_line = time()
    while True:
        segment = driver.run(model, state, min(interval, max_iter - n_iter), tol)
        lower_bounds.extend(segment.lower_bounds)
        state, converged = segment.state, segment.converged
        n_iter = len(lower_bounds) - 1
        if n_iter and n_iter % interval == 0:
            now = time()
            change = lower_bounds[-1] - lower_bounds[-2]
            _print_iteration(verbose, n_iter, now - last_line, change)
            last_line = now
        if converged or n_iter >= max_iter or len(segment.lower_bounds) == 0:
            break
    # The first entry is the start's bound, not an iteration's.
    lower_bounds = np.asarray(lower_bounds[1:], dtype=np.float64)
    return LoopResult(state, lower_bounds, converged)


def _starts(driver, model, params, warm, resume, random_state):
    """The LoopStates to fit from, made one at a time as the loop needs them."""
    if resume is not None:
        lower_bound = resume.lower_bounds[-1] if resume.lower_bounds else -np.inf
        yield driver.resume(
            model,
            resume.statistics,
            resume.n_batch_iter,
            lower_bound - model.log_jacobian,
        )
    elif warm is not None:
        posterior, lower_bound = warm
        yield driver.warm_start(
            model,
            model.standardisation.posterior_to(posterior),
            lower_bound - model.log_jacobian,
            random_state,
        )
    else:
        for _ in range(1 if driver.is_stream else params["n_init"]):
            yield driver.cold_start(
                model, params["init_params"], params["n_components"], random_state
            )


def fit_sequence(params, driver, *, warm=None, resume=None):
    """Fit by `driver` from every start, and keep the largest lower bound.

    Parameters
    ----------
    params : dict
        The estimator's parameters (`get_params(deep=False)`).
    driver : object
        One of the drivers (see the module): in memory (`_batch`), online and
        streams (`_online`), Dask (`_dask`).
    warm : tuple (Posterior, float) or None, default=None
        The fitted posterior in data units (float64) and its lower bound, to
        continue from instead of `n_init` cold starts.
    resume : Resume or None, default=None
        The online state that `partial_fit` continues.

    Returns
    -------
    result : FitResult
    """
    structure = COVARIANCE_STRUCTURES[params["covariance_type"]]
    if resume is None:
        moments = driver.moments(structure.scale_inverse_rank)
        check_n_samples(moments.n_positive, params["n_components"])
        check_observed_features(moments, driver.feature_names)
    else:
        moments = resume.moments
    model = model_prior(params, moments, driver.dtype, driver.total_weight(moments))
    driver.prepare(model)
    random_state = check_random_state(params["random_state"])
    verbose = params["verbose"] and not driver.is_stream
    best, best_bound = None, -np.inf
    for init, state in enumerate(
        _starts(driver, model, params, warm, resume, random_state)
    ):
        if verbose:
            print("Initialization %d" % init)
        start = time()
        result = _run(driver, model, state, params)
        _check_lower_bound(result.lower_bounds)
        bound = result.lower_bounds[-1] if len(result.lower_bounds) else -np.inf
        if verbose and driver.max_iter(params) > 0:
            _print_end(
                params["verbose"],
                result.converged,
                bound + model.log_jacobian,
                time() - start,
            )
        if best is None or bound > best_bound:
            best, best_bound = result, bound

    if not (best.converged or driver.is_stream or driver.max_iter(params) == 0):
        warn_not_converged()
    lower_bounds = best.lower_bounds + model.log_jacobian
    if resume is not None:
        lower_bounds = np.concatenate([resume.lower_bounds, lower_bounds])
    return FitResult(
        model,
        moments,
        best.state.posterior,
        lower_bounds,
        best.converged,
        best.state.statistics,
        best.state.n_batch_iter,
    )


def _outside_frames():
    """The stacklevel of the first frame outside skbayesmix and scikit-learn.

    That is the user's line that called `fit`, directly or through a
    scikit-learn meta-estimator (a Pipeline, say), whichever driver fitted and
    however deep the call came here.
    """
    import sklearn

    packages = tuple(
        os.path.dirname(os.path.abspath(module.__file__)) + os.sep
        for module in (sys.modules[__package__], sklearn)
    )
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        packages
    ):
        frame, level = frame.f_back, level + 1
    return level


def warn_not_converged():
    """scikit-learn's ConvergenceWarning, pointed at the caller of `fit`."""
    warnings.warn(
        "Best performing initialization did not converge. "
        "Try different init parameters, or increase max_iter, "
        "tol, or check for degenerate data.",
        ConvergenceWarning,
        stacklevel=_outside_frames(),
    )
