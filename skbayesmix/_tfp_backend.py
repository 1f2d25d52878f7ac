"""TensorFlow Probability backend: priors, variational posterior, ELBO, CAVI loop."""

# This is the only module of the package that imports TensorFlow. The estimator
# hands it NumPy arrays and receives NumPy arrays back.
#
# Model (the same generative model as sklearn's BayesianGaussianMixture):
#
#   pi ~ Dirichlet(alpha0)  or  pi_k = v_k prod_{j<k} (1 - v_j), v_k ~ Beta(1, alpha0)
#   Lambda_k ~ Wishart(nu0, Psi0^-1)                  (full; one shared for tied)
#   lambda_kd ~ Gamma(nu0 / 2, Psi0_d / 2)             (diag)
#   lambda_k ~ Gamma(D nu0 / 2, D Psi0 / 2)            (spherical)
#   mu_k | Lambda_k ~ Normal(m0, (beta0 Lambda_k)^-1)
#   z_n ~ Categorical(pi),  x_n | z_n = k ~ Normal(mu_k, Lambda_k^-1)
#
# The mean-field posterior q(z) q(pi) prod_k q(mu_k | Lambda_k) q(Lambda_k) has the
# same families as the prior. Coordinate ascent on it (CAVI) is a natural-gradient
# step of size one, so in full batch no iteration can decrease the ELBO.
#
# `reg_covar` follows sklearn: each point adds `reg_covar * I` to the scatter of the
# components it belongs to. Formally each point is a tiny Gaussian blob of covariance
# `reg_covar * I`, whose expected log likelihood carries the extra term
# `-0.5 * reg_covar * E[tr Lambda_k]`. Keeping that term in the E-step and the ELBO
# keeps the updates exact coordinate ascent, hence the ELBO monotone.

import collections
import functools
import math
import threading

import numpy as np

from skbayesmix._tf_quiet import import_tensorflow

# Without TF's start-up lines on stderr, see _tf_quiet; the environment is left alone.
tf, tfp = import_tensorflow()

tfd = tfp.distributions

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------
# Sufficient statistics
# --------------------------------------------------------------------------------


def _second_order_features(X, covariance_type, outer_products):
    """Per-sample second-order terms, computed once per fit, outside the loop.

    Both the E-step and the statistics are then single GEMMs against them, with no
    (n_samples, n_components, n_features) temporaries.

    Returns
    -------
    features : Tensor or None
        x x^T flattened, (n_samples, n_features**2), for 'full' when
        `outer_products`; x * x, (n_samples, n_features), for 'diag'; ||x||^2,
        (n_samples,), for 'spherical'; None otherwise.
    """
    if covariance_type == "full" and outer_products:
        return tf.reshape(X[:, :, None] * X[:, None, :], [tf.shape(X)[0], -1])
    if covariance_type == "diag":
        return X * X
    if covariance_type == "spherical":
        return tf.reduce_sum(X * X, axis=1)
    return None


def _sufficient_statistics(X, features, sample_weight, resp, covariance_type):
    """Weighted sufficient statistics of one batch under responsibilities `resp`.

    Statistics of several batches add up, which is what minibatch and streaming fits
    need.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
    features : Tensor or None
        `_second_order_features(X, ...)`.
    sample_weight : Tensor of shape (n_samples,)
    resp : Tensor of shape (n_samples, n_components)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    counts : Tensor of shape (n_components,)
        sum_n w_n r_nk.
    first_moment : Tensor of shape (n_components, n_features)
        sum_n w_n r_nk x_n.
    second_moment : Tensor
        sum_n w_n r_nk x_n x_n^T with shape (n_components, n_features,
        n_features) for 'full'; summed over components, (1, n_features,
        n_features) for 'tied'; its diagonal (n_components, n_features) for
        'diag'; its trace (n_components,) for 'spherical'.
    """
    weighted_resp = resp * sample_weight[:, None]  # [n, k]
    counts = tf.reduce_sum(weighted_resp, axis=0)  # [k]
    first_moment = tf.linalg.matmul(weighted_resp, X, transpose_a=True)  # [k, d]
    n_features = tf.shape(X)[1]
    n_components = tf.shape(resp)[1]
    if covariance_type == "full" and features is not None:
        second_moment = tf.reshape(
            tf.linalg.matmul(weighted_resp, features, transpose_a=True),
            [n_components, n_features, n_features],
        )
    elif covariance_type == "full":
        # Too many samples to hold x x^T: one GEMM through an [n, k*d] temporary.
        weighted_x = tf.reshape(
            weighted_resp[:, :, None] * X[:, None, :], [tf.shape(X)[0], -1]
        )
        second_moment = tf.reshape(
            tf.linalg.matmul(weighted_x, X, transpose_a=True),
            [n_components, n_features, n_features],
        )
    elif covariance_type == "tied":
        # Responsibilities sum to one per sample, so the pooled scatter needs no resp.
        second_moment = tf.linalg.matmul(
            X * sample_weight[:, None], X, transpose_a=True
        )
        second_moment = second_moment[None]  # [1, d, d]
    elif covariance_type == "diag":
        second_moment = tf.linalg.matmul(weighted_resp, features, transpose_a=True)
    else:
        second_moment = tf.linalg.matvec(weighted_resp, features, transpose_a=True)
    return counts, first_moment, second_moment


# --------------------------------------------------------------------------------
# Prior and posterior as TFP distributions
# --------------------------------------------------------------------------------


def _weight_distribution(concentration_a, concentration_b, weight_type):
    """q(pi) or p(pi): a Dirichlet, or the K Beta sticks of a Dirichlet process."""
    if weight_type == "dirichlet_process":
        return tfd.Beta(concentration_a, concentration_b)
    return tfd.Dirichlet(concentration_a)


def _expected_log_weights(concentration_a, concentration_b, weight_type):
    """E[log pi_k] under q(pi).

    Returns
    -------
    expected_log_weights : Tensor of shape (n_components,)
    """
    if weight_type == "dirichlet_process":
        digamma_sum = tf.math.digamma(concentration_a + concentration_b)
        log_stick = tf.math.digamma(concentration_a) - digamma_sum
        log_rest = tf.math.digamma(concentration_b) - digamma_sum
        # E[log pi_k] = E[log v_k] + sum_{j<k} E[log(1 - v_j)]
        return log_stick + tf.math.cumsum(log_rest, exclusive=True)
    return tf.math.digamma(concentration_a) - tf.math.digamma(
        tf.reduce_sum(concentration_a)
    )


def _precision_gamma(degrees_of_freedom, scale_inverse, n_features, covariance_type):
    """q(lambda) or p(lambda) for 'diag' and 'spherical' as a TFP Gamma.

    The (shape, rate) parametrisation keeps sklearn's conventions: E[lambda] =
    nu / Psi, so covariances_ = Psi / nu is the inverse expected precision, and the
    updates nu += N_k, Psi += scatter are sklearn's.

    Parameters
    ----------
    degrees_of_freedom : Tensor of shape (n_components,)
    scale_inverse : Tensor of shape (n_components, n_features) for 'diag', \
            (n_components,) for 'spherical'
    n_features : scalar Tensor
    covariance_type : {'diag', 'spherical'}
    """
    if covariance_type == "diag":
        return tfd.Gamma(
            concentration=0.5 * degrees_of_freedom[..., None],
            rate=0.5 * scale_inverse,
        )
    # One precision shared by D dimensions sees D squared deviations per point.
    return tfd.Gamma(
        concentration=0.5 * n_features * degrees_of_freedom,
        rate=0.5 * n_features * scale_inverse,
    )


def _wishart(degrees_of_freedom, scale_inverse_chol):
    """Wishart(nu, Psi^-1) as a TFP distribution, from the Cholesky factor of Psi."""
    n_features = tf.shape(scale_inverse_chol)[-1]
    identity = tf.eye(
        n_features,
        batch_shape=tf.shape(scale_inverse_chol)[:-2],
        dtype=scale_inverse_chol.dtype,
    )
    scale = tf.linalg.cholesky_solve(scale_inverse_chol, identity)
    return tfd.WishartTriL(df=degrees_of_freedom, scale_tril=tf.linalg.cholesky(scale))


def _log_multivariate_gamma(a, n_features):
    """log Gamma_D(a) = D (D - 1) / 4 log(pi) + sum_{i<D} log Gamma(a - i / 2)."""
    i = tf.range(n_features, dtype=a.dtype)
    dims = tf.cast(n_features, a.dtype)
    return 0.25 * dims * (dims - 1.0) * math.log(math.pi) + tf.reduce_sum(
        tf.math.lgamma(a[..., None] - 0.5 * i), axis=-1
    )


def _multivariate_digamma(a, n_features):
    """psi_D(a) = sum_{i<D} psi(a - i / 2)."""
    i = tf.range(n_features, dtype=a.dtype)
    return tf.reduce_sum(tf.math.digamma(a[..., None] - 0.5 * i), axis=-1)


def _log_det_from_chol(chol):
    """log|A| from the lower Cholesky factor of A."""
    return 2.0 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)


def _wishart_kl(df_q, scale_inverse_chol_q, df_p, scale_inverse_chol_p):
    """KL(Wishart(df_q, Psi_q^-1) || Wishart(df_p, Psi_p^-1)).

    TFP registers no KL for the Wishart, so it is written here. With W = Psi^-1::

        KL = (df_q - df_p) / 2 psi_D(df_q / 2)
             - df_p / 2 log|W_p^-1 W_q|
             + df_q / 2 (tr(W_p^-1 W_q) - D)
             + log Gamma_D(df_p / 2) - log Gamma_D(df_q / 2)

    where log|W_p^-1 W_q| = log|Psi_p| - log|Psi_q| and
    tr(W_p^-1 W_q) = tr(Psi_p Psi_q^-1).

    Parameters
    ----------
    df_q : Tensor of shape (n_factors,)
    scale_inverse_chol_q : Tensor of shape (n_factors, n_features, n_features)
    df_p : scalar Tensor
    scale_inverse_chol_p : Tensor of shape (n_features, n_features)

    Returns
    -------
    kl : Tensor of shape (n_factors,)
    """
    n_features = tf.shape(scale_inverse_chol_q)[-1]
    dims = tf.cast(n_features, df_q.dtype)
    log_det_ratio = _log_det_from_chol(scale_inverse_chol_p) - _log_det_from_chol(
        scale_inverse_chol_q
    )
    # tr(Psi_p Psi_q^-1) = ||L_q^-1 L_p||_F^2
    solved = tf.linalg.triangular_solve(
        scale_inverse_chol_q,
        tf.broadcast_to(scale_inverse_chol_p, tf.shape(scale_inverse_chol_q)),
        lower=True,
    )
    trace = tf.reduce_sum(tf.square(solved), axis=[-2, -1])
    return (
        0.5 * (df_q - df_p) * _multivariate_digamma(0.5 * df_q, n_features)
        - 0.5 * df_p * log_det_ratio
        + 0.5 * df_q * (trace - dims)
        + _log_multivariate_gamma(0.5 * df_p, n_features)
        - _log_multivariate_gamma(0.5 * df_q, n_features)
    )


# --------------------------------------------------------------------------------
# Moments of the precision under q
# --------------------------------------------------------------------------------


_PrecisionMoments = collections.namedtuple(
    "_PrecisionMoments",
    ["expected_log_det", "expected_trace", "factor", "inverse_factor"],
)
_PrecisionMoments.__doc__ = """E[log|Lambda|], E[tr Lambda] and a factor for E[Lambda].

`factor` is the lower Cholesky factor of Psi (n_factors, d, d) for full/tied
(E[Lambda] = nu Psi^-1), and E[Lambda] itself, (n_components, d) or
(n_components,), for diag and spherical. `inverse_factor` is L^-1 for full/tied,
and `factor` again for diag and spherical.
"""


def _precision_moments(degrees_of_freedom, scale_inverse, n_features, covariance_type):
    """Moments of the precision matrix under q (or under the prior).

    Parameters
    ----------
    degrees_of_freedom : Tensor of shape (n_factors,)
    scale_inverse : Tensor
        Psi, of shape (n_factors, d, d) for full and tied (n_factors = 1 for
        tied), (n_components, d) for diag, (n_components,) for spherical.
    n_features : scalar int32 Tensor
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    moments : _PrecisionMoments
        expected_log_det and expected_trace have shape (n_factors,).
    """
    nu = degrees_of_freedom
    dims = tf.cast(n_features, nu.dtype)
    if covariance_type in ("full", "tied"):
        chol = tf.linalg.cholesky(scale_inverse)  # [f, d, d]
        # E[log|Lambda|] = psi_D(nu / 2) + D log 2 - log|Psi|
        expected_log_det = (
            _multivariate_digamma(0.5 * nu, n_features)
            + dims * math.log(2.0)
            - _log_det_from_chol(chol)
        )
        identity = tf.eye(n_features, batch_shape=tf.shape(nu), dtype=nu.dtype)
        inv_chol = tf.linalg.triangular_solve(chol, identity, lower=True)
        # tr(Psi^-1) = ||L^-1||_F^2
        expected_trace = nu * tf.reduce_sum(tf.square(inv_chol), axis=[-2, -1])
        return _PrecisionMoments(expected_log_det, expected_trace, chol, inv_chol)
    gamma = _precision_gamma(nu, scale_inverse, dims, covariance_type)
    expected_log = tf.math.digamma(gamma.concentration) - tf.math.log(gamma.rate)
    expected_precision = gamma.mean()  # [k, d] or [k]
    if covariance_type == "diag":
        return _PrecisionMoments(
            tf.reduce_sum(expected_log, axis=-1),
            tf.reduce_sum(expected_precision, axis=-1),
            expected_precision,
            expected_precision,
        )
    return _PrecisionMoments(
        dims * expected_log,
        dims * expected_precision,
        expected_precision,
        expected_precision,
    )


def _expected_mahalanobis(
    X, features, means, degrees_of_freedom, moments, covariance_type
):
    """(x_n - m_k)^T E[Lambda_k] (x_n - m_k) for every sample and component.

    The unblocked E-step (see `_blocked_expected_statistics` for the blocked one).
    'tied' in float64 expands it as x^T A x - 2 x^T A m + m^T A m with
    A = E[Lambda]: the quadratic is shared by every component. The expansion
    cancels badly in float32 when A is ill-conditioned, so float32, and 'full',
    whiten the differences instead: nu ||L^-1 x - L^-1 m||^2, through an
    (n_samples, n_components, n_features) temporary. 'diag' and 'spherical' are
    expanded against the precomputed x * x or ||x||^2 in `features`.

    Returns
    -------
    mahalanobis : Tensor of shape (n_samples, n_components)
    """
    if covariance_type in ("full", "tied"):
        inv_chol = moments.inverse_factor  # [f, d, d], L^-1 with Psi = L L^T
        n_components, n_features = tf.shape(means)[0], tf.shape(means)[1]
        if covariance_type == "tied" and X.dtype == tf.float64:
            # A = nu Psi^-1 = nu L^-T L^-1
            precision = degrees_of_freedom[:, None, None] * tf.linalg.matmul(
                inv_chol, inv_chol, transpose_a=True
            )  # [1, d, d]
            precision_means = tf.linalg.matvec(precision, means)  # [k, d]
            constant = tf.reduce_sum(precision_means * means, axis=1)  # [k]
            cross = tf.linalg.matmul(X, precision_means, transpose_b=True)  # [n, k]
            # One shared A: x^T A x = nu ||L^-1 x||^2 is the same for every k.
            whitened = tf.linalg.matmul(X, inv_chol[0], transpose_b=True)
            quadratic = degrees_of_freedom[0] * tf.reduce_sum(
                tf.square(whitened), axis=1, keepdims=True
            )
            return quadratic - 2.0 * cross + constant[None, :]
        inv_chol = tf.broadcast_to(inv_chol, [n_components, n_features, n_features])
        nu = tf.broadcast_to(degrees_of_freedom, [n_components])
        projected = tf.einsum("nd,ked->nke", X, inv_chol)  # [n, k, d]
        projected_means = tf.einsum("kd,ked->ke", means, inv_chol)  # [k, d]
        return nu * tf.reduce_sum(tf.square(projected - projected_means), axis=-1)
    if covariance_type == "diag":
        precision = moments.factor  # [k, d]
        return (
            tf.linalg.matmul(features, precision, transpose_b=True)
            - 2.0 * tf.linalg.matmul(X, precision * means, transpose_b=True)
            + tf.reduce_sum(precision * means * means, axis=-1)[None, :]
        )
    precision = moments.factor  # [k]
    sq_dist = (
        features[:, None]
        - 2.0 * tf.linalg.matmul(X, means, transpose_b=True)
        + tf.reduce_sum(means * means, axis=1)[None, :]
    )
    return tf.maximum(sq_dist, 0.0) * precision[None, :]


# --------------------------------------------------------------------------------
# Coordinate-ascent updates
# --------------------------------------------------------------------------------


def _update_posterior(stats, prior, reg_covar, covariance_type, weight_type):
    """Closed-form optimum of q(pi) q(mu, Lambda) given the statistics of q(z).

    Parameters
    ----------
    stats : tuple
        (counts, first_moment, second_moment, resp_entropy) as returned by
        `_expected_statistics`.
    prior : tuple
        (weight_concentration, mean_precision, mean [d], degrees_of_freedom,
        scale_inverse) of the prior.

    Returns
    -------
    posterior : tuple
        (concentration_a [k], concentration_b [k], mean_precision [k],
        means [k, d], degrees_of_freedom [f], scale_inverse).
    """
    counts, first_moment, second_moment = stats[:3]
    alpha0, beta0, mean0, nu0, psi0 = prior
    if weight_type == "dirichlet_process":
        concentration_a = 1.0 + counts
        # Beta's second parameter collects the mass of all later components.
        concentration_b = alpha0 + tf.math.cumsum(counts, exclusive=True, reverse=True)
    else:
        concentration_a = alpha0 + counts
        concentration_b = tf.zeros_like(counts)

    mean_precision = beta0 + counts  # [k]
    means = (beta0 * mean0[None, :] + first_moment) / mean_precision[:, None]
    # Empty components would divide 0 by 0; their scatter is 0 whatever xbar is.
    safe_counts = tf.where(counts > 0.0, counts, tf.ones_like(counts))
    xbar = first_moment / safe_counts[:, None]  # [k, d]
    diff = xbar - mean0[None, :]  # [k, d]
    shrink = beta0 * counts / mean_precision  # [k]
    n_features = tf.shape(mean0)[0]

    if covariance_type in ("full", "tied"):
        centred = first_moment[:, :, None] * xbar[:, None, :]  # N_k xbar xbar^T
        mean_term = shrink[:, None, None] * diff[:, :, None] * diff[:, None, :]
        if covariance_type == "full":
            scatter = second_moment - centred + mean_term  # [k, d, d]
            reg_counts = counts[:, None, None]
            nu = nu0 + counts
        else:
            scatter = second_moment - tf.reduce_sum(centred - mean_term, 0)[None]
            reg_counts = tf.reduce_sum(counts)[None, None, None]
            nu = nu0 + tf.reduce_sum(counts)[None]
        identity = tf.eye(n_features, dtype=counts.dtype)
        psi = psi0[None] + scatter + reg_counts * reg_covar * identity[None]
        # Rounding makes the sum slightly asymmetric; Cholesky wants it exact.
        psi = 0.5 * (psi + tf.linalg.matrix_transpose(psi))
    elif covariance_type == "diag":
        scatter = tf.maximum(second_moment - first_moment * xbar, 0.0)
        psi = psi0[None, :] + scatter + shrink[:, None] * tf.square(diff)
        psi += counts[:, None] * reg_covar
        nu = nu0 + counts
    else:
        dims = tf.cast(n_features, counts.dtype)
        scatter = tf.maximum(
            second_moment - tf.reduce_sum(first_moment * xbar, axis=1), 0.0
        )
        psi = psi0 + (scatter + shrink * tf.reduce_sum(tf.square(diff), 1)) / dims
        psi += counts * reg_covar
        nu = nu0 + counts
    return (concentration_a, concentration_b, mean_precision, means, nu, psi)


def _log_rho_offset(posterior, moments, reg_covar, n_features, weight_type):
    """The part of log rho_nk that does not depend on x_n.

    offset_k = E[log pi_k] + E[log|Lambda_k|] / 2 - D log(2 pi) / 2 - D / (2 beta_k)
               - reg_covar E[tr Lambda_k] / 2

    Returns
    -------
    offset : Tensor of shape (n_components,)
    """
    concentration_a, concentration_b, beta = posterior[:3]
    dims = tf.cast(n_features, beta.dtype)
    log_weights = _expected_log_weights(concentration_a, concentration_b, weight_type)
    return (
        log_weights
        + 0.5 * moments.expected_log_det
        - 0.5 * dims * _LOG_2PI
        - 0.5 * dims / beta
        - 0.5 * reg_covar * moments.expected_trace
    )


def _estimate_log_resp(
    X, features, posterior, moments, reg_covar, covariance_type, weight_type
):
    """E-step: log q(z_n = k), the optimum of q(z) given q(pi) q(mu, Lambda).

    log rho_nk = E[log pi_k] + E[log|Lambda_k|] / 2 - D log(2 pi) / 2
                 - (D / beta_k + E[(x_n - mu_k)^T Lambda_k (x_n - mu_k)]) / 2
                 - reg_covar E[tr Lambda_k] / 2
    log r_nk = log rho_nk - logsumexp_k log rho_nk

    Returns
    -------
    log_resp : Tensor of shape (n_samples, n_components)
    """
    means, nu = posterior[3], posterior[4]
    offset = _log_rho_offset(
        posterior, moments, reg_covar, tf.shape(X)[1], weight_type
    )  # [k]
    mahalanobis = _expected_mahalanobis(
        X, features, means, nu, moments, covariance_type
    )
    log_rho = offset[None, :] - 0.5 * mahalanobis  # [n, k]
    return tf.nn.log_softmax(log_rho, axis=1)


def _expected_statistics(X, features, sample_weight, log_resp, covariance_type):
    """Sufficient statistics of q(z) and its weighted entropy -sum w r log r."""
    resp = tf.exp(log_resp)
    stats = _sufficient_statistics(X, features, sample_weight, resp, covariance_type)
    entropy = -tf.reduce_sum(sample_weight[:, None] * resp * log_resp)
    return stats + (entropy,)


# --------------------------------------------------------------------------------
# E-step and statistics over blocks of rows
# --------------------------------------------------------------------------------

# Rows per block: the [block, n_components] temporaries stay in cache, and the
# two GEMMs per block are still large enough to run at full speed.
_BLOCK_SIZE = 4096


def _upper_triangle_indices(n_features):
    """Rows and columns (i <= j) of the upper triangle, in row-major order.

    Returns
    -------
    rows, cols : int32 Tensor of shape (n_features * (n_features + 1) / 2,)
    """
    rows, cols = tf.meshgrid(tf.range(n_features), tf.range(n_features), indexing="ij")
    upper = rows <= cols
    return tf.boolean_mask(rows, upper), tf.boolean_mask(cols, upper)


def _design_features(X, covariance_type):
    """Per-sample features, once per fit, that make both E-step and statistics GEMMs.

    The Mahalanobis distance is linear in them, and the sufficient statistics are
    their responsibility-weighted sums. x x^T is symmetric, so 'full' keeps only
    its upper triangle: D (D + 1) / 2 columns instead of D^2.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
    covariance_type : {'full', 'diag'}

    Returns
    -------
    design : Tensor of shape (n_samples, n_second_order + n_features)
        [x_i x_j for i <= j, x] for 'full', [x * x, x] for 'diag'.
    """
    if covariance_type == "diag":
        return tf.concat([X * X, X], axis=1)
    rows, cols = _upper_triangle_indices(tf.shape(X)[1])
    packed = tf.gather(X, rows, axis=1) * tf.gather(X, cols, axis=1)  # [n, m]
    return tf.concat([packed, X], axis=1)


def _mahalanobis_coefficients(means, degrees_of_freedom, moments, covariance_type):
    """Coefficients c_k and constants b_k with E[maha_nk] = design_n . c_k + b_k.

    (x - m)^T A (x - m) = x^T A x - 2 x^T A m + m^T A m, with A = E[Lambda_k].
    For 'full' the packed x_i x_j (i < j) stand for both x_i x_j and x_j x_i,
    hence the factor 2 off the diagonal.

    Returns
    -------
    coefficients : Tensor of shape (n_components, n_design)
    constant : Tensor of shape (n_components,)
    """
    if covariance_type == "diag":
        precision = moments.factor  # [k, d]
        coefficients = tf.concat([precision, -2.0 * precision * means], axis=1)
        return coefficients, tf.reduce_sum(precision * means * means, axis=1)
    inv_chol = moments.inverse_factor  # [k, d, d], L^-1 with Psi = L L^T
    # A = nu Psi^-1 = nu L^-T L^-1
    precision = degrees_of_freedom[:, None, None] * tf.linalg.matmul(
        inv_chol, inv_chol, transpose_a=True
    )  # [k, d, d]
    n_features = tf.shape(means)[1]
    rows, cols = _upper_triangle_indices(n_features)
    packed = tf.gather(
        tf.reshape(precision, [tf.shape(means)[0], -1]),
        rows * n_features + cols,
        axis=1,
    )  # [k, m]
    packed *= tf.cast(tf.where(rows == cols, 1.0, 2.0), packed.dtype)[None, :]
    precision_means = tf.linalg.matvec(precision, means)  # [k, d]
    coefficients = tf.concat([packed, -2.0 * precision_means], axis=1)
    return coefficients, tf.reduce_sum(precision_means * means, axis=1)


def _block_statistics(design, sample_weight, resp):
    """Weighted sums of one block of rows: they add up over blocks.

    Parameters
    ----------
    design : Tensor of shape (n_block, n_design)
    sample_weight : Tensor of shape (n_block,)
    resp : Tensor of shape (n_block, n_components)

    Returns
    -------
    counts : Tensor of shape (n_components,)
    design_moments : Tensor of shape (n_components, n_design)
        sum_n w_n r_nk design_n.
    """
    weighted_resp = resp * sample_weight[:, None]  # [b, k]
    counts = tf.reduce_sum(weighted_resp, axis=0)
    return counts, tf.linalg.matmul(weighted_resp, design, transpose_a=True)


def _sum_over_blocks(n_samples, statistics_of_block, initial):
    """sum_b statistics_of_block(start_b, size_b) over blocks of _BLOCK_SIZE rows.

    The block count depends on n_samples, known only at run time; the last block
    is ragged.
    """
    n_blocks = (n_samples + _BLOCK_SIZE - 1) // _BLOCK_SIZE

    def add_block(block, totals):
        start = block * _BLOCK_SIZE
        size = tf.minimum(_BLOCK_SIZE, n_samples - start)
        stats = statistics_of_block(start, size)
        return block + 1, tf.nest.map_structure(tf.add, totals, stats)

    _, totals = tf.while_loop(
        lambda block, totals: block < n_blocks,
        add_block,
        (tf.constant(0), initial),
        parallel_iterations=1,
    )
    return totals


def _unpack_statistics(counts, design_moments, n_features, covariance_type):
    """(counts, first_moment, second_moment) from the moments of the design.

    Returns
    -------
    stats : tuple
        As `_sufficient_statistics`: second_moment is (n_components, n_features,
        n_features) for 'full' and (n_components, n_features) for 'diag'.
    """
    n_second_order = tf.shape(design_moments)[1] - n_features
    first_moment = design_moments[:, n_second_order:]  # [k, d]
    second_order = design_moments[:, :n_second_order]  # [k, m]
    if covariance_type == "diag":
        return counts, first_moment, second_order
    rows, cols = _upper_triangle_indices(n_features)
    # Both (i, j) and (j, i) of the square matrix read packed column (i, j).
    position = tf.range(n_second_order)
    index = tf.scatter_nd(
        (rows * n_features + cols)[:, None], position, [n_features * n_features]
    )
    index = tf.tensor_scatter_nd_update(
        index, (cols * n_features + rows)[:, None], position
    )
    second_moment = tf.reshape(
        tf.gather(second_order, index, axis=1), [-1, n_features, n_features]
    )
    return counts, first_moment, second_moment


def _blocked_expected_statistics(
    design,
    design_sum,
    sample_weight,
    posterior,
    moments,
    reg_covar,
    covariance_type,
    weight_type,
):
    """E-step and `_expected_statistics`, one block of rows at a time.

    Per block: log rho = offset - (design @ c^T + b) / 2 (one GEMM), a softmax with
    one exp per element, and design_sum^T @ (w r) (one GEMM). No
    (n_samples, n_components) array is ever held.

    Parameters
    ----------
    design : Tensor of shape (n_samples, n_design)
        `_design_features` in the E-step's dtype.
    design_sum : Tensor of shape (n_samples, n_design)
        The same in float64, for the sums over samples.
    sample_weight : Tensor of shape (n_samples,), float64
    posterior, moments : in the E-step's dtype.

    Returns
    -------
    stats : tuple
        (counts, first_moment, second_moment, resp_entropy) in float64.
    """
    means, nu = posterior[3], posterior[4]
    n_features = tf.shape(means)[1]
    coefficients, constant = _mahalanobis_coefficients(
        means, nu, moments, covariance_type
    )
    offset = _log_rho_offset(posterior, moments, reg_covar, n_features, weight_type)

    def statistics_of_block(start, size):
        design_block = tf.slice(design, [start, 0], [size, -1])
        weight_block = tf.slice(sample_weight, [start], [size])
        # b_k joins the quadratic before the offset, as in _expected_mahalanobis:
        # in float32, folding it into the offset first measurably moved the ELBO.
        mahalanobis = tf.linalg.matmul(design_block, coefficients, transpose_b=True)
        log_rho = offset[None, :] - 0.5 * (mahalanobis + constant[None, :])  # [b, k]
        shift = tf.reduce_max(log_rho, axis=1, keepdims=True)  # [b, 1]
        unnormalised = tf.exp(log_rho - shift)
        total = tf.reduce_sum(unnormalised, axis=1, keepdims=True)
        resp = tf.cast(unnormalised / total, tf.float64)
        log_resp = tf.cast(log_rho - shift - tf.math.log(total), tf.float64)
        counts, design_moments = _block_statistics(
            tf.slice(design_sum, [start, 0], [size, -1]), weight_block, resp
        )
        entropy = -tf.reduce_sum(weight_block[:, None] * resp * log_resp)
        return counts, design_moments, entropy

    n_components = tf.shape(means)[0]
    zeros = tf.zeros([n_components], tf.float64)
    counts, design_moments, entropy = _sum_over_blocks(
        tf.shape(design)[0],
        statistics_of_block,
        (
            zeros,
            tf.zeros([n_components, tf.shape(design)[1]], tf.float64),
            tf.constant(0.0, tf.float64),
        ),
    )
    stats = _unpack_statistics(counts, design_moments, n_features, covariance_type)
    return stats + (entropy,)


def _blocked_sufficient_statistics(design_sum, sample_weight, resp):
    """`_sufficient_statistics` under given responsibilities, by blocks of rows.

    Returns
    -------
    counts : Tensor of shape (n_components,)
    design_moments : Tensor of shape (n_components, n_design)
    """

    def statistics_of_block(start, size):
        resp_block = tf.cast(tf.slice(resp, [start, 0], [size, -1]), tf.float64)
        return _block_statistics(
            tf.slice(design_sum, [start, 0], [size, -1]),
            tf.slice(sample_weight, [start], [size]),
            resp_block,
        )

    n_components = tf.shape(resp)[1]
    return _sum_over_blocks(
        tf.shape(design_sum)[0],
        statistics_of_block,
        (
            tf.zeros([n_components], tf.float64),
            tf.zeros([n_components, tf.shape(design_sum)[1]], tf.float64),
        ),
    )


# --------------------------------------------------------------------------------
# The evidence lower bound
# --------------------------------------------------------------------------------


def _expected_log_likelihood(stats, posterior, moments, reg_covar, covariance_type):
    """sum_nk w_n r_nk E_q[log N(x_n | mu_k, Lambda_k^-1)], from the statistics.

    With C_k = sum_n w_n r_nk (x_n - m_k)(x_n - m_k)^T::

        sum_k N_k (E[log|Lambda_k|] - D log(2 pi) - D / beta_k
                   - reg_covar E[tr Lambda_k]) / 2 - tr(E[Lambda_k] C_k) / 2
    """
    counts, first_moment, second_moment = stats[:3]
    _, _, beta, means, nu, _ = posterior
    dims = tf.cast(tf.shape(means)[1], means.dtype)
    per_count = (
        moments.expected_log_det
        - dims * _LOG_2PI
        - dims / beta
        - reg_covar * moments.expected_trace
    )  # [k]
    cross = first_moment[:, :, None] * means[:, None, :]  # [k, d, d] for full/tied
    if covariance_type in ("full", "tied"):
        scatter = (
            -cross
            - tf.linalg.matrix_transpose(cross)
            + counts[:, None, None] * means[:, :, None] * means[:, None, :]
        )
        if covariance_type == "tied":
            scatter = tf.reduce_sum(scatter, axis=0, keepdims=True)
        scatter += second_moment  # C_k, [f, d, d]
        # tr(nu Psi^-1 C) = nu tr(L^-1 C L^-T): two triangular solves, no inverse.
        solved = tf.linalg.triangular_solve(moments.factor, scatter, lower=True)
        solved = tf.linalg.triangular_solve(
            moments.factor, tf.linalg.matrix_transpose(solved), lower=True
        )
        quadratic = tf.reduce_sum(nu * tf.linalg.trace(solved))
    elif covariance_type == "diag":
        scatter = (
            second_moment - 2.0 * first_moment * means + counts[:, None] * means**2
        )
        quadratic = tf.reduce_sum(moments.factor * scatter)
    else:
        scatter = (
            second_moment
            - 2.0 * tf.reduce_sum(first_moment * means, axis=1)
            + counts * tf.reduce_sum(means**2, axis=1)
        )
        quadratic = tf.reduce_sum(moments.factor * scatter)
    return 0.5 * tf.reduce_sum(counts * per_count) - 0.5 * quadratic


def _weights_kl(concentration_a, concentration_b, alpha0, weight_type):
    """KL(q(pi) || p(pi)), with TFP's Dirichlet or Beta KL."""
    if weight_type == "dirichlet_process":
        q = _weight_distribution(concentration_a, concentration_b, weight_type)
        p = tfd.Beta(
            tf.ones_like(concentration_a), alpha0 * tf.ones_like(concentration_a)
        )
        return tf.reduce_sum(tfd.kl_divergence(q, p))
    q = _weight_distribution(concentration_a, None, weight_type)
    p = tfd.Dirichlet(alpha0 * tf.ones_like(concentration_a))
    return tfd.kl_divergence(q, p)


def _components_kl(posterior, moments, prior, covariance_type):
    """sum_k KL(q(mu_k, Lambda_k) || p(mu_k, Lambda_k)).

    KL(q(mu | Lambda) q(Lambda) || p(mu | Lambda) p(Lambda)) =
        KL(q(Lambda) || p(Lambda)) + E_q(Lambda)[KL(q(mu | Lambda) || p(mu | Lambda))]

    The inner Gaussian KL is linear in Lambda (the log-determinants cancel), so its
    expectation is the Gaussian KL at Lambda = E[Lambda], which TFP computes.
    """
    _, _, beta, means, nu, psi = posterior
    _, beta0, mean0, nu0, psi0 = prior
    dims = tf.cast(tf.shape(means)[1], means.dtype)
    if covariance_type in ("full", "tied"):
        # Cov of q(mu | E[Lambda]) = Psi / (beta nu); its Cholesky is L / sqrt(beta nu).
        n_components = tf.shape(means)[0]
        chol = tf.broadcast_to(
            moments.factor, tf.concat([[n_components], tf.shape(moments.factor)[1:]], 0)
        )
        nu_k = tf.broadcast_to(nu, [n_components])
        q_mean = tfd.MultivariateNormalTriL(
            means, chol * tf.math.rsqrt(beta * nu_k)[:, None, None]
        )
        p_mean = tfd.MultivariateNormalTriL(
            mean0[None, :], chol * tf.math.rsqrt(beta0 * nu_k)[:, None, None]
        )
        precision_kl = _wishart_kl(nu, moments.factor, nu0, tf.linalg.cholesky(psi0))
    else:
        expected_precision = moments.factor
        if covariance_type == "spherical":
            expected_precision = tf.broadcast_to(
                expected_precision[:, None], tf.shape(means)
            )
        q_mean = tfd.MultivariateNormalDiag(
            means, tf.math.rsqrt(beta[:, None] * expected_precision)
        )
        p_mean = tfd.MultivariateNormalDiag(
            mean0[None, :], tf.math.rsqrt(beta0 * expected_precision)
        )
        q_precision = _precision_gamma(nu, psi, dims, covariance_type)
        p_precision = _precision_gamma(nu0, psi0, dims, covariance_type)
        precision_kl = tfd.kl_divergence(q_precision, p_precision)
    return tf.reduce_sum(tfd.kl_divergence(q_mean, p_mean)) + tf.reduce_sum(
        precision_kl
    )


def _evidence_lower_bound(stats, posterior, moments, prior, reg_covar, cov, weight):
    """ELBO with every constant, so it bounds log p(X) and compares across K.

    ELBO = sum_nk w_n r_nk E[log N(x_n | mu_k, Lambda_k^-1)]
           + sum_k N_k E[log pi_k] - sum_nk w_n r_nk log r_nk
           - KL(q(pi) || p(pi)) - sum_k KL(q(mu_k, Lambda_k) || p(mu_k, Lambda_k))

    For the Dirichlet process the K sticks are a nested truncation: components
    past K keep their prior and get no responsibility, so this still bounds the
    evidence of the infinite mixture.
    """
    counts, entropy = stats[0], stats[3]
    concentration_a, concentration_b = posterior[:2]
    log_weights = _expected_log_weights(concentration_a, concentration_b, weight)
    return (
        _expected_log_likelihood(stats, posterior, moments, reg_covar, cov)
        + tf.reduce_sum(counts * log_weights)
        + entropy
        - _weights_kl(concentration_a, concentration_b, prior[0], weight)
        - _components_kl(posterior, moments, prior, cov)
    )


# --------------------------------------------------------------------------------
# The compiled loop
# --------------------------------------------------------------------------------


def _coordinate_ascent(
    X,
    sample_weight,
    resp_init,
    prior_mean,
    prior_scale_inverse,
    settings,
    max_iter,
    posterior_init=None,
    *,
    covariance_type,
    weight_type,
    outer_products,
):
    """Run CAVI until the ELBO changes by less than `tol`, all in one graph.

    It starts from `posterior_init` (a warm start) or, when that is None, from the
    closed-form posterior of `resp_init`. `settings` packs (weight_concentration,
    mean_precision, degrees_of_freedom) of the prior with reg_covar, tol and
    lower_bound_init.

    Each iteration is: E-step from q(theta), statistics of q(z), closed-form
    q(theta), ELBO at (q(z), q(theta)). Each half maximises the ELBO over its
    block, so the recorded sequence never decreases (up to rounding).

    The E-step, the work per sample and component, runs in X's dtype. Sums over
    samples, q(theta) and the ELBO are float64: float32 sums over 1e5+ samples
    lose the digits that the scatter (second moment minus squared mean) and the
    convergence test need.
    """
    # Each tf.function argument costs a conversion and a signature check per call
    # (~0.05 ms); small fits feel that, so the scalars travel as one vector.
    alpha0, beta0, nu0, reg_covar, tol, lower_bound_init = tf.unstack(settings)
    prior = (alpha0, beta0, prior_mean, nu0, prior_scale_inverse)
    n_features = tf.shape(X)[1]
    # Blocked where the E-step is a GEMM against design features. Not for float32
    # full (its E-step whitens, see _expected_mahalanobis), nor for full when the
    # features would not fit (see _OUTER_PRODUCTS_MAX_SIZE).
    blocked = covariance_type == "diag" or (
        covariance_type == "full" and outer_products and X.dtype == tf.float64
    )
    X_sum = X if X.dtype == tf.float64 else tf.cast(X, tf.float64)
    if blocked:
        design_sum = _design_features(X_sum, covariance_type)  # [n, m + d]
        design = tf.cast(design_sum, X.dtype)
    else:
        # The unblocked E-step never uses x x^T (see _expected_mahalanobis); the
        # float64 sums of float32 full still do, when they fit.
        features = _second_order_features(X, covariance_type, outer_products=False)
        features_sum = _second_order_features(X_sum, covariance_type, outer_products)
    reg_compute = tf.cast(reg_covar, X.dtype)

    def to_compute_dtype(structure):
        return tf.nest.map_structure(lambda t: tf.cast(t, X.dtype), structure)

    def moments_of(posterior):
        return _precision_moments(
            posterior[4], posterior[5], n_features, covariance_type
        )

    def initial_statistics():
        if blocked:
            counts, design_moments = _blocked_sufficient_statistics(
                design_sum, sample_weight, resp_init
            )
            return _unpack_statistics(
                counts, design_moments, n_features, covariance_type
            )
        return _sufficient_statistics(
            X_sum,
            features_sum,
            sample_weight,
            tf.cast(resp_init, tf.float64),
            covariance_type,
        )

    if posterior_init is None:
        posterior = _update_posterior(
            initial_statistics(), prior, reg_covar, covariance_type, weight_type
        )
    else:
        posterior = posterior_init
    lower_bounds = tf.TensorArray(tf.float64, size=0, dynamic_size=True)

    # The moments of q(theta) feed both the ELBO of one iteration and the E-step of
    # the next, so they travel in the loop state and are computed once.
    def keep_going(n_iter, posterior, moments, lower_bound, converged, bounds):
        return tf.logical_and(n_iter < max_iter, tf.logical_not(converged))

    def expected_statistics(posterior, moments):
        if blocked:
            return _blocked_expected_statistics(
                design,
                design_sum,
                sample_weight,
                to_compute_dtype(posterior),
                to_compute_dtype(moments),
                reg_compute,
                covariance_type,
                weight_type,
            )
        log_resp = _estimate_log_resp(
            X,
            features,
            to_compute_dtype(posterior),
            to_compute_dtype(moments),
            reg_compute,
            covariance_type,
            weight_type,
        )
        return _expected_statistics(
            X_sum,
            features_sum,
            sample_weight,
            tf.cast(log_resp, tf.float64),
            covariance_type,
        )

    def step(n_iter, posterior, moments, lower_bound, converged, bounds):
        stats = expected_statistics(posterior, moments)
        new_posterior = _update_posterior(
            stats, prior, reg_covar, covariance_type, weight_type
        )
        new_moments = moments_of(new_posterior)
        new_lower_bound = _evidence_lower_bound(
            stats,
            new_posterior,
            new_moments,
            prior,
            reg_covar,
            covariance_type,
            weight_type,
        )
        # A non-finite bound means the numbers broke down; stop rather than loop on.
        finished = tf.logical_or(
            tf.abs(new_lower_bound - lower_bound) < tol,
            tf.logical_not(tf.math.is_finite(new_lower_bound)),
        )
        return (
            n_iter + 1,
            new_posterior,
            new_moments,
            new_lower_bound,
            finished,
            bounds.write(n_iter, new_lower_bound),
        )

    n_iter, posterior, _, lower_bound, converged, lower_bounds = tf.while_loop(
        keep_going,
        step,
        (
            tf.constant(0),
            posterior,
            moments_of(posterior),
            lower_bound_init,
            tf.constant(False),
            lower_bounds,
        ),
    )
    return posterior, lower_bounds.stack(), n_iter, converged


def _posterior_spec(dtype, covariance_type):
    psi_rank = {"full": 3, "tied": 3, "diag": 2, "spherical": 1}[covariance_type]
    vector = tf.TensorSpec([None], dtype)
    return (
        vector,
        vector,
        vector,
        tf.TensorSpec([None, None], dtype),
        vector,
        tf.TensorSpec([None] * psi_rank, dtype),
    )


_COMPILED = {}
_COMPILED_LOCK = threading.Lock()

# Largest x x^T feature matrix (in elements) held for 'full'; beyond it the loop
# uses a slower path whose temporaries scale with n_components instead.
_OUTER_PRODUCTS_MAX_SIZE = 2**25


def _compiled_coordinate_ascent(
    covariance_type, weight_type, dtype, outer_products=False, warm_start=False
):
    """The traced loop for one model structure and dtype, built once per process.

    Every dimension of the input signature is None, so fits of any shape reuse one
    trace: no retracing per fit and no pile-up of concrete functions. A warm start
    has its own trace, with the initial posterior as extra inputs, so that cold
    starts (nearly all fits) do not pay for them.
    """
    outer_products = covariance_type == "full" and outer_products
    key = (
        covariance_type,
        weight_type,
        np.dtype(dtype).name,
        outer_products,
        warm_start,
    )
    with _COMPILED_LOCK:
        if key not in _COMPILED:
            tf_dtype = tf.as_dtype(dtype)
            psi_rank = {"full": 2, "tied": 2, "diag": 1, "spherical": 0}
            signature = [
                tf.TensorSpec([None, None], tf_dtype),  # X
                tf.TensorSpec([None], tf.float64),  # sample_weight
                tf.TensorSpec([None, None], tf_dtype),  # resp_init
                tf.TensorSpec([None], tf.float64),  # prior_mean
                tf.TensorSpec([None] * psi_rank[covariance_type], tf.float64),
                tf.TensorSpec([6], tf.float64),  # settings
                tf.TensorSpec([], tf.int32),  # max_iter
            ]
            if warm_start:
                signature.append(_posterior_spec(tf.float64, covariance_type))
            _COMPILED[key] = tf.function(
                functools.partial(
                    _coordinate_ascent,
                    covariance_type=covariance_type,
                    weight_type=weight_type,
                    outer_products=outer_products,
                ),
                input_signature=signature,
                autograph=False,
            )
        return _COMPILED[key]


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
    """Fit the variational posterior by coordinate ascent; NumPy in, NumPy out.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    resp_init : ndarray of shape (n_samples, n_components)
        Responsibilities to start from; ignored when `posterior_init` is given.
    prior : tuple of ndarray
        (weight_concentration, mean_precision, mean (n_features,),
        degrees_of_freedom, scale_inverse). scale_inverse is Psi0, of shape
        (n_features, n_features) for full/tied, (n_features,) for diag and a scalar
        for spherical.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}
    reg_covar, tol : float
    max_iter : int
    sample_weight : ndarray of shape (n_samples,), default=None
    posterior_init : tuple of ndarray, default=None
        A posterior as returned here, to continue from (warm start).
    lower_bound_init : float, default=-inf
        The ELBO of `posterior_init`, for the first convergence test.

    Returns
    -------
    result : dict
        'posterior' (tuple of float64 ndarray, see `_update_posterior`),
        'lower_bounds' (n_iter,) in float64, 'n_iter' (int) and 'converged'
        (bool).
    """
    dtype = X.dtype
    n_samples, n_features = X.shape
    if sample_weight is None:
        sample_weight = np.ones(n_samples)
    warm_start = posterior_init is not None
    fit = _compiled_coordinate_ascent(
        covariance_type,
        weight_concentration_prior_type,
        dtype,
        outer_products=n_samples * n_features**2 <= _OUTER_PRODUCTS_MAX_SIZE,
        warm_start=warm_start,
    )
    alpha0, beta0, mean0, nu0, psi0 = prior
    settings = np.array(
        [alpha0, beta0, nu0, reg_covar, tol, lower_bound_init], dtype=np.float64
    )
    args = [
        X,
        np.asarray(sample_weight, np.float64),
        np.asarray(resp_init, dtype),
        np.asarray(mean0, np.float64),
        np.asarray(psi0, np.float64),
        settings,
        np.int32(min(max_iter, np.iinfo(np.int32).max)),
    ]
    if warm_start:
        args.append(tuple(np.asarray(p, np.float64) for p in posterior_init))
    posterior, lower_bounds, n_iter, converged = fit(*args)
    return {
        "posterior": tuple(p.numpy() for p in posterior),
        "lower_bounds": lower_bounds.numpy(),
        "n_iter": int(n_iter),
        "converged": bool(converged),
    }
