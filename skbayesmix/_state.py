"""Named model state, and one table of what each covariance type's parameters mean."""

# The same containers travel on both sides of the NumPy/TensorFlow boundary: the
# estimator builds them from NumPy arrays, the backend receives them as tensors
# (tf.nest maps NamedTuples) and returns them as NumPy arrays. Nothing here imports
# TensorFlow.
#
# For every covariance type the precision Lambda has E[Lambda] = nu Psi^-1 and
# covariances_ = Psi / nu, as in scikit-learn. What differs is the family and the
# shapes:
#
#   full       Lambda_k ~ Wishart(nu_k, Psi_k^-1)        Psi: (K, D, D), nu: (K,)
#   tied       Lambda   ~ Wishart(nu, Psi^-1), shared    Psi: (1, D, D), nu: (1,)
#   diag       lambda_kd ~ Gamma(nu_k / 2, Psi_kd / 2)   Psi: (K, D),    nu: (K,)
#   spherical  lambda_k ~ Gamma(D nu_k / 2, D Psi_k / 2) Psi: (K,),      nu: (K,)

from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "COVARIANCE_STRUCTURES",
    "CovarianceStructure",
    "Posterior",
    "Prior",
    "Statistics",
]


class Prior(NamedTuple):
    """p(pi) p(mu, Lambda): the prior's parameters.

    weight_concentration : float
        alpha0, the Dirichlet concentration (or the sticks' Beta(1, alpha0)).
    mean_precision : float
        beta0.
    mean : array of shape (n_features,)
        m0.
    degrees_of_freedom : float
        nu0.
    scale_inverse : array
        Psi0, of shape `CovarianceStructure.prior_scale_shape`.
    """

    weight_concentration: Any
    mean_precision: Any
    mean: Any
    degrees_of_freedom: Any
    scale_inverse: Any


class Posterior(NamedTuple):
    """q(pi) q(mu | Lambda) q(Lambda): the variational factors' parameters.

    concentration_a, concentration_b : array of shape (n_components,)
        Dirichlet concentrations (b is zero), or the sticks' Beta parameters.
    mean_precision : array of shape (n_components,)
        beta_k.
    means : array of shape (n_components, n_features)
        m_k.
    degrees_of_freedom : array of shape (n_factors,)
        nu; one factor for 'tied', n_components otherwise.
    scale_inverse : array
        Psi, of shape `CovarianceStructure.scale_inverse_shape`.
    """

    concentration_a: Any
    concentration_b: Any
    mean_precision: Any
    means: Any
    degrees_of_freedom: Any
    scale_inverse: Any


class Statistics(NamedTuple):
    """Weighted sufficient statistics of q(z) over some rows; they add up over rows.

    counts : array of shape (n_components,)
        N_k = sum_n w_n r_nk.
    first_moment : array of shape (n_components, n_features)
        sum_n w_n r_nk x_n.
    second_moment : array
        sum_n w_n r_nk x_n x_n^T, of shape `CovarianceStructure.second_moment_shape`:
        summed over components for 'tied', its diagonal for 'diag', its trace for
        'spherical'.
    resp_entropy : float
        -sum_nk w_n r_nk log r_nk, the entropy term of the ELBO.

    The update of q(theta) is affine in these, so a convex blend of two
    Statistics (the natural-gradient step of stochastic VI) is a valid input too.
    """

    counts: Any
    first_moment: Any
    second_moment: Any
    resp_entropy: Any


def sum_statistics(statistics):
    """Add up the Statistics of disjoint sets of rows.

    Parameters
    ----------
    statistics : iterable of Statistics
        With NumPy arrays.

    Returns
    -------
    total : Statistics
    """
    statistics = list(statistics)
    return Statistics(*(np.sum(field, axis=0) for field in zip(*statistics)))


def blend_statistics(current, new, step_size):
    """(1 - rho) current + rho new: the natural-gradient step of stochastic VI.

    Returns
    -------
    blended : Statistics
    """
    return Statistics(
        *(
            (1.0 - step_size) * np.asarray(a) + step_size * np.asarray(b)
            for a, b in zip(current, new)
        )
    )


def scale_statistics(statistics, factor):
    """factor * statistics, for example N / |batch| to stand for all N rows.

    Returns
    -------
    scaled : Statistics
    """
    return Statistics(*(factor * np.asarray(field) for field in statistics))


class CovarianceStructure(NamedTuple):
    """What one covariance type means: precision family, sharing and shapes.

    name : str
        'full', 'tied', 'diag' or 'spherical'.
    shared : bool
        One precision for all components ('tied').
    family : {'wishart', 'gamma'}
        The distribution of the precision.
    scale_inverse_rank : int
        Number of feature axes of one factor's Psi: 2, 1 or 0.
    """

    name: str
    shared: bool
    family: str
    scale_inverse_rank: int

    def n_factors(self, n_components):
        """Number of precision factors: 1 when shared, else n_components."""
        return 1 if self.shared else n_components

    def feature_shape(self, n_features):
        """The feature axes of one factor's Psi (and of the prior's Psi0)."""
        return (n_features,) * self.scale_inverse_rank

    def prior_scale_shape(self, n_features):
        """Shape of Psi0 and of `covariance_prior_`."""
        return self.feature_shape(n_features)

    def scale_inverse_shape(self, n_components, n_features):
        """Shape of the posterior Psi: one leading axis of factors."""
        return (self.n_factors(n_components),) + self.feature_shape(n_features)

    def second_moment_shape(self, n_components, n_features):
        """Shape of `Statistics.second_moment`, the same as the posterior Psi."""
        return self.scale_inverse_shape(n_components, n_features)

    def covariances_shape(self, n_components, n_features):
        """Shape of scikit-learn's `covariances_`: tied drops its factor axis."""
        shape = self.scale_inverse_shape(n_components, n_features)
        return shape[1:] if self.shared else shape

    def observations_per_precision(self, n_features):
        """Squared deviations one point contributes to one Gamma precision.

        A spherical precision is shared by D dimensions, so its Gamma has shape
        D nu / 2 and rate D Psi / 2.
        """
        return n_features if self.name == "spherical" else 1

    def covariances(self, degrees_of_freedom, scale_inverse):
        """covariances_ = Psi / nu, in scikit-learn's shape.

        Parameters
        ----------
        degrees_of_freedom : ndarray of shape (n_factors,)
        scale_inverse : ndarray of shape `scale_inverse_shape`

        Returns
        -------
        covariances : ndarray of shape `covariances_shape`
        """
        nu = np.asarray(degrees_of_freedom)
        nu = nu.reshape(nu.shape + (1,) * self.scale_inverse_rank)
        covariances = scale_inverse / nu
        return covariances[0] if self.shared else covariances

    def scale_inverse(self, degrees_of_freedom, covariances):
        """Psi = nu covariances_, the inverse of `covariances`.

        Returns
        -------
        scale_inverse : ndarray of shape `scale_inverse_shape`
        """
        nu = np.atleast_1d(degrees_of_freedom)
        if self.shared:
            covariances = np.asarray(covariances)[None]
        return covariances * nu.reshape(nu.shape + (1,) * self.scale_inverse_rank)

    def student_degrees_of_freedom(self, degrees_of_freedom, n_features):
        """Degrees of freedom of each component's predictive Student-t.

        nu + 1 - D for a Wishart, nu for one Gamma per dimension, D nu for a
        Gamma shared by D dimensions.
        """
        nu = np.asarray(degrees_of_freedom, dtype=np.float64)
        if self.family == "wishart":
            return nu + 1.0 - n_features
        return self.observations_per_precision(n_features) * nu


COVARIANCE_STRUCTURES = {
    "full": CovarianceStructure("full", False, "wishart", 2),
    "tied": CovarianceStructure("tied", True, "wishart", 2),
    "diag": CovarianceStructure("diag", False, "gamma", 1),
    "spherical": CovarianceStructure("spherical", False, "gamma", 0),
}
