"""The shift and scalar scale of X, and how the model's parameters map through them."""

# The backend works on standardised data, x_s = (x - shift) / scale, so that its
# numbers are near 1 whatever the data's offset or scale (1e8 offsets, 1e+-100
# scales). The model is equivariant under this map when the prior maps with it,
# so nothing is lost: means shift and scale, scale matrices scale by scale^2,
# and the ELBO changes by the log-Jacobian of the map. The scale is kept as two
# factors, max_abs and spread, because their product can overflow for data near
# the float range.

from typing import NamedTuple

import numpy as np

from skbayesmix._state import Posterior, Prior

__all__ = ["Standardisation", "covariance_from_scatter", "weighted_scatter"]

# Lower bound on reg_covar in standardised units. The backend's float64 scatter
# (second moment minus squared mean) carries a rounding error near 1e-15 *
# n_features per sample; a floor well above it keeps collinear or n <= d data
# positive definite, and is far below any resolvable variance.
_MIN_STANDARDISED_REG_COVAR = 1e-10


class Standardisation(NamedTuple):
    """x_s = ((x / max_abs) - shift / max_abs) / spread.

    shift : ndarray of shape (n_features,)
        The weighted mean of X.
    max_abs : float
        The largest |x| over rows of positive weight.
    spread : float
        The root mean squared deviation of X / max_abs, over samples and features.
    """

    shift: np.ndarray
    max_abs: float
    spread: float

    @classmethod
    def from_data(cls, X, sample_weight=None, reg_covar=0.0):
        """Zero weighted mean and unit mean variance, from the rows of X.

        Weights act as repetitions: rows of weight zero do not count, so the map
        is the same as for X without them.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        sample_weight : ndarray of shape (n_samples,), default=None
        reg_covar : float, default=0.0
            When X spreads less than sqrt(reg_covar), the scale is sqrt(reg_covar)
            instead, so that reg_covar stays O(1) and identical points do not
            blow it up.

        Returns
        -------
        standardisation : Standardisation
        """
        if sample_weight is not None:
            X = X[sample_weight > 0]
            sample_weight = sample_weight[sample_weight > 0]
        max_abs = float(np.max(np.abs(X))) if X.size else 1.0
        if max_abs == 0.0:
            max_abs = 1.0
        scaled = X / max_abs
        shift_scaled = np.average(scaled, axis=0, weights=sample_weight)
        squared = np.mean(np.square(scaled - shift_scaled), axis=1)
        spread = float(np.sqrt(np.average(squared, weights=sample_weight)))
        return cls.from_moments(shift_scaled * max_abs, max_abs, spread, reg_covar)

    @classmethod
    def from_moments(cls, shift, max_abs, spread, reg_covar=0.0):
        """The map from already reduced moments, guarding degenerate spreads.

        Returns
        -------
        standardisation : Standardisation
        """
        if spread == 0.0:
            spread = 1.0
        if max_abs * spread < np.sqrt(reg_covar):
            spread = float(np.sqrt(reg_covar)) / max_abs
        return cls(np.asarray(shift, dtype=np.float64), float(max_abs), float(spread))

    def transform(self, X):
        """x_s for each row of X, in X's dtype.

        Returns
        -------
        X_standardised : ndarray of shape (n_samples, n_features)
        """
        return ((X / self.max_abs - self.shift / self.max_abs) / self.spread).astype(
            X.dtype, copy=False
        )

    def mean_to(self, mean):
        """A location (mean, mean_prior_) in standardised units."""
        mean = np.asarray(mean, dtype=np.float64)
        return (mean / self.max_abs - self.shift / self.max_abs) / self.spread

    def mean_from(self, mean):
        """A standardised location in data units."""
        return np.asarray(mean) * (self.max_abs * self.spread) + self.shift

    def scale_matrix_to(self, value):
        """A squared quantity (covariance, Psi, reg_covar) in standardised units."""
        value = np.asarray(value, dtype=np.float64)
        return value / self.max_abs / self.max_abs / self.spread / self.spread

    def scale_matrix_from(self, value):
        """A standardised squared quantity in data units; may overflow to inf."""
        scale = self.max_abs * self.spread
        with np.errstate(over="ignore"):
            return np.asarray(value) * scale * scale

    def reg_covar_to(self, reg_covar):
        """reg_covar in standardised units, floored (see the module's floor)."""
        return max(float(self.scale_matrix_to(reg_covar)), _MIN_STANDARDISED_REG_COVAR)

    def prior_to(self, prior):
        """A Prior in data units, as a float64 Prior in standardised units.

        float64 whatever X's dtype: the regularisation floor added to the scale
        would vanish in float32 rounding.
        """
        return Prior(
            np.float64(prior.weight_concentration),
            np.float64(prior.mean_precision),
            self.mean_to(prior.mean),
            np.float64(prior.degrees_of_freedom),
            self.scale_matrix_to(prior.scale_inverse),
        )

    def posterior_to(self, posterior):
        """A Posterior in data units, as a float64 Posterior in standardised units."""
        return Posterior(
            *(np.asarray(p, dtype=np.float64) for p in posterior[:3]),
            self.mean_to(posterior.means),
            np.asarray(posterior.degrees_of_freedom, dtype=np.float64),
            self.scale_matrix_to(posterior.scale_inverse),
        )

    def posterior_from(self, posterior):
        """A standardised Posterior in data units (float64; Psi may overflow)."""
        return Posterior(
            *(np.asarray(p, dtype=np.float64) for p in posterior[:3]),
            self.mean_from(np.asarray(posterior.means, dtype=np.float64)),
            np.asarray(posterior.degrees_of_freedom, dtype=np.float64),
            self.scale_matrix_from(
                np.asarray(posterior.scale_inverse, dtype=np.float64)
            ),
        )

    def log_jacobian(self, total_weight, n_features):
        """log p(X) - log p(X_s): what the ELBO of standardised data lacks.

        Each of the total_weight samples has D coordinates divided by the scale.
        """
        return -total_weight * n_features * (np.log(self.max_abs) + np.log(self.spread))


def weighted_scatter(centred, weights, full):
    """sum_n w_n c_n c_n^T (full) or its diagonal, of rows already centred.

    Scatters of disjoint sets of rows add up, which lets the Dask and online drivers
    reduce them chunk by chunk.

    Returns
    -------
    scatter : ndarray of shape (n_features, n_features) if full else (n_features,)
    """
    weighted = centred * weights[:, None]
    if full:
        return weighted.T @ centred
    return np.sum(weighted * centred, axis=0)


def covariance_from_scatter(scatter, total_weight, structure):
    """The weighted sample covariance from a scatter, in the structure's shape.

    Returns
    -------
    covariance : ndarray of shape `structure.prior_scale_shape(n_features)`
    """
    denominator = total_weight - 1.0 if total_weight > 1.0 else total_weight
    covariance = scatter / denominator
    if structure.scale_inverse_rank == 0:
        return covariance.mean()
    return covariance
