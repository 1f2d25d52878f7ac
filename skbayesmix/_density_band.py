"""NumPy maths for density bands: theta ~ q(theta) and quantiles of p(x | theta)."""

from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp
from sklearn.utils import check_random_state, gen_batches

from skbayesmix._gaussian import (
    _CHUNK_BYTES,
    _compute_log_det_cholesky,
    _compute_precision_cholesky,
    _missing_block_terms,
    _missing_rows_of,
    _rows_by_n_missing,
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
    return log_weights - logsumexp(log_weights, axis=1, keepdims=True)


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
    log_det = _compute_log_det_cholesky(
        precisions_cholesky, posterior.covariance_type, n_features
    )
    # 'tied' has one matrix and 'spherical' one scalar per component; both are
    # broadcast to the shapes the other types have.
    shape = {
        "full": (n_components, n_features, n_features),
        "tied": (n_components, n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components, n_features),
    }[posterior.covariance_type]
    if posterior.covariance_type == "spherical":
        precisions_cholesky = precisions_cholesky[:, None]
    return (
        np.broadcast_to(precisions_cholesky, shape),
        np.broadcast_to(log_det, (n_components,)),
    )


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


class QuadraticLogDensity(NamedTuple):
    """log pi_sk N(x | mu_sk, Lambda_sk^-1) as a quadratic form in x - centres_k.

    With c = x - centres_k and delta_sk = mu_sk - centres_k::

        log pi_sk N(x | mu_sk, Lambda_sk^-1)
            = const_sk + c^T Lambda_sk delta_sk - 1/2 c^T Lambda_sk c
        const_sk = log pi_sk + log |det F_sk| - D/2 log(2 pi)
                   - 1/2 delta_sk^T Lambda_sk delta_sk

    so the log densities of a chunk of rows under all draws are one batched
    product of its quadratic features with `coefficients`, with no temporary
    of n_features times the output's size. Centring each component at its
    posterior mean keeps delta small, so the expansion does not cancel.

    Attributes
    ----------
    centres : ndarray of shape (n_components, n_features)
        The posterior means, ``means_``.
    coefficients : ndarray of shape (n_components, n_terms, n_draws)
        Coefficients of the features of :func:`_quadratic_features`.
    diagonal : bool
        Whether the precisions are diagonal, so that only the squares c_d^2
        enter the quadratic part.
    """

    centres: np.ndarray
    coefficients: np.ndarray
    diagonal: bool


def _quadratic_features(centred, diagonal):
    """Compute the monomials of a quadratic form: c_i c_j (i <= j), c_i and 1.

    Parameters
    ----------
    centred : ndarray of shape (n_components, n_samples, n_features)
        x - centres_k for each component.

    diagonal : bool
        Keep only the squares c_i^2 of the second-order terms.

    Returns
    -------
    features : ndarray of shape (n_components, n_samples, n_terms)
        n_terms is 2 D + 1 when `diagonal`, else D (D + 1) / 2 + D + 1.
    """
    if diagonal:
        second_order = np.square(centred)
    else:
        rows, cols = np.triu_indices(centred.shape[2])
        second_order = centred[..., rows] * centred[..., cols]
    ones = np.ones(centred.shape[:2] + (1,), dtype=centred.dtype)
    return np.concatenate([second_order, centred, ones], axis=2)


def quadratic_log_density(draws, centres):
    """Collect the coefficients of each draw's weighted log densities.

    Parameters
    ----------
    draws : ParameterDraws
        Output of :func:`draw_parameters`.

    centres : ndarray of shape (n_components, n_features)
        Where to centre each component's quadratic form, its posterior mean.

    Returns
    -------
    quadratic : QuadraticLogDensity
        Float64 coefficients.
    """
    n_features = centres.shape[1]
    factors = draws.precision_factors
    delta = draws.means - centres  # [S, K, D]
    diagonal = factors.ndim == 3
    if diagonal:
        precision_diagonal = np.square(factors)  # [S, K, D]
        second_order = -0.5 * precision_diagonal
        linear = precision_diagonal * delta
    else:
        precisions = factors @ np.swapaxes(factors, 2, 3)  # [S, K, D, D]
        rows, cols = np.triu_indices(n_features)
        # c_i c_j appears twice in c^T Lambda c when i != j.
        second_order = precisions[..., rows, cols] * np.where(rows == cols, -0.5, -1)
        linear = np.einsum("skij,skj->ski", precisions, delta)
    constant = (
        draws.log_weights
        + draws.log_det_precision_factors
        - 0.5 * n_features * _LOG_2PI
        - 0.5 * np.einsum("ski,ski->sk", delta, linear)
    )  # [S, K]
    coefficients = np.concatenate(
        [second_order, linear, constant[..., None]], axis=2
    )  # [S, K, n_terms]
    return QuadraticLogDensity(
        centres=centres,
        coefficients=np.ascontiguousarray(np.transpose(coefficients, (1, 2, 0))),
        diagonal=diagonal,
    )


def _log_density_under_draws(X, quadratic):
    """Compute log p(x | theta_s) of each row under each draw.

    p(x | theta_s) = sum_k pi_sk N(x | mu_sk, Lambda_sk^-1), the sum done as a
    logsumexp over the components, which are the leading axis so that NumPy
    reduces whole contiguous rows.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        One chunk of float64 rows.

    quadratic : QuadraticLogDensity
        Output of :func:`quadratic_log_density`.

    Returns
    -------
    log_density : ndarray of shape (n_samples, n_draws)
    """
    centred = X[None, :, :] - quadratic.centres[:, None, :]  # [K, n, D]
    features = _quadratic_features(centred, quadratic.diagonal)  # [K, n, n_terms]
    weighted_log_prob = features @ quadratic.coefficients  # [K, n, S]
    max_log_prob = np.max(weighted_log_prob, axis=0)  # [n, S]
    # Where every component is -inf, shifting by -inf would give NaN.
    max_log_prob[~np.isfinite(max_log_prob)] = 0.0
    weighted_log_prob -= max_log_prob
    np.exp(weighted_log_prob, out=weighted_log_prob)
    log_density = np.sum(weighted_log_prob, axis=0)  # [n, S]
    with np.errstate(divide="ignore"):
        np.log(log_density, out=log_density)
    log_density += max_log_prob
    return log_density


def _log_marginal_density_under_draws(X, draws):
    """Compute log p(x_o | theta_s) of each row's observed features o.

    The marginal of a Gaussian mixture over o is the mixture of the marginals
    N(x_o | mu_sk,o, inv(Lambda_sk)_oo). With c = x - mu_sk set to 0 on the
    missing features m and y = c @ F_sk, :func:`_missing_block_terms` gives
    both terms of each marginal without inverting Lambda_sk::

        log N(x_o) = log |det F_sk| - 1/2 log det(Lambda_sk,mm) - d_o/2 log(2 pi)
                     - 1/2 (||y||^2 - u^T inv(Lambda_sk,mm) u)

    The marginal's precision depends on the pattern of m, so the expansion of
    :class:`QuadraticLogDensity`, whose coefficients are shared by all rows,
    does not apply; rows are batched by their number of missing features
    instead, so that no Python loop runs over rows or patterns.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Float64 rows with NaN at missing features and no inf.

    draws : ParameterDraws
        Output of :func:`draw_parameters`.

    Returns
    -------
    log_density : ndarray of shape (n_samples, n_draws)
        0 for a row with no observed feature.
    """
    n_samples, n_features = X.shape
    n_draws, n_components = draws.log_weights.shape
    factors = draws.precision_factors
    diagonal = factors.ndim == 3
    missing = np.isnan(X)  # [n, D]
    log_density = np.zeros((n_samples, n_draws))
    row_bytes = n_draws * n_components * n_features * 8
    for rows, missing_index in _rows_by_n_missing(missing, row_bytes):
        n_missing = missing_index.shape[1]
        if n_missing == n_features:
            continue  # the marginal over no feature has density 1
        is_missing = missing[rows][:, None, None, :]  # [n, 1, 1, D]
        centred = np.where(is_missing, 0.0, X[rows][:, None, None, :] - draws.means)
        if diagonal:
            y = centred * factors  # [n, S, K, D]
            log_det = np.where(is_missing, 0.0, np.log(factors)).sum(axis=3)
            quadratic = np.einsum("nskd,nskd->nsk", y, y)  # [n, S, K]
        else:
            y = np.einsum("nskd,skde->nske", centred, factors)  # [n, S, K, D]
            factor_rows = _missing_rows_of(
                factors.reshape(-1, n_features, n_features), missing_index
            ).reshape(rows.shape[0], n_draws, n_components, n_missing, n_features)
            projected, log_det_missing = _missing_block_terms(factor_rows, y)
            quadratic = np.einsum("nskd,nskd->nsk", y, y) - projected  # [n, S, K]
            # The Schur complement is >= 0; rounding may take it just below.
            np.maximum(quadratic, 0.0, out=quadratic)
            log_det = draws.log_det_precision_factors - 0.5 * log_det_missing
        n_observed = n_features - n_missing
        weighted_log_prob = (
            draws.log_weights + log_det - 0.5 * n_observed * _LOG_2PI - 0.5 * quadratic
        )  # [n, S, K]
        log_density[rows] = logsumexp(weighted_log_prob, axis=2)
    return log_density


def _band_chunk_n_rows(n_components, n_terms, n_draws):
    """Rows per chunk so that each float64 temporary holds about _CHUNK_BYTES.

    The largest are the (K, rows, S) log densities and the (K, rows, n_terms)
    features. Unlike the predictive's chunks there is no floor of many rows: a
    row here is S times larger, and a floor would let memory grow with n_draws.

    Returns
    -------
    n_rows : int
    """
    return max(1, _CHUNK_BYTES // (n_components * max(n_terms, n_draws) * 8))


def log_density_quantiles(X, posterior, level, n_draws, random_state):
    """Pointwise quantiles of log p(x | theta) over theta ~ q(theta).

    The band at `level` is [Q((1 - level) / 2), Q((1 + level) / 2)] of the S
    values log p(x | theta_s), the same S draws for every row of `X`. The
    parameters are drawn once; rows are then processed in chunks, so memory is
    the output plus about `_CHUNK_BYTES` per temporary whatever `n_samples`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated input, float64 or float32; NaN marks a missing feature, over
        which each draw's mixture is marginalised.

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
    draws = draw_parameters(posterior, n_draws, rng)
    quadratic = quadratic_log_density(draws, posterior.means)
    quantile_levels = [0.5 * (1.0 - level), 0.5 * (1.0 + level)]
    n_samples = X.shape[0]
    lower = np.empty(n_samples, dtype=dtype)
    upper = np.empty(n_samples, dtype=dtype)
    n_rows = _band_chunk_n_rows(*quadratic.coefficients.shape)
    with np.errstate(under="ignore"):
        for rows in gen_batches(n_samples, n_rows):
            # float64 whatever X's dtype: the expanded quadratic form cancels
            # along the narrow axis of a nearly singular covariance.
            X_rows = X[rows].astype(np.float64)
            log_density = _log_density_under_draws(X_rows, quadratic)  # [n, S]
            incomplete = np.isnan(X_rows).any(axis=1)  # [n]
            if incomplete.any():
                log_density[incomplete] = _log_marginal_density_under_draws(
                    X_rows[incomplete], draws
                )
            lower[rows], upper[rows] = np.quantile(log_density, quantile_levels, axis=1)
    return lower, upper


def check_band_parameters(level, n_draws):
    """Raise a ValueError unless 0 < level < 1 and n_draws is an int >= 2."""
    if not (isinstance(level, (int, float, np.floating)) and 0.0 < level < 1.0):
        raise ValueError(f"level must be a float in (0, 1), got {level!r}.")
    if not (isinstance(n_draws, (int, np.integer)) and n_draws >= 2):
        raise ValueError(f"n_draws must be an int >= 2, got {n_draws!r}.")
