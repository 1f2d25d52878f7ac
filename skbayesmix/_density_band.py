"""NumPy maths for density bands: theta ~ q(theta) and quantiles of p(x | theta)."""

from typing import NamedTuple

import numpy as np
from sklearn.utils import check_random_state, gen_batches

from skbayesmix._gaussian import (
    _CHUNK_BYTES,
    _compute_log_det_cholesky,
    _compute_precision_cholesky,
)

_LOG_2PI = np.log(2.0 * np.pi)


class FittedPosterior(NamedTuple):
    """The variational posterior q(theta), read from a fitted estimator.

    Arrays are float64 whatever the estimator's dtype, so that draws of nearly
    singular precisions stay positive definite.

    Attributes
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weight_concentration_prior_type : {'dirichlet_process', \
            'dirichlet_distribution'}
    weight_concentration : ndarray of shape (n_components,) or tuple of two
        Dirichlet concentrations, or the (a, b) parameters of the K Beta sticks.
    mean_precision : ndarray of shape (n_components,)
        beta_k, with mu_k | Lambda_k ~ N(means_k, (beta_k Lambda_k)^-1).
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        ``covariances_``, the inverse of E[Lambda_k]; shaped by covariance type.
    degrees_of_freedom : ndarray of shape (n_components,)
        nu_k; for 'tied' the one shared value, repeated.
    dtype : numpy.dtype
        The dtype of the fitted attributes, which predictions keep.
    """

    covariance_type: str
    weight_concentration_prior_type: str
    weight_concentration: object
    mean_precision: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    degrees_of_freedom: np.ndarray
    dtype: np.dtype


class ParameterDraws(NamedTuple):
    """Draws theta_s ~ q(theta) in the form the Gaussian log density needs.

    Each precision is Lambda_sk = F_sk @ F_sk.T; F_sk need not be triangular.

    Attributes
    ----------
    log_weights : ndarray of shape (n_draws, n_components)
    means : ndarray of shape (n_draws, n_components, n_features)
    precision_factors : ndarray of shape (n_draws, n_components, n_features, \
            n_features), or (n_draws, n_components, n_features) when diagonal
    log_det_precision_factors : ndarray of shape (n_draws, n_components)
        log |det F_sk| = 0.5 * log det Lambda_sk.
    """

    log_weights: np.ndarray
    means: np.ndarray
    precision_factors: np.ndarray
    log_det_precision_factors: np.ndarray


def fitted_posterior(estimator):
    """Collect the variational posterior of a fitted VariationalGaussianMixture.

    Parameters
    ----------
    estimator : VariationalGaussianMixture
        A fitted estimator.

    Returns
    -------
    posterior : FittedPosterior
        Float64 copies of its posterior attributes.
    """
    weight_concentration = estimator.weight_concentration_
    if isinstance(weight_concentration, tuple):
        weight_concentration = tuple(
            np.asarray(c, dtype=np.float64) for c in weight_concentration
        )
    else:
        weight_concentration = np.asarray(weight_concentration, dtype=np.float64)
    means = np.asarray(estimator.means_, dtype=np.float64)
    return FittedPosterior(
        covariance_type=estimator.covariance_type,
        weight_concentration_prior_type=estimator.weight_concentration_prior_type,
        weight_concentration=weight_concentration,
        mean_precision=np.asarray(estimator.mean_precision_, dtype=np.float64),
        means=means,
        covariances=np.asarray(estimator.covariances_, dtype=np.float64),
        degrees_of_freedom=np.broadcast_to(
            np.asarray(estimator.degrees_of_freedom_, dtype=np.float64),
            means.shape[:1],
        ),
        dtype=np.asarray(estimator.means_).dtype,
    )


# ------------------------------------------------------------------------------
# Weights: one function per weight prior type
# ------------------------------------------------------------------------------


def _draw_dirichlet_log_weights(rng, concentration, n_draws):
    """Draw log pi ~ log Dirichlet(concentration).

    Normalised Gamma draws, in log space so that components with tiny
    concentrations give -inf rather than NaN.

    Parameters
    ----------
    rng : numpy.random.RandomState
    concentration : ndarray of shape (n_components,)
    n_draws : int

    Returns
    -------
    log_weights : ndarray of shape (n_draws, n_components)
    """
    gammas = rng.standard_gamma(concentration, size=(n_draws, concentration.shape[0]))
    with np.errstate(divide="ignore"):
        log_gammas = np.log(gammas)
    return log_gammas - np.log(gammas.sum(axis=1, keepdims=True))


def _draw_stick_breaking_log_weights(rng, concentration, n_draws):
    """Draw log pi from K Beta sticks, truncated at K and renormalised.

    pi_k = v_k prod_{j<k} (1 - v_j) with v_k ~ Beta(a_k, b_k). The mass left
    after the K-th stick is dropped and the K weights renormalised, as
    ``weights_`` renormalises the expected weights over the K sticks.

    Parameters
    ----------
    rng : numpy.random.RandomState
    concentration : tuple of two ndarrays of shape (n_components,)
        The Beta parameters (a, b) of each stick.
    n_draws : int

    Returns
    -------
    log_weights : ndarray of shape (n_draws, n_components)
    """
    concentration_a, concentration_b = concentration
    sticks = rng.beta(
        concentration_a, concentration_b, size=(n_draws, concentration_a.shape[0])
    )
    with np.errstate(divide="ignore"):
        log_sticks = np.log(sticks)  # [S, K]
        log_rests = np.log1p(-sticks)  # [S, K]
    # An exclusive cumsum: a stick of exactly 1 makes later rests -inf, and
    # subtracting from an inclusive one would give -inf - -inf = NaN.
    log_rest_before = np.zeros_like(log_rests)
    log_rest_before[:, 1:] = np.cumsum(log_rests[:, :-1], axis=1)
    log_weights = log_sticks + log_rest_before
    return log_weights - _logsumexp_last(log_weights)[:, None]


_LOG_WEIGHT_DRAWS = {
    "dirichlet_distribution": _draw_dirichlet_log_weights,
    "dirichlet_process": _draw_stick_breaking_log_weights,
}


# ------------------------------------------------------------------------------
# Precisions: one function per covariance type
# ------------------------------------------------------------------------------
#
# Every precision posterior is E[Lambda] scaled by a random matrix of mean I:
#
#   Lambda = U @ (R @ R.T) @ U.T,   U @ U.T = E[Lambda] = inv(covariances_)
#
#   'full', 'tied'  R R^T ~ Wishart(nu, I / nu)    (Bartlett factor R)
#   'diag'          r_d^2 ~ chi2(nu) / nu          (Gamma(nu/2, rate Psi_d/2))
#   'spherical'     r^2 ~ chi2(D nu) / (D nu)      (Gamma(D nu/2, rate D Psi/2))
#
# so each type only draws R, and U comes from _compute_precision_cholesky.


def _draw_bartlett_factors(rng, degrees_of_freedom, n_draws, n_features):
    """Draw lower-triangular R with R @ R.T ~ Wishart(nu, I / nu) (Bartlett).

    Parameters
    ----------
    rng : numpy.random.RandomState
    degrees_of_freedom : ndarray of shape (n_matrices,)
    n_draws : int
    n_features : int

    Returns
    -------
    factors : ndarray of shape (n_draws, n_matrices, n_features, n_features)
    """
    n_matrices = degrees_of_freedom.shape[0]
    shape = (n_draws, n_matrices, n_features, n_features)
    factors = np.tril(rng.standard_normal(size=shape), k=-1)
    # The i-th diagonal entry of the Bartlett factor is sqrt(chi2(nu - i)).
    chi2_df = degrees_of_freedom[:, None] - np.arange(n_features)  # [M, D]
    diagonal = np.sqrt(rng.chisquare(chi2_df, size=(n_draws, n_matrices, n_features)))
    factors[..., np.arange(n_features), np.arange(n_features)] = diagonal
    return factors / np.sqrt(degrees_of_freedom)[:, None, None]


def _draw_full_precision_scales(rng, posterior, n_draws):
    """R per component, with R R^T ~ Wishart(nu_k, I / nu_k).

    Returns
    -------
    scales : ndarray of shape (n_draws, n_components, n_features, n_features)
    """
    n_features = posterior.means.shape[1]
    return _draw_bartlett_factors(
        rng, posterior.degrees_of_freedom, n_draws, n_features
    )


def _draw_tied_precision_scales(rng, posterior, n_draws):
    """One R shared by all components, with R R^T ~ Wishart(nu, I / nu).

    Returns
    -------
    scales : ndarray of shape (n_draws, n_components, n_features, n_features)
    """
    n_components, n_features = posterior.means.shape
    shared = _draw_bartlett_factors(
        rng, posterior.degrees_of_freedom[:1], n_draws, n_features
    )
    return np.broadcast_to(shared, (n_draws, n_components, n_features, n_features))


def _draw_diag_precision_scales(rng, posterior, n_draws):
    """r_kd with r_kd^2 ~ chi2(nu_k) / nu_k, one per component and feature.

    Returns
    -------
    scales : ndarray of shape (n_draws, n_components, n_features)
    """
    nu = posterior.degrees_of_freedom[:, None]  # [K, 1]
    shape = (n_draws,) + posterior.means.shape
    return np.sqrt(rng.chisquare(np.broadcast_to(nu, shape[1:]), size=shape) / nu)


def _draw_spherical_precision_scales(rng, posterior, n_draws):
    """r_k with r_k^2 ~ chi2(D nu_k) / (D nu_k), repeated over the features.

    Returns
    -------
    scales : ndarray of shape (n_draws, n_components, n_features)
    """
    n_components, n_features = posterior.means.shape
    chi2_df = n_features * posterior.degrees_of_freedom  # [K]
    scales = np.sqrt(rng.chisquare(chi2_df, size=(n_draws, n_components)) / chi2_df)
    return np.broadcast_to(scales[:, :, None], (n_draws, n_components, n_features))


_PRECISION_SCALE_DRAWS = {
    "full": _draw_full_precision_scales,
    "tied": _draw_tied_precision_scales,
    "diag": _draw_diag_precision_scales,
    "spherical": _draw_spherical_precision_scales,
}


def _expected_precision_factors(posterior):
    """U_k with U_k @ U_k.T = E[Lambda_k], and log |det U_k|, per component.

    Returns
    -------
    factors : ndarray of shape (n_components, n_features, n_features) or \
            (n_components, n_features)
        Matrices for 'full' and 'tied', diagonals for 'diag' and 'spherical'.

    log_det : ndarray of shape (n_components,)
    """
    n_components, n_features = posterior.means.shape
    precisions_cholesky = _compute_precision_cholesky(
        posterior.covariances, posterior.covariance_type
    )
    log_det = np.broadcast_to(
        _compute_log_det_cholesky(
            precisions_cholesky, posterior.covariance_type, n_features
        ),
        (n_components,),
    )
    if posterior.covariance_type in ("full", "tied"):
        shape = (n_components, n_features, n_features)
    else:
        if posterior.covariance_type == "spherical":
            precisions_cholesky = precisions_cholesky[:, None]
        shape = (n_components, n_features)
    return np.broadcast_to(precisions_cholesky, shape), log_det


def draw_parameters(posterior, n_draws, rng):
    """Draw weights, means and precisions theta_s ~ q(theta).

    Under the mean-field posterior q(pi) prod_k q(mu_k | Lambda_k) q(Lambda_k)::

        Lambda_k = F_k F_k^T,  F_k = U_k R_k           (see the table above)
        mu_k = means_k + F_k^-T z / sqrt(beta_k),  z ~ N(0, I)

    so that Cov(mu_k | Lambda_k) = (beta_k Lambda_k)^-1.

    Parameters
    ----------
    posterior : FittedPosterior
        The fitted variational posterior.

    n_draws : int
        Number of draws S.

    rng : numpy.random.RandomState
        Source of randomness.

    Returns
    -------
    draws : ParameterDraws
        Float64 draws.
    """
    covariance_type = posterior.covariance_type
    log_weights = _LOG_WEIGHT_DRAWS[posterior.weight_concentration_prior_type](
        rng, posterior.weight_concentration, n_draws
    )
    expected_factors, log_det_expected = _expected_precision_factors(posterior)
    scales = _PRECISION_SCALE_DRAWS[covariance_type](rng, posterior, n_draws)
    z = rng.standard_normal(size=(n_draws,) + posterior.means.shape)  # [S, K, D]
    inv_sqrt_beta = 1.0 / np.sqrt(posterior.mean_precision)[:, None]  # [K, 1]
    if scales.ndim == 4:
        factors = expected_factors @ scales  # [S, K, D, D]
        log_det_scales = np.log(np.diagonal(scales, axis1=2, axis2=3)).sum(axis=2)
        offsets = np.linalg.solve(np.swapaxes(factors, 2, 3), z[..., None])[..., 0]
    else:
        factors = expected_factors * scales  # [S, K, D]
        log_det_scales = np.log(scales).sum(axis=2)
        offsets = z / factors
    return ParameterDraws(
        log_weights=log_weights,
        means=posterior.means + offsets * inv_sqrt_beta,
        precision_factors=factors,
        log_det_precision_factors=log_det_expected + log_det_scales,
    )


# ------------------------------------------------------------------------------
# Densities under the draws
# ------------------------------------------------------------------------------


def _logsumexp_last(a):
    """logsumexp over the last axis, in place on a copy-free max shift.

    scipy's logsumexp costs several times more on the many short rows here.

    Parameters
    ----------
    a : ndarray of shape (..., n)

    Returns
    -------
    out : ndarray of shape (...)
    """
    a_max = np.max(a, axis=-1, keepdims=True)
    # Rows of -inf would give -inf - -inf = NaN.
    a_max[~np.isfinite(a_max)] = 0.0
    out = np.log(np.sum(np.exp(a - a_max), axis=-1))
    out += a_max[..., 0]
    return out


def _log_density_under_draws(X, draws):
    """Compute log p(x | theta_s) of each row under each draw.

    p(x | theta_s) = sum_k pi_sk N(x | mu_sk, Lambda_sk^-1), with::

        log N = -D/2 log(2 pi) + log |det F_sk| - 1/2 ||(x - mu_sk) @ F_sk||^2

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        One chunk of rows.

    draws : ParameterDraws
        Draws already cast to the dtype of `X`.

    Returns
    -------
    log_density : ndarray of shape (n_samples, n_draws)
    """
    n_samples, n_features = X.shape
    n_draws, n_components = draws.log_weights.shape
    factors = draws.precision_factors
    if factors.ndim == 4:
        # One product for every draw and component; X @ F - mu @ F, as in
        # scikit-learn, trades cancellation far from the means for speed.
        stacked = np.moveaxis(factors, 2, 0).reshape(n_features, -1)  # [D, S*K*D]
        y = X @ stacked  # [n, S*K*D]
        y -= np.einsum("ski,skij->skj", draws.means, factors).ravel()
        y = y.reshape(n_samples, n_draws, n_components, n_features)
    else:
        y = X[:, None, None, :] - draws.means  # [n, S, K, D]
        y *= factors
    half_mahalanobis = np.einsum("nskd,nskd->nsk", y, y)  # [n, S, K]
    half_mahalanobis *= -0.5
    log_norm = (
        draws.log_weights
        + draws.log_det_precision_factors
        - 0.5 * n_features * _LOG_2PI
    )  # [S, K]
    half_mahalanobis += log_norm.astype(X.dtype)
    return _logsumexp_last(half_mahalanobis)


def _band_chunk_n_rows(n_draws, n_components, n_features, itemsize):
    """Rows per chunk so that the (rows, S, K, D) temporary holds _CHUNK_BYTES.

    Unlike the predictive's chunks there is no floor of many rows: a row here
    is S times larger, and a floor would let memory grow with n_draws.

    Returns
    -------
    n_rows : int
    """
    row_bytes = n_draws * n_components * n_features * itemsize
    return max(1, _CHUNK_BYTES // row_bytes)


def log_density_quantiles(X, posterior, level, n_draws, random_state):
    """Pointwise quantiles of log p(x | theta) over theta ~ q(theta).

    The band at `level` is [Q((1 - level) / 2), Q((1 + level) / 2)] of the S
    values log p(x | theta_s), the same S draws for every row of `X`. The
    parameters are drawn once; rows are then processed in chunks, so memory is
    the output plus about `_CHUNK_BYTES` per temporary whatever `n_samples`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated input, float64 or float32.

    posterior : FittedPosterior
        The fitted variational posterior.

    level : float
        Credible level, in (0, 1).

    n_draws : int
        Number of draws S from q(theta), at least 2.

    random_state : int, RandomState instance or None
        Seeds the draws.

    Returns
    -------
    lower, upper : ndarray of shape (n_samples,)
        Log densities in ``np.result_type(X, posterior.dtype)``, as
        ``score_samples`` returns them.
    """
    rng = check_random_state(random_state)
    dtype = np.result_type(X, posterior.dtype)
    X = X.astype(dtype, copy=False)
    draws = draw_parameters(posterior, n_draws, rng)
    draws = ParameterDraws(*(np.ascontiguousarray(d, dtype=dtype) for d in draws))
    quantile_levels = [0.5 * (1.0 - level), 0.5 * (1.0 + level)]
    n_samples = X.shape[0]
    lower = np.empty(n_samples, dtype=dtype)
    upper = np.empty(n_samples, dtype=dtype)
    n_rows = _band_chunk_n_rows(n_draws, *posterior.means.shape, dtype.itemsize)
    with np.errstate(under="ignore"):
        for rows in gen_batches(n_samples, n_rows):
            log_density = _log_density_under_draws(X[rows], draws)  # [n, S]
            lower[rows], upper[rows] = np.quantile(log_density, quantile_levels, axis=1)
    return lower, upper


def check_band_parameters(level, n_draws):
    """Raise a ValueError unless 0 < level < 1 and n_draws is an int >= 2."""
    if not (isinstance(level, (int, float, np.floating)) and 0.0 < level < 1.0):
        raise ValueError(f"level must be a float in (0, 1), got {level!r}.")
    if not (isinstance(n_draws, (int, np.integer)) and n_draws >= 2):
        raise ValueError(f"n_draws must be an int >= 2, got {n_draws!r}.")
