"""The E-step and statistics of rows with missing entries, integrated out exactly.

q(z, x_miss) = q(z) q(x_miss | z) with x_miss latent (missing at random). Under
q(theta), with A_k = E[Lambda_k] and delta = x - m_k, the optimal factor is

    q(x_m | z = k) = N(m_k,m - A_mm^-1 A_mo delta_o, A_mm^-1)

and, with r missing features,

    log rho_nk = offset_k + r log(2 pi) / 2 - log|A_mm| / 2
                 - delta_o^T (A_oo - A_om A_mm^-1 A_mo) delta_o / 2.

The statistics are expectations under q(x_m | z): each row completed by its
conditional mean under each component, the second moment carrying the
conditional covariance A_mm^-1, so that the q(theta) update stays exact
coordinate ascent. The entropy of q(x_m | z),
sum_nk w_n r_nk (r (1 + log 2 pi) - log|A_mm|) / 2, is added to the entropy
term of the statistics, so the ELBO stays a true lower bound.

For 'diag' and 'spherical' A is diagonal: A_mo = 0, the completion is m_k,m.
With delta_m = 0, A_mo delta_o = (A delta)_m, so the Schur term needs only the
small r x r block A_mm per (row, component), gathered and factored in batches
of rows that share r (see `skbayesmix._missing.split_incomplete`).
"""

import math

import tensorflow as tf

from skbayesmix._state import Statistics

_LOG_2PI = math.log(2.0 * math.pi)


def _completion_wishart(filled, observed, missing, means, precision):
    """Schur terms and completed rows of one block, for a Wishart's dense A.

    Returns
    -------
    quadratic, log_det : Tensor of shape (n_block, n_components)
        delta_o^T (A / A_mm) delta_o and log|A_mm|.
    completed : Tensor of shape (n_block, n_components, n_features)
        E[x | x_o, z = k].
    conditional : Tensor of shape (n_block, n_components, r, r)
        A_mm^-1, the covariance of q(x_m | z = k).
    spread : Tensor of shape (n_block, r, n_features)
        One-hot rows placing the r missing features.
    """
    n_block = tf.shape(filled)[0]
    n_components, n_features = tf.shape(means)[0], tf.shape(means)[1]
    n_missing = tf.shape(missing)[1]
    precision = tf.broadcast_to(precision, [n_components, n_features, n_features])
    delta = observed[:, None, :] * (filled[:, None, :] - means[None])  # [b, k, d]
    product = tf.einsum("bkd,kde->bke", delta, precision)  # [b, k, d]
    quadratic = tf.reduce_sum(delta * product, axis=-1)  # [b, k]
    offsets = tf.gather(product, missing, axis=2, batch_dims=1)  # [b, k, r]
    pairs = missing[:, :, None] * n_features + missing[:, None, :]  # [b, r, r]
    block = tf.gather(
        tf.reshape(precision, [n_components, -1]),
        tf.reshape(pairs, [n_block, -1]),
        axis=1,
    )  # [k, b, r * r]
    block = tf.transpose(
        tf.reshape(block, [n_components, n_block, n_missing, n_missing]), [1, 0, 2, 3]
    )  # [b, k, r, r]
    chol = tf.linalg.cholesky(block)
    solved = tf.linalg.cholesky_solve(chol, offsets[..., None])[..., 0]  # [b, k, r]
    quadratic = quadratic - tf.reduce_sum(offsets * solved, axis=-1)
    log_det = 2.0 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)
    spread = tf.one_hot(missing, n_features, dtype=filled.dtype)  # [b, r, d]
    completed = (
        filled[:, None, :]
        + (1.0 - observed)[:, None, :] * means[None]
        - tf.einsum("bkr,brd->bkd", solved, spread)
    )
    identity = tf.eye(
        n_missing, batch_shape=[n_block, n_components], dtype=filled.dtype
    )
    conditional = tf.linalg.cholesky_solve(chol, identity)  # [b, k, r, r]
    return quadratic, log_det, completed, conditional, spread


def _block_statistics(values, weights, missing, posterior, moments, offset, structure):
    """Statistics (with the entropy of q(z) and of q(x_m | z)) of one block."""
    x = tf.cast(values, tf.float64)  # [b, d]
    is_observed = tf.logical_not(tf.math.is_nan(x))
    filled = tf.where(is_observed, x, tf.zeros_like(x))
    observed = tf.cast(is_observed, tf.float64)
    means = posterior.means  # [k, d]
    n_features = tf.shape(means)[1]
    precision = moments.expected_precision
    if structure.family == "wishart":
        quadratic, log_det, completed, conditional, spread = _completion_wishart(
            filled, observed, missing, means, precision
        )
    else:
        if structure.scale_inverse_rank == 0:
            precision = tf.broadcast_to(precision[:, None], tf.shape(means))
        squares = observed[:, None, :] * tf.square(filled[:, None, :] - means[None])
        quadratic = tf.einsum("bkd,kd->bk", squares, precision)
        log_det = tf.einsum("bd,kd->bk", 1.0 - observed, tf.math.log(precision))
        completed = filled[:, None, :] + (1.0 - observed)[:, None, :] * means[None]
        conditional = (1.0 - observed)[:, None, :] / precision[None]  # [b, k, d]
    n_missing = tf.reduce_sum(1.0 - observed, axis=1)[:, None]  # [b, 1]
    log_rho = offset[None] + 0.5 * (n_missing * _LOG_2PI - log_det - quadratic)
    shifted = log_rho - tf.reduce_max(log_rho, axis=1, keepdims=True)  # [b, k]
    unnormalised = tf.exp(shifted)
    total = tf.reduce_sum(unnormalised, axis=1)  # [b]
    weighted_resp = unnormalised * (weights / total)[:, None]  # [b, k]
    completion_entropy = 0.5 * (n_missing * (1.0 + _LOG_2PI) - log_det)  # [b, k]
    entropy = (
        tf.reduce_sum(weights * tf.math.log(total))
        - tf.reduce_sum(weighted_resp * shifted)
        + tf.reduce_sum(weighted_resp * completion_entropy)
    )
    counts = tf.reduce_sum(weighted_resp, axis=0)  # [k]
    first_moment = tf.einsum("bk,bkd->kd", weighted_resp, completed)
    weighted = completed * weighted_resp[:, :, None]  # [b, k, d]
    if structure.family == "wishart":
        weighted_conditional = conditional * weighted_resp[:, :, None, None]
        second_moment = tf.einsum("bkd,bke->kde", weighted, completed) + tf.einsum(
            "brd,bkrs,bse->kde", spread, weighted_conditional, spread
        )
        if structure.shared:
            second_moment = tf.reduce_sum(second_moment, axis=0, keepdims=True)
    else:
        second_moment = tf.reduce_sum(
            weighted * completed + conditional * weighted_resp[:, :, None], axis=0
        )  # [k, d]
        if structure.scale_inverse_rank == 0:
            second_moment = tf.reduce_sum(second_moment, axis=1) / tf.cast(
                n_features, tf.float64
            )
    return Statistics(counts, first_moment, second_moment, entropy)


def incomplete_statistics(incomplete, posterior, moments, offset, structure):
    """E-step under q(theta), then the statistics, over rows with missing entries.

    Parameters
    ----------
    incomplete : IncompleteRows of Tensors
        See `skbayesmix._missing.IncompleteRows`.
    posterior : Posterior of float64 Tensors
    moments : PrecisionMoments of `posterior`
    offset : Tensor of shape (n_components,)
        `log_rho_offset` of `posterior`.
    structure : CovarianceStructure

    Returns
    -------
    statistics : Statistics
        float64; its entropy term includes that of q(x_m | z).
    """
    values, weights, missing, blocks = incomplete
    n_components, n_features = (
        tf.shape(posterior.means)[0],
        tf.shape(posterior.means)[1],
    )
    zeros = Statistics(
        tf.zeros([n_components], tf.float64),
        tf.zeros([n_components, n_features], tf.float64),
        _second_moment_like(n_components, n_features, structure),
        tf.constant(0.0, tf.float64),
    )

    def add_block(block, totals):
        start, size, n_missing = tf.unstack(blocks[block])
        stats = _block_statistics(
            tf.slice(values, [start, 0], [size, -1]),
            tf.slice(weights, [start], [size]),
            tf.slice(missing, [start, 0], [size, n_missing]),
            posterior,
            moments,
            offset,
            structure,
        )
        return block + 1, tf.nest.map_structure(tf.add, totals, stats)

    _, totals = tf.while_loop(
        lambda block, totals: block < tf.shape(blocks)[0],
        add_block,
        (tf.constant(0), zeros),
        parallel_iterations=1,
    )
    return totals


def _second_moment_like(n_components, n_features, structure):
    """A zero second moment in the structure's shape."""
    if structure.family == "wishart":
        n_factors = 1 if structure.shared else n_components
        return tf.zeros([n_factors, n_features, n_features], tf.float64)
    if structure.scale_inverse_rank == 1:
        return tf.zeros([n_components, n_features], tf.float64)
    return tf.zeros([n_components], tf.float64)
