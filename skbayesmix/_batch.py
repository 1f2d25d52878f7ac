"""The in-memory driver: full-batch CAVI of an ndarray in one compiled loop."""

import numpy as np

from skbayesmix._fitting import Driver, LoopResult, LoopState
from skbayesmix._missing import mean_imputed
from skbayesmix._standardisation import data_moments, row_pieces
from skbayesmix._starts import initial_resp

__all__ = ["InMemoryDriver"]


class InMemoryDriver(Driver):
    """Fits a validated ndarray held in memory.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    sample_weight : ndarray of shape (n_samples,) or None
    """

    def __init__(self, X, sample_weight):
        super().__init__(X.dtype, X.shape[1])
        self.X = X
        self.sample_weight = sample_weight
        self.X_standardised = None

    def moments(self, scatter_rank):
        return data_moments(
            row_pieces(self.X, self.sample_weight), self.n_features, scatter_rank
        )

    def prepare(self, model):
        self.X_standardised = model.standardisation.transform(self.X)

    def cold_start(self, model, init_params, n_components, random_state):
        # The loop's first pass takes the statistics of these responsibilities.
        resp = initial_resp(
            init_params,
            n_components,
            mean_imputed(self.X_standardised),
            self.sample_weight,
            random_state,
        )
        return LoopState(None, resp, -np.inf, None, 0)

    def warm_start(self, model, posterior, lower_bound, random_state):
        return LoopState(posterior, None, lower_bound, None, 0)

    def run(self, model, state, max_iter, tol):
        # Imported here so that `import skbayesmix` never loads TensorFlow.
        from skbayesmix._tfp_backend import fit_variational_posterior

        fitted = fit_variational_posterior(
            self.X_standardised,
            state.resp,
            model.prior,
            covariance_type=model.covariance_type,
            weight_concentration_prior_type=model.weight_type,
            reg_covar=model.reg_covar,
            tol=tol,
            max_iter=max_iter,
            sample_weight=self.sample_weight,
            posterior_init=state.posterior,
            lower_bound_init=state.lower_bound,
        )
        lower_bounds = fitted["lower_bounds"]
        end = LoopState(
            fitted["posterior"],
            None,
            lower_bounds[-1] if len(lower_bounds) else state.lower_bound,
            None,
            0,
        )
        return LoopResult(end, lower_bounds, fitted["converged"])
