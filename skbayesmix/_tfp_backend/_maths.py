"""Moments, KL divergences, the closed-form update and the ELBO, as TF functions."""

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
#
# Every function takes a `structure` (skbayesmix._state.CovarianceStructure) and
# branches on its facts at trace time; the shapes are those of skbayesmix._state.

import math
from typing import Any, NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from skbayesmix._state import Posterior

tfd = tfp.distributions

_LOG_2PI = math.log(2.0 * math.pi)


class PrecisionMoments(NamedTuple):
    """Moments of the precision under q (or the prior).

    expected_log_det : Tensor of shape (n_factors,)
        E[log|Lambda|].
    expected_trace : Tensor of shape (n_factors,)
        E[tr Lambda].
    expected_precision : Tensor
        E[Lambda] = nu Psi^-1: (n_factors, d, d) for a Wishart, (n_components, d)
        for 'diag', (n_components,) for 'spherical'.
    scale_cholesky : Tensor
        The lower Cholesky factor of Psi for a Wishart; Psi itself for a Gamma.
    """

    expected_log_det: Any
    expected_trace: Any
    expected_precision: Any
    scale_cholesky: Any


# --------------------------------------------------------------------------------
# Second-order quantities in each structure's shape
# --------------------------------------------------------------------------------


def structured_outer(u, v, structure):
    """sum_n-free second-order product u_k v_k^T, in the structure's shape.

    Parameters
    ----------
    u, v : Tensor of shape (n_components, n_features)

    Returns
    -------
    outer : Tensor
        u_k v_k^T (n_components, d, d) for 'full', summed over components
        (1, d, d) for 'tied', the diagonal u * v for 'diag', and the mean of the
        diagonal (n_components,) for 'spherical'.
    """
    if structure.family == "wishart":
        outer = u[:, :, None] * v[:, None, :]
        return tf.reduce_sum(outer, 0, keepdims=True) if structure.shared else outer
    if structure.scale_inverse_rank == 1:
        return u * v
    return tf.reduce_mean(u * v, axis=1)


def structured_identity(counts, n_features, structure):
    """sum_k N_k I in the structure's shape (the reg_covar term of the scatter)."""
    dtype = counts.dtype
    if structure.family == "wishart":
        identity = tf.eye(n_features, dtype=dtype)[None]
        if structure.shared:
            return tf.reduce_sum(counts) * identity
        return counts[:, None, None] * identity
    if structure.scale_inverse_rank == 1:
        return counts[:, None] * tf.ones([1, n_features], dtype)
    return counts


def precision_times(expected_precision, means, structure):
    """E[Lambda_k] m_k for each component.

    Returns
    -------
    product : Tensor of shape (n_components, n_features)
    """
    if structure.family == "wishart":
        n_components = tf.shape(means)[0]
        precision = tf.broadcast_to(
            expected_precision,
            tf.concat([[n_components], tf.shape(expected_precision)[1:]], 0),
        )
        return tf.linalg.matvec(precision, means)
    if structure.scale_inverse_rank == 1:
        return expected_precision * means
    return expected_precision[:, None] * means


# --------------------------------------------------------------------------------
# Prior and posterior as TFP distributions, and their moments
# --------------------------------------------------------------------------------


def expected_log_weights(concentration_a, concentration_b, weight_type):
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


def gamma_parameters(degrees_of_freedom, scale_inverse, n_features, structure):
    """(shape, rate) of q(lambda) or p(lambda) for 'diag' and 'spherical'.

    The parametrisation keeps sklearn's conventions: E[lambda] = nu / Psi, so
    covariances_ = Psi / nu is the inverse expected precision, and the updates
    nu += N_k, Psi += scatter are sklearn's. A spherical precision sees D squared
    deviations per point, hence its shape D nu / 2 and rate D Psi / 2.

    Parameters
    ----------
    degrees_of_freedom : Tensor of shape (n_components,)
    scale_inverse : Tensor of shape (n_components, n_features) for 'diag', \
            (n_components,) for 'spherical'
    n_features : scalar Tensor
    structure : CovarianceStructure

    Returns
    -------
    concentration, rate : Tensor of the shape of `scale_inverse`
    """
    if structure.scale_inverse_rank == 1:
        degrees_of_freedom = degrees_of_freedom[..., None]
        observations = 1.0
    else:
        observations = tf.cast(n_features, scale_inverse.dtype)
    return (
        0.5 * observations * degrees_of_freedom,
        0.5 * observations * scale_inverse,
    )


def precision_gamma(degrees_of_freedom, scale_inverse, n_features, structure):
    """q(lambda) or p(lambda) for 'diag' and 'spherical' as a TFP Gamma."""
    concentration, rate = gamma_parameters(
        degrees_of_freedom, scale_inverse, n_features, structure
    )
    return tfd.Gamma(concentration=concentration, rate=rate)


def wishart(degrees_of_freedom, scale_inverse_chol):
    """Wishart(nu, Psi^-1) as a TFP distribution, from the Cholesky factor of Psi."""
    n_features = tf.shape(scale_inverse_chol)[-1]
    identity = tf.eye(
        n_features,
        batch_shape=tf.shape(scale_inverse_chol)[:-2],
        dtype=scale_inverse_chol.dtype,
    )
    scale = tf.linalg.cholesky_solve(scale_inverse_chol, identity)
    return tfd.WishartTriL(df=degrees_of_freedom, scale_tril=tf.linalg.cholesky(scale))


def log_multivariate_gamma(a, n_features):
    """log Gamma_D(a) = D (D - 1) / 4 log(pi) + sum_{i<D} log Gamma(a - i / 2)."""
    i = tf.range(n_features, dtype=a.dtype)
    dims = tf.cast(n_features, a.dtype)
    return 0.25 * dims * (dims - 1.0) * math.log(math.pi) + tf.reduce_sum(
        tf.math.lgamma(a[..., None] - 0.5 * i), axis=-1
    )


def multivariate_digamma(a, n_features):
    """psi_D(a) = sum_{i<D} psi(a - i / 2)."""
    i = tf.range(n_features, dtype=a.dtype)
    return tf.reduce_sum(tf.math.digamma(a[..., None] - 0.5 * i), axis=-1)


def log_det_from_chol(chol):
    """log|A| from the lower Cholesky factor of A."""
    return 2.0 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)


def wishart_kl(df_q, scale_inverse_chol_q, df_p, scale_inverse_chol_p):
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
    log_det_ratio = log_det_from_chol(scale_inverse_chol_p) - log_det_from_chol(
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
        0.5 * (df_q - df_p) * multivariate_digamma(0.5 * df_q, n_features)
        - 0.5 * df_p * log_det_ratio
        + 0.5 * df_q * (trace - dims)
        + log_multivariate_gamma(0.5 * df_p, n_features)
        - log_multivariate_gamma(0.5 * df_q, n_features)
    )


def _wishart_moments(degrees_of_freedom, scale_inverse, n_features):
    nu = degrees_of_freedom
    dims = tf.cast(n_features, nu.dtype)
    chol = tf.linalg.cholesky(scale_inverse)  # [f, d, d]
    # E[log|Lambda|] = psi_D(nu / 2) + D log 2 - log|Psi|
    expected_log_det = (
        multivariate_digamma(0.5 * nu, n_features)
        + dims * math.log(2.0)
        - log_det_from_chol(chol)
    )
    identity = tf.eye(n_features, batch_shape=tf.shape(nu), dtype=nu.dtype)
    inv_chol = tf.linalg.triangular_solve(chol, identity, lower=True)
    # E[Lambda] = nu Psi^-1 = nu L^-T L^-1, and its trace nu ||L^-1||_F^2.
    expected_precision = nu[:, None, None] * tf.linalg.matmul(
        inv_chol, inv_chol, transpose_a=True
    )
    expected_trace = nu * tf.reduce_sum(tf.square(inv_chol), axis=[-2, -1])
    return PrecisionMoments(expected_log_det, expected_trace, expected_precision, chol)


def _gamma_moments(degrees_of_freedom, scale_inverse, n_features, structure):
    concentration, rate = gamma_parameters(
        degrees_of_freedom, scale_inverse, n_features, structure
    )
    expected_log = tf.math.digamma(concentration) - tf.math.log(rate)
    expected_precision = concentration / rate  # [k, d] or [k]
    if structure.scale_inverse_rank == 1:
        return PrecisionMoments(
            tf.reduce_sum(expected_log, axis=-1),
            tf.reduce_sum(expected_precision, axis=-1),
            expected_precision,
            scale_inverse,
        )
    dims = tf.cast(n_features, expected_log.dtype)
    return PrecisionMoments(
        dims * expected_log,
        dims * expected_precision,
        expected_precision,
        scale_inverse,
    )


def precision_moments(degrees_of_freedom, scale_inverse, n_features, structure):
    """Moments of the precision under q (or under the prior).

    Parameters
    ----------
    degrees_of_freedom : Tensor of shape (n_factors,)
    scale_inverse : Tensor
        Psi, of shape `structure.scale_inverse_shape`.
    n_features : scalar int32 Tensor
    structure : CovarianceStructure

    Returns
    -------
    moments : PrecisionMoments
    """
    if structure.family == "wishart":
        return _wishart_moments(degrees_of_freedom, scale_inverse, n_features)
    return _gamma_moments(degrees_of_freedom, scale_inverse, n_features, structure)


def posterior_moments(posterior, structure):
    """`precision_moments` of q(Lambda)."""
    n_features = tf.shape(posterior.means)[1]
    return precision_moments(
        posterior.degrees_of_freedom, posterior.scale_inverse, n_features, structure
    )


# --------------------------------------------------------------------------------
# The coordinate-ascent update
# --------------------------------------------------------------------------------


def update_posterior(statistics, prior, reg_covar, structure, weight_type):
    """Closed-form optimum of q(pi) q(mu, Lambda) given the statistics of q(z).

    In natural parameters the update is affine in the statistics:

        beta = beta0 + N_k,  beta m = beta0 m0 + S1_k,  nu = nu0 + N_k,
        Psi + beta m m^T = Psi0 + beta0 m0 m0^T + S2_k + reg_covar N_k I

    so a convex blend of statistics gives the same blend of natural parameters,
    which is the stochastic-VI step. Psi is computed about xbar_k = S1_k / N_k,
    which cancels less than the natural form.

    Parameters
    ----------
    statistics : Statistics
    prior : Prior

    Returns
    -------
    posterior : Posterior
    """
    counts, first_moment, second_moment = statistics[:3]
    if weight_type == "dirichlet_process":
        concentration_a = 1.0 + counts
        # Beta's second parameter collects the mass of all later components.
        concentration_b = prior.weight_concentration + tf.math.cumsum(
            counts, exclusive=True, reverse=True
        )
    else:
        concentration_a = prior.weight_concentration + counts
        concentration_b = tf.zeros_like(counts)

    beta0, mean0 = prior.mean_precision, prior.mean
    mean_precision = beta0 + counts  # [k]
    means = (beta0 * mean0[None, :] + first_moment) / mean_precision[:, None]
    # Empty components would divide 0 by 0; their scatter is 0 whatever xbar is.
    safe_counts = tf.where(counts > 0.0, counts, tf.ones_like(counts))
    xbar = first_moment / safe_counts[:, None]  # [k, d]
    diff = xbar - mean0[None, :]  # [k, d]
    shrink = beta0 * counts / mean_precision  # [k]
    n_features = tf.shape(mean0)[0]

    scatter = second_moment - structured_outer(first_moment, xbar, structure)
    if structure.family == "gamma":
        # Rounding can leave a tiny negative variance where all points coincide.
        scatter = tf.maximum(scatter, 0.0)
    psi = (
        prior.scale_inverse[None]
        + scatter
        + structured_outer(shrink[:, None] * diff, diff, structure)
        + reg_covar * structured_identity(counts, n_features, structure)
    )
    if structure.family == "wishart":
        # Rounding makes the sum slightly asymmetric; Cholesky wants it exact.
        psi = 0.5 * (psi + tf.linalg.matrix_transpose(psi))
    total = tf.reduce_sum(counts, keepdims=True) if structure.shared else counts
    nu = prior.degrees_of_freedom + total
    return Posterior(concentration_a, concentration_b, mean_precision, means, nu, psi)


# --------------------------------------------------------------------------------
# The evidence lower bound
# --------------------------------------------------------------------------------


def log_rho_offset(posterior, moments, reg_covar, weight_type):
    """The part of log rho_nk that does not depend on x_n.

    offset_k = E[log pi_k] + E[log|Lambda_k|] / 2 - D log(2 pi) / 2 - D / (2 beta_k)
               - reg_covar E[tr Lambda_k] / 2

    so that E[log pi_k + log N(x_n | mu_k, Lambda_k^-1)]
    = offset_k - (x_n - m_k)^T E[Lambda_k] (x_n - m_k) / 2. The E-step and the
    ELBO both use it, and the loop computes it once per q(theta).

    Returns
    -------
    offset : Tensor of shape (n_components,)
    """
    beta = posterior.mean_precision
    dims = tf.cast(tf.shape(posterior.means)[1], beta.dtype)
    log_weights = expected_log_weights(
        posterior.concentration_a, posterior.concentration_b, weight_type
    )
    return log_weights + 0.5 * (
        moments.expected_log_det
        - dims * (_LOG_2PI + 1.0 / beta)
        - reg_covar * moments.expected_trace
    )


def expected_quadratic(statistics, posterior, moments, structure):
    """sum_nk w_n r_nk (x_n - m_k)^T E[Lambda_k] (x_n - m_k), from the statistics.

    It is tr(E[Lambda_k] C_k) summed over k, with the scatter about the posterior
    means C_k = sum_n w_n r_nk (x_n - m_k)(x_n - m_k)^T.
    """
    counts, first_moment, second_moment = statistics[:3]
    means = posterior.means
    # C_k in the structure's shape (for 'spherical', tr(C_k) / D).
    scatter = (
        second_moment
        - structured_outer(first_moment, means, structure)
        - structured_outer(means, first_moment, structure)
        + structured_outer(counts[:, None] * means, means, structure)
    )
    observations = structure.observations_per_precision(tf.shape(means)[1])
    # tr(E[Lambda] C) is the elementwise sum, as both are symmetric.
    return tf.cast(observations, means.dtype) * tf.reduce_sum(
        moments.expected_precision * scatter
    )


# The Beta, Dirichlet and Gamma KLs are written here in closed form rather than
# taken from tfd.kl_divergence: TFP's versions build several times more graph,
# and the first one in a process costs about 0.35 s of lazy loading, which every
# fresh process and every parallel worker would pay. They are tested against
# TFP's in test_tfp_backend.py.


def beta_kl(a_q, b_q, a_p, b_p):
    """KL(Beta(a_q, b_q) || Beta(a_p, b_p)), elementwise.

    KL = log B(a_p, b_p) - log B(a_q, b_q) + (a_q - a_p) psi(a_q)
         + (b_q - b_p) psi(b_q) + (a_p - a_q + b_p - b_q) psi(a_q + b_q)
    """
    return (
        tf.math.lbeta(tf.stack([a_p, b_p], axis=-1))
        - tf.math.lbeta(tf.stack([a_q, b_q], axis=-1))
        + (a_q - a_p) * tf.math.digamma(a_q)
        + (b_q - b_p) * tf.math.digamma(b_q)
        + (a_p - a_q + b_p - b_q) * tf.math.digamma(a_q + b_q)
    )


def dirichlet_kl(concentration_q, concentration_p):
    """KL(Dirichlet(a_q) || Dirichlet(a_p)) over the last axis.

    KL = log Gamma(sum a_q) - sum log Gamma(a_q) - log Gamma(sum a_p)
         + sum log Gamma(a_p) + sum (a_q - a_p) (psi(a_q) - psi(sum a_q))
    """
    total_q = tf.reduce_sum(concentration_q, axis=-1)
    return (
        tf.math.lgamma(total_q)
        - tf.reduce_sum(tf.math.lgamma(concentration_q), axis=-1)
        - tf.math.lgamma(tf.reduce_sum(concentration_p, axis=-1))
        + tf.reduce_sum(tf.math.lgamma(concentration_p), axis=-1)
        + tf.reduce_sum(
            (concentration_q - concentration_p)
            * (tf.math.digamma(concentration_q) - tf.math.digamma(total_q)[..., None]),
            axis=-1,
        )
    )


def gamma_kl(concentration_q, rate_q, concentration_p, rate_p):
    """KL(Gamma(a_q, rate b_q) || Gamma(a_p, rate b_p)), elementwise.

    KL = (a_q - a_p) psi(a_q) - log Gamma(a_q) + log Gamma(a_p)
         + a_p (log b_q - log b_p) + a_q (b_p - b_q) / b_q
    """
    return (
        (concentration_q - concentration_p) * tf.math.digamma(concentration_q)
        - tf.math.lgamma(concentration_q)
        + tf.math.lgamma(concentration_p)
        + concentration_p * (tf.math.log(rate_q) - tf.math.log(rate_p))
        + concentration_q * (rate_p - rate_q) / rate_q
    )


def weights_kl(posterior, alpha0, weight_type):
    """KL(q(pi) || p(pi)): K Beta sticks, or one Dirichlet."""
    concentration_a = posterior.concentration_a
    ones = tf.ones_like(concentration_a)
    if weight_type == "dirichlet_process":
        return tf.reduce_sum(
            beta_kl(concentration_a, posterior.concentration_b, ones, alpha0 * ones)
        )
    return dirichlet_kl(concentration_a, alpha0 * ones)


def whitened_mean_offsets(posterior, moments, prior, structure):
    """A_k (m_k - m0), for a square root A_k^T A_k = E[Lambda_k].

    With Psi = L L^T, E[Lambda] = nu Psi^-1 = (sqrt(nu) L^-1)^T (sqrt(nu) L^-1) for
    a Wishart; a Gamma precision is diagonal, A = sqrt(E[lambda]).

    Returns
    -------
    offsets : Tensor of shape (n_components, n_features)
    """
    offsets = posterior.means - prior.mean[None, :]  # [k, d]
    if structure.family == "wishart":
        factor = moments.scale_cholesky  # [f, d, d]
        factor = tf.broadcast_to(
            factor, tf.concat([tf.shape(offsets)[:1], tf.shape(factor)[1:]], 0)
        )
        nu = tf.broadcast_to(posterior.degrees_of_freedom, tf.shape(offsets)[:1])
        solved = tf.linalg.triangular_solve(factor, offsets[:, :, None], lower=True)
        return tf.sqrt(nu)[:, None] * solved[:, :, 0]
    precision = moments.expected_precision
    if structure.scale_inverse_rank == 0:
        precision = precision[:, None]
    return tf.sqrt(precision) * offsets


def components_kl(posterior, moments, prior, structure):
    """sum_k KL(q(mu_k, Lambda_k) || p(mu_k, Lambda_k)).

    KL(q(mu | Lambda) q(Lambda) || p(mu | Lambda) p(Lambda)) =
        KL(q(Lambda) || p(Lambda)) + E_q(Lambda)[KL(q(mu | Lambda) || p(mu | Lambda))]

    q(mu | Lambda) = N(m, (beta Lambda)^-1) and p(mu | Lambda) = N(m0, (beta0
    Lambda)^-1) share Lambda, so the inner KL is linear in Lambda (the
    log-determinants differ by D log(beta / beta0)) and its expectation is the KL at
    Lambda = E[Lambda]. A KL is unchanged by an invertible map of mu; in the
    coordinates A mu, with A^T A = E[Lambda], both Gaussians have isotropic
    covariances 1 / beta and 1 / beta0, and the KL is a sum of D univariate Normal
    KLs, which TFP computes. (TFP's multivariate Normals gave the same number from
    a graph of about 240 ops instead of 50, which every fresh process pays for.)
    """
    offsets = whitened_mean_offsets(posterior, moments, prior, structure)
    mean_kl = tfd.kl_divergence(
        tfd.Normal(offsets, tf.math.rsqrt(posterior.mean_precision)[:, None]),
        tfd.Normal(tf.zeros_like(offsets), tf.math.rsqrt(prior.mean_precision)),
    )
    nu = posterior.degrees_of_freedom
    if structure.family == "wishart":
        precision_kl = wishart_kl(
            nu,
            moments.scale_cholesky,
            prior.degrees_of_freedom,
            tf.linalg.cholesky(prior.scale_inverse),
        )
    else:
        n_features = tf.shape(posterior.means)[1]
        precision_kl = gamma_kl(
            *gamma_parameters(nu, posterior.scale_inverse, n_features, structure),
            *gamma_parameters(
                prior.degrees_of_freedom, prior.scale_inverse, n_features, structure
            ),
        )
    return tf.reduce_sum(mean_kl) + tf.reduce_sum(precision_kl)


def evidence_lower_bound(
    statistics, posterior, moments, offset, prior, structure, weight_type
):
    """ELBO with every constant, so it bounds log p(X) and compares across K.

    ELBO = sum_nk w_n r_nk E[log pi_k + log N(x_n | mu_k, Lambda_k^-1)]
           - sum_nk w_n r_nk log r_nk
           - KL(q(pi) || p(pi)) - sum_k KL(q(mu_k, Lambda_k) || p(mu_k, Lambda_k))

    whose first sum is sum_k N_k offset_k - `expected_quadratic` / 2.

    For the Dirichlet process the K sticks are a nested truncation: components
    past K keep their prior and get no responsibility, so this still bounds the
    evidence of the infinite mixture.

    Parameters
    ----------
    offset : Tensor of shape (n_components,)
        `log_rho_offset` of `posterior`.

    Returns
    -------
    elbo : scalar Tensor
    """
    return (
        tf.reduce_sum(statistics.counts * offset)
        - 0.5 * expected_quadratic(statistics, posterior, moments, structure)
        + statistics.resp_entropy
        - weights_kl(posterior, prior.weight_concentration, weight_type)
        - components_kl(posterior, moments, prior, structure)
    )
